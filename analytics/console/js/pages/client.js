// One client (k:<key id>, u:<user>, ip:<address>) over 1h / 24h / 7d / 30d: traffic, denials by
// rule and kind, latency, status classes, quota gauges for the day and the billing month,
// alerts and penalties (cleared in one click), its override and its key. Updated live.
import { api, enc } from "../api.js";
import { card, clear, fmt, gauge, h, rangeSwitch, table } from "../dom.js";
import { seriesCards, totals, windowLine } from "./series.js";
import { overrideForm } from "./overrides.js";
import { describe } from "./overview.js";

export const title = "Client";

export async function render(main, clientId) {
  if (!clientId) {
    main.append(h("h2", {}, "Clients"), h("p", {}, "Open a client from the overview's top clients, a key, or the box above."));
    return null;
  }
  let range = sessionStorage.getItem("rw-client-range") || "24h";
  const head = h("div", { class: "bar" });
  const body = h("div", { class: "contents" });
  const overrideCard = card("Set an override", { wide: true }, overrideForm(async () => refresh(), clientId));
  main.append(h("h2", {}, `Client ${clientId}`), head, body, overrideCard);

  async function refresh() {
    let view;
    try {
      view = await api(`/clients/${enc(clientId)}`, { query: { range } });
    } catch (error) {
      if (error.status === 404 && clientId.includes("/")) {
        throw new Error(`the admin API does not route client ids holding "/" (IPv6 clients are ip:<prefix>/<length>): ${error.message}`);
      }
      throw error;
    }
    main.dataset.client = clientId;
    main.dataset.range = range;
    clear(head, rangeSwitch(range, (r) => { range = r; sessionStorage.setItem("rw-client-range", r); refresh(); }),
          windowLine(view), h("span", {}, `tier: ${view.tier ?? "unknown"}`));
    const q = view.quota;
    const o = view.override;
    clear(body,
      card("Totals in this range", { wide: true }, totals(view.series)),
      card("Quota", { id: "quota" }, gauge(q.day_used, q.day_limit, `today (${q.day})`),
        gauge(q.month_used, q.month_limit, `billing month from ${q.month_start}`)),
      card("Override or penalty", { id: "override" }, o ? [
        h("p", {}, `${describe(o)} · source ${o.source || "?"} · ${o.reason || ""} · expires ${o.expires_at ? fmt.time(o.expires_at) : "never"}`),
        h("button", { type: "button", id: "clear-override", onclick: async () => {
          await api(`/overrides/${enc(clientId)}`, { method: "DELETE" }); await refresh(); } },
          (o.source || "").startsWith("stream:") ? "Clear this penalty" : "Clear this override")]
        : h("p", { class: "empty" }, "none: the tier's limits apply")),
      ...seriesCards(view, `client:${clientId}`),
      card("Alerts", { wide: true, id: "alerts" }, table(
        [{ label: "last seen" }, { label: "type" }, { label: "severity" }, { label: "occurrences", num: true }, { label: "suggested action" }],
        view.alerts.map((a) => [fmt.time(a.last_seen), a.alert_type, h("span", { class: a.severity }, a.severity),
                                fmt.int(a.occurrences), a.suggested_action || ""]), { empty: "no alerts in this range" })),
      card("Penalties", { wide: true, id: "penalties" }, table(
        [{ label: "applied" }, { label: "action" }, { label: "detector" }, { label: "reason" }, { label: "expires" }],
        view.penalties.map((p) => [fmt.time(p.created_at), p.action, p.detector, p.reason, fmt.time(p.expires_at)]),
        { empty: "no penalties in this range" })),
      card("Key", { wide: true, id: "key" }, view.key ? table(
        [{ label: "id" }, { label: "owner" }, { label: "tier" }, { label: "note" }, { label: "prefix" }, { label: "status" }, { label: "rotated-out secret" }],
        [[h("a", { href: "#/keys" }, view.key.id), view.key.owner, view.key.tier ?? "(default)", view.key.note || "",
          `${view.key.prefix}…`, view.key.status,
          view.key.previous ? `${view.key.previous.prefix}… until ${fmt.time(view.key.previous.expires_at)}` : ""]])
        : h("p", { class: "empty" }, clientId.startsWith("k:") ? "no such key" : "not an API key client")),
    );
  }
  await refresh();
  return { refresh };
}
