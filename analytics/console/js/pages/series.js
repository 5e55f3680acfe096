// The charts and tables a client page and an endpoint page share: traffic, denials by rule and
// kind, latency and status classes over a range.
import { card, fmt, h, table } from "../dom.js";
import { timeChart, unix } from "../chart.js";

const STEP = { 60: "minute", 900: "15 min", 3600: "hour", 21600: "6 h" };

export function totals(series) {
  const sum = (key) => series.reduce((a, p) => a + (Number(p[key]) || 0), 0);
  const all = { requests: sum("requests"), admitted: sum("admitted"), denied: sum("denied"), cost: sum("cost") };
  const figure = (key, label) => h("div", { "data-total": key }, h("div", { class: "value" }, fmt.int(all[key])),
                                   h("div", { class: "label" }, label));
  return h("div", { class: "totals", id: "totals" }, figure("requests", "requests"), figure("admitted", "admitted"),
           figure("denied", "denied"), figure("cost", "cost units"));
}

// `key`: the page's own prefix, so its charts are updated in place by a live refresh
export function seriesCards(view, key) {
  const times = view.series.map((p) => unix(p.t));
  const step = STEP[view.window.bucket_s] || `${view.window.bucket_s} s`;
  const column = (key) => view.series.map((p) => p[key]);
  const kinds = [...new Set(view.denials.map((d) => `${d.rule || "(unknown rule)"} · ${d.kind || "?"}`))].sort();
  const index = new Map(times.map((t, i) => [t, i]));
  const denialSeries = kinds.map((label) => ({ label, values: times.map(() => 0) }));
  for (const d of view.denials) {
    const i = index.get(unix(d.t));
    const k = kinds.indexOf(`${d.rule || "(unknown rule)"} · ${d.kind || "?"}`);
    if (i !== undefined) denialSeries[k].values[i] += Number(d.requests);
  }
  const classes = ["1xx", "2xx", "3xx", "4xx", "5xx"].filter((c) => view.series.some((p) => p.status_classes[c]));
  return [
    card("Traffic", { wide: true, id: "traffic" }, timeChart({ key: `${key}:traffic`, title: "requests", unit: "requests", stepLabel: step, times,
      series: [{ label: "requests", values: column("requests") }, { label: "admitted", values: column("admitted") },
               { label: "denied", values: column("denied"), dash: [6, 4] }] })),
    card("Denials by rule and kind", { id: "denials" },
      kinds.length ? timeChart({ key: `${key}:denials`, title: "denied requests", unit: "requests", stepLabel: step, times, series: denialSeries })
        : h("p", { class: "empty" }, "no denials in this range"),
      table([{ label: "rule" }, { label: "kind" }, { label: "denied", num: true }],
        view.denial_totals.map((d) => [d.rule || "(unknown)", d.kind || "", fmt.int(d.requests)]), { id: "denial-totals", empty: "" })),
    card("Latency", { id: "latency" }, timeChart({ key: `${key}:latency`, title: "latency", unit: "ms", stepLabel: step, times,
      series: [{ label: "mean", values: column("mean_latency_ms") }, { label: "max", values: column("max_latency_ms"), dash: [4, 3] }] })),
    card("Status classes", { id: "statuses" }, timeChart({ key: `${key}:statuses`, title: "responses", unit: "requests", stepLabel: step, times,
      series: (classes.length ? classes : ["2xx"]).map((c) => ({ label: c, values: view.series.map((p) => p.status_classes[c] || 0),
        color: { "1xx": "#6b7280", "2xx": "#059669", "3xx": "#2563eb", "4xx": "#d97706", "5xx": "#dc2626" }[c] })) })),
  ];
}

export function windowLine(view) {
  return h("span", { class: "muted", id: "window" },
    `${fmt.time(view.window.start)} – ${fmt.time(view.window.end)}, one point per ${STEP[view.window.bucket_s] || view.window.bucket_s + " s"}`);
}
