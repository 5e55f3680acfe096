// Overview: traffic over time (range 1h .. 30d), per tier, top clients, endpoints, alerts,
// shadow rules and overrides (set and cleared here). Updated live.
import { api, enc } from "../api.js";
import { card, clear, clientLink, fmt, h, rangeSwitch, routeLink, table } from "../dom.js";
import { timeChart } from "../chart.js";
import { overrideForm } from "./overrides.js";

export const title = "Overview";
const STEPS = { "1h": ["minute", 60], "24h": ["minute", 60], "7d": ["hour", 3600], "30d": ["hour", 3600] };
const LENGTH_S = { "1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400 };

// Every bucket of `step_s` from start to end, with the rows' values (missing buckets are zeros).
export function filled(rows, startS, endS, stepS, keys, match = () => true) {
  const times = [];
  for (let t = Math.floor(startS / stepS) * stepS; t < endS; t += stepS) times.push(t);
  const index = new Map(times.map((t, i) => [t, i]));
  const values = Object.fromEntries(keys.map((k) => [k, times.map(() => 0)]));
  for (const row of rows) {
    if (!match(row)) continue;
    const t = Math.floor(new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(row.t) ? row.t : row.t + "Z").getTime() / 1000 / stepS) * stepS;
    const i = index.get(t);
    if (i !== undefined) for (const k of keys) values[k][i] += Number(row[k]) || 0;
  }
  return { times, values };
}

export async function render(main) {
  let range = sessionStorage.getItem("rw-overview-range") || "1h";
  const data = h("div", { class: "contents" });
  const head = h("div", { class: "bar" });
  const overrides = card("Overrides and penalties", { wide: true, id: "overrides-card" });
  const overridesList = h("div");
  overrides.append(overrideForm(async () => refresh()), overridesList);
  main.append(h("h2", {}, "Overview"), head, data, overrides);
  data.className = "contents";

  const drawHead = () => clear(head, rangeSwitch(range, (r) => { range = r; sessionStorage.setItem("rw-overview-range", r); refresh(); }),
                                h("span", { class: "muted" }, "traffic, endpoints over the range; top clients and alerts over 24 h"));

  async function refresh() {
    const end = Math.ceil(Date.now() / 1000);
    const start = end - LENGTH_S[range];
    const [step, stepS] = STEPS[range];
    const iso = (s) => new Date(s * 1000).toISOString();
    const [usage, tiers, top, endpoints, alerts, shadow, list] = await Promise.all([
      api("/usage", { query: { start: iso(start), end: iso(end), step } }),
      api("/usage/tiers", { query: { start: iso(end - 3600), end: iso(end) } }),
      api("/usage/top", { query: { limit: 10 } }),
      api("/usage/endpoints", { query: { start: iso(start), end: iso(end) } }),
      api("/alerts", { query: { limit: 20 } }),
      api("/shadow", { query: { top: 5 } }),
      api("/overrides"),
    ]);
    drawHead();
    const traffic = filled(usage, start, end, stepS, ["requests", "admitted", "denied"]);
    const tierNames = [...new Set(tiers.map((r) => r.tier))].sort();
    const perTier = tierNames.map((tier) => ({ label: tier || "(none)",
      values: filled(tiers, end - 3600, end, 60, ["requests"], (r) => r.tier === tier).values.requests }));
    const tierTimes = filled([], end - 3600, end, 60, []).times;
    clear(data,
      card("Requests over time", { wide: true, id: "traffic" },
        timeChart({ key: "overview-traffic", title: `all clients, last ${range}`, unit: "requests", stepLabel: step, times: traffic.times,
                    series: [{ label: "requests", values: traffic.values.requests },
                             { label: "admitted", values: traffic.values.admitted },
                             { label: "denied", values: traffic.values.denied, dash: [6, 4] }] })),
      card("Requests per minute by tier (last hour)", { wide: true, id: "tiers-chart" },
        timeChart({ key: "overview-tiers", title: "per tier", unit: "requests", stepLabel: "minute", times: tierTimes, series: perTier })),
      card("Top clients (24 h)", { id: "top" }, table(
        [{ label: "client" }, { label: "tier" }, { label: "requests", num: true }, { label: "denied", num: true }],
        top.map((c) => [clientLink(c.client_id), c.tier, fmt.int(c.requests), fmt.int(c.denied)]))),
      card(`Endpoints (${range})`, { id: "endpoints" }, table(
        [{ label: "route" }, { label: "requests", num: true }, { label: "denied", num: true },
         { label: "5xx", num: true }, { label: "mean latency", num: true }],
        endpoints.map((e) => [routeLink(e.route), fmt.int(e.requests), fmt.int(e.denied), fmt.int(e.errors),
                              fmt.ms(e.mean_latency_ms)]))),
      card("Alerts (24 h)", { wide: true, id: "alerts" }, table(
        [{ label: "last seen" }, { label: "type" }, { label: "severity" }, { label: "client" },
         { label: "occurrences", num: true }, { label: "suggested action" }],
        alerts.map((a) => [fmt.time(a.last_seen), a.alert_type, h("span", { class: a.severity }, a.severity),
                           clientLink(a.client_id), fmt.int(a.occurrences), a.suggested_action || ""]), { empty: "no alerts" })),
      card("Shadow rules: what they would have denied (24 h)", { wide: true, id: "shadow" }, table(
        [{ label: "rule" }, { label: "would deny", num: true }, { label: "clients", num: true },
         { label: "most affected" }, { label: "tiers" }],
        shadow.map((r) => [r.rule, fmt.int(r.would_deny), fmt.int(r.clients),
                           r.top_clients.map((c, i) => [i ? ", " : "", clientLink(c.client_id), ` (${fmt.int(c.would_deny)})`]),
                           r.tiers.join(", ")]), { empty: "no shadow rule would have denied anything" })),
    );
    clear(overridesList, overridesTable(list, refresh));
  }
  await refresh();
  return { refresh };
}

export function overridesTable(list, after) {
  const penalties = list.filter((o) => (o.source || "").startsWith("stream:"));
  return [
    table([{ label: "client" }, { label: "what" }, { label: "source" }, { label: "reason" }, { label: "expires" }, { label: "" }],
      list.map((o) => [clientLink(o.client_id), describe(o), o.source || "", o.reason || "",
                       o.expires_at ? fmt.time(o.expires_at) : "never",
                       h("button", { type: "button", "data-clear": o.client_id, onclick: async () => {
                         await api(`/overrides/${enc(o.client_id)}`, { method: "DELETE" }); await after(); } },
                         `clear ${o.client_id}`)]), { id: "overrides", empty: "no overrides or penalties" }),
    penalties.length ? h("div", { class: "actions" }, h("button", { type: "button", id: "clear-penalties", onclick: async () => {
      await api("/overrides/clear-penalties", { method: "POST" }); await after(); } },
      `Clear all ${penalties.length} penalties the stream set`)) : null,
  ];
}

export function describe(o) {
  if (o.block) return "blocked";
  if (o.allow) return "allowed (no limits)";
  const parts = [];
  if (o.tier) parts.push(`tier ${o.tier}`);
  if (o.rules && o.rules.length) parts.push(o.rules.map((r) => `${r.name} ${r.limit}/${r.period} s`).join(", "));
  if (o.quotas) parts.push("quotas");
  return parts.join(", ") || "override";
}
