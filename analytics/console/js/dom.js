// Building the page from data without ever parsing data as HTML: every value becomes a text node.

// h("td", {class: "num", "data-x": 1, onclick: f}, "text", node, [more]) -> an element
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(node, ...children) { node.replaceChildren(); append(node, children); return node; }

// A table: `columns` [{label, num?}], `rows` arrays of cells (text or nodes); `empty` when none.
export function table(columns, rows, { id, empty = "nothing yet" } = {}) {
  if (!rows.length) return h("p", { class: "empty", id }, empty);
  return h("div", { class: "table-wrap" }, h("table", { id },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.num ? "num" : null, scope: "col" }, c.label)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell, i) =>
      h("td", { class: columns[i] && columns[i].num ? "num" : null }, cell)))))));
}

export function card(title, { wide = false, id } = {}, ...children) {
  return h("section", { class: wide ? "card wide" : "card", id, "aria-label": title }, h("h3", {}, title), children);
}

const NUMBER = new Intl.NumberFormat("en-US");
export const fmt = {
  int: (n) => NUMBER.format(Math.round(Number(n) || 0)),
  ms: (n) => `${(Number(n) || 0).toFixed(1)} ms`,
  // ISO strings (UTC when no offset) or unix seconds -> "2026-12-01 07:05:00 UTC"
  time(value) {
    if (value === null || value === undefined || value === "") return "";
    const date = typeof value === "number" ? new Date(value * 1000)
      : new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : value + "Z");
    return isNaN(date) ? String(value) : date.toISOString().slice(0, 19).replace("T", " ") + " UTC";
  },
  seconds(s) {
    s = Number(s);
    if (s >= 86400 && s % 86400 === 0) return `${s / 86400} d`;
    if (s >= 3600 && s % 3600 === 0) return `${s / 3600} h`;
    if (s >= 60 && s % 60 === 0) return `${s / 60} min`;
    return `${s} s`;
  },
};

export const clientLink = (id) => h("a", { href: `#/clients/${encodeURIComponent(id)}` }, id);
export const routeLink = (route) => h("a", { href: `#/endpoints/${encodeURIComponent(route)}` }, route);

// A 1h / 24h / 7d / 30d switch; calls onChange(range).
export function rangeSwitch(current, onChange, ranges = ["1h", "24h", "7d", "30d"]) {
  const group = h("div", { class: "ranges", role: "group", "aria-label": "time range", id: "range" });
  for (const range of ranges) {
    group.append(h("button", { type: "button", "data-range": range, "aria-pressed": String(range === current),
                               onclick: () => onChange(range) }, range));
  }
  return group;
}

// A gauge of used / limit (no limit: just the figure).
export function gauge(used, limit, label) {
  const share = limit ? Math.min(1, used / limit) : 0;
  const bar = h("div");
  bar.style.width = `${(share * 100).toFixed(1)}%`;
  return h("div", { class: "quota", "data-used": used, "data-limit": limit ?? "" },
    h("div", {}, `${label}: ${fmt.int(used)}${limit ? ` / ${fmt.int(limit)} (${(share * 100).toFixed(0)}%)` : " (no quota)"}`),
    h("div", { class: `gauge${share >= 1 ? " full" : share >= 0.8 ? " high" : ""}`, role: "meter", "aria-label": label,
               "aria-valuemin": 0, "aria-valuemax": limit || 0, "aria-valuenow": used }, bar));
}

// Puts each message of a 422 next to the control whose data-loc is its path without "body"
// (e.g. "rules.0.limit"); messages with no such control go to `rest` (a list element).
export function showFieldErrors(form, detail, rest) {
  clearFieldErrors(form, rest);
  const unplaced = [];
  for (const error of Array.isArray(detail) ? detail : [{ loc: [], msg: String(detail) }]) {
    const loc = (error.loc || []).filter((part, i) => !(i === 0 && (part === "body" || part === "path" || part === "query")));
    let path = loc.join(".");
    let control = null;
    while (path && !(control = form.querySelector(`[data-loc="${CSS.escape(path)}"]`))) {
      path = path.includes(".") ? path.slice(0, path.lastIndexOf(".")) : "";
    }
    if (!control) { unplaced.push(`${loc.join(".") || "request"}: ${error.msg}`); continue; }
    control.setAttribute("aria-invalid", "true");
    const slot = form.querySelector(`[data-error-for="${CSS.escape(path)}"]`);
    if (slot) slot.textContent = slot.textContent ? `${slot.textContent}; ${error.msg}` : error.msg;
    else unplaced.push(`${path}: ${error.msg}`);
  }
  if (rest) clear(rest, unplaced.map((m) => h("li", {}, m)));
  const first = form.querySelector('[aria-invalid="true"]');
  if (first) first.focus();
  return unplaced;
}

export function clearFieldErrors(form, rest) {
  form.querySelectorAll("[aria-invalid]").forEach((c) => c.removeAttribute("aria-invalid"));
  form.querySelectorAll("[data-error-for]").forEach((s) => { s.textContent = ""; });
  if (rest) clear(rest);
}

// A labelled control with its error slot: field("rules.0.limit", "limit", input)
export function field(loc, label, control) {
  const id = `f-${loc.replace(/[^A-Za-z0-9_-]/g, "-")}-${Math.random().toString(36).slice(2, 7)}`;
  control.id = id;
  control.setAttribute("data-loc", loc);
  const error = h("span", { class: "field-error", "data-error-for": loc, id: `${id}-error`, role: "alert" });
  control.setAttribute("aria-describedby", error.id);
  return h("div", { class: "field" }, h("label", { for: id }, label), control, error);
}
