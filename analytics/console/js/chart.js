// Time-series charts on the vendored uPlot (window.uPlot, loaded by index.html): a UTC time
// axis, a y axis with its unit, a legend (click a series to hide it) and a tooltip at the cursor.
import { h, fmt } from "./dom.js";

export const COLORS = ["#2563eb", "#059669", "#dc2626", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"];
const utc = (ts) => window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC");

function tooltip(unit) {
  let tip;
  return {
    hooks: {
      init(u) { tip = h("div", { class: "chart-tip", hidden: true, role: "tooltip" }); u.over.append(tip); },
      setCursor(u) {
        const i = u.cursor.idx;
        if (i === null || i === undefined || u.cursor.left < 0) { tip.hidden = true; return; }
        const lines = [fmt.time(u.data[0][i])];
        u.series.forEach((s, k) => {
          if (k > 0 && s.show) lines.push(`${s.label}: ${formatValue(u.data[k][i], unit)}`);
        });
        tip.replaceChildren(...lines.map((line) => h("div", {}, line)));
        tip.hidden = false;
        const left = u.cursor.left + 12;
        tip.style.left = `${Math.min(left, u.over.clientWidth - tip.offsetWidth - 4)}px`;
        tip.style.top = `${Math.max(0, u.cursor.top - tip.offsetHeight - 8)}px`;
      },
    },
  };
}

function formatValue(v, unit) {
  if (v === null || v === undefined) return "–";
  return unit === "ms" ? fmt.ms(v) : `${fmt.int(v)} ${unit}`;
}

// y ticks of counts: whole numbers only (1, 2, 5, 10, 20, 50, ...)
const COUNTS = [1, 2, 5].flatMap((m) => [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8].map((p) => m * p)).sort((a, b) => a - b);
const kept = new Map(); // key -> a drawn chart, updated in place by the next timeChart() of that key

function describe(box, caption, { title, unit, times, series, stepLabel }) {
  box.setAttribute("data-points", String(times.length));
  box.setAttribute("aria-label", title);
  caption.textContent = `${title} (${unit}${stepLabel ? ` per ${stepLabel}` : ""}, UTC)`;
  series.forEach((s) => box.setAttribute(`data-total-${s.label.replace(/[^a-z0-9]+/gi, "-").toLowerCase()}`,
                                          String(s.values.reduce((a, b) => a + (Number(b) || 0), 0))));
}

const columns = (times, series) => [times, ...series.map((s) => s.values.map((v) => v === null ? null : Number(v)))];

// timeChart({key?, title, unit, times: [unix s], series: [{label, values, color?, dash?}], stepLabel?})
// -> an element holding the chart; data-points and data-total-<label> are there for tests and scripts.
// With a `key`, a chart of that key still on the page with the same series is updated in place and
// returned (live pages keep their charts, cursor and tooltip instead of redrawing them).
export function timeChart(spec) {
  const { key, unit, times, series, height = 220 } = spec;
  const labels = `${unit}|${series.map((s) => s.label).join("|")}`;
  const old = key ? kept.get(key) : null;
  if (old && old.labels === labels && old.plot && old.box.isConnected && times.length) {
    old.state.times = times;
    old.plot.setData(columns(times, series));
    describe(old.box, old.caption, spec);
    return old.box;
  }
  const box = h("figure", { class: "chart" });
  const caption = h("figcaption", { class: "muted" });
  describe(box, caption, spec);
  box.append(caption);
  const state = { times };
  const entry = { box, caption, labels, state, plot: null };
  let frames = 0;
  const draw = () => {
    if (!box.isConnected) { if (++frames < 120) requestAnimationFrame(draw); return; } // never shown: drop it
    const width = Math.max(280, box.clientWidth - 4);
    const opts = {
      width, height, tzDate: utc, plugins: [tooltip(unit)],
      cursor: { focus: { prox: 16 } },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.1)] } },
      axes: [{ label: "time (UTC)", labelSize: 20, size: 40, values: (u, ticks) => ticks.map((ts) => tick(ts, state.times)) },
             { label: unit, labelSize: 20, size: 60, ...(unit === "ms" ? {} : { incrs: COUNTS }), values: (u, vals) => vals.map((v) => unit === "ms" ? v.toFixed(v < 1 && v > 0 ? 2 : 1) : fmt.int(v)) }],
      legend: { live: true },
      series: [{ label: "time", value: (u, ts) => ts === null ? "–" : fmt.time(ts) },
               ...series.map((s, i) => ({ label: s.label, stroke: s.color || COLORS[i % COLORS.length], width: 2,
                                          dash: s.dash, points: { show: times.length <= 40 },
                                          value: (u, v) => formatValue(v, unit) }))],
    };
    const plot = entry.plot = new window.uPlot(opts, columns(times, series), box);
    if (key) kept.set(key, entry);
    const resize = new ResizeObserver(() => {
      if (!box.isConnected) {
        resize.disconnect(); plot.destroy();
        if (key && kept.get(key) === entry) kept.delete(key);
        return;
      }
      const w = Math.max(280, box.clientWidth - 4);
      if (Math.abs(w - plot.width) > 2) plot.setSize({ width: w, height });
    });
    resize.observe(box);
  };
  if (!times.length) box.append(h("p", { class: "empty" }, "no data in this range"));
  else requestAnimationFrame(draw);
  return box;
}

// A tick of the time axis: "07:05" within a day, "12-01 07:00" within a week, "12-01" beyond.
function tick(ts, times) {
  const span = times.length > 1 ? times[times.length - 1] - times[0] : 0;
  const iso = new Date(ts * 1000).toISOString();
  return span <= 86400 ? iso.slice(11, 16) : span <= 8 * 86400 ? `${iso.slice(5, 10)} ${iso.slice(11, 16)}` : iso.slice(5, 10);
}

export const unix = (iso) => Math.floor(new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(iso) ? iso : iso + "Z").getTime() / 1000);
