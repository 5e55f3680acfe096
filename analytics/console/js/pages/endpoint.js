// One route template (e.g. "GET /v1/items/{item_id}") over 1h / 24h / 7d / 30d: traffic,
// denials by rule and kind, latency, status classes and its top clients.
import { api } from "../api.js";
import { card, clear, clientLink, fmt, h, rangeSwitch, table } from "../dom.js";
import { seriesCards, totals, windowLine } from "./series.js";

export const title = "Endpoint";

export async function render(main, route) {
  if (!route) {
    const rows = await api("/usage/endpoints");
    main.append(h("h2", {}, "Endpoints (last hour)"), card("Routes", { wide: true }, table([{ label: "route" }, { label: "requests", num: true }],
      rows.map((r) => [h("a", { href: `#/endpoints/${encodeURIComponent(r.route)}` }, r.route), fmt.int(r.requests)]))));
    return null;
  }
  let range = sessionStorage.getItem("rw-client-range") || "24h";
  const head = h("div", { class: "bar" });
  const body = h("div", { class: "contents" });
  main.append(h("h2", {}, `Endpoint ${route}`), head, body);

  async function refresh() {
    const view = await api("/endpoints/detail", { query: { route, range } });
    clear(head, rangeSwitch(range, (r) => { range = r; sessionStorage.setItem("rw-client-range", r); refresh(); }), windowLine(view));
    clear(body, card("Totals in this range", { wide: true }, totals(view.series)), ...seriesCards(view, `endpoint:${route}`),
      card("Top clients on this route", { wide: true, id: "top" }, table(
        [{ label: "client" }, { label: "tier" }, { label: "requests", num: true }, { label: "denied", num: true }],
        view.top_clients.map((c) => [clientLink(c.client_id), c.tier, fmt.int(c.requests), fmt.int(c.denied)]))));
  }
  await refresh();
  return { refresh };
}
