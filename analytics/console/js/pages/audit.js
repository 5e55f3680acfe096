// The audit log: every change made through the admin API (who, when, what, before and after).
import { api } from "../api.js";
import { card, clear, field, fmt, h, table } from "../dom.js";

export const title = "Audit log";
const PAGE = 50;

export async function render(main) {
  const target = h("input", { size: 20, placeholder: "tier, key id or client id" });
  const action = h("input", { size: 14, placeholder: "e.g. key.rotate" });
  const form = h("form", { class: "grid", id: "audit-form" }, field("target", "target", target), field("action", "action", action),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Filter")));
  const results = h("div");
  const more = h("div", { class: "actions" });
  main.append(h("h2", {}, "Audit log"), card("Changes, newest first", { wide: true, id: "audit-card" }, form, results, more));
  let entries = [];

  async function load(before) {
    const page = await api("/audit", { query: { limit: PAGE, before, target: target.value.trim(), action: action.value.trim() } });
    entries = before ? entries.concat(page) : page;
    clear(results, table([{ label: "when" }, { label: "who (verified token)" }, { label: "action" }, { label: "target" }, { label: "change" }],
      entries.map((e) => [fmt.time(e.at), e.principal && e.principal !== e.actor ? `${e.actor} (token: ${e.principal})` : e.actor,
                          h("code", {}, e.action), e.target, change(e)]), { id: "audit", empty: "no changes recorded" }));
    clear(more, page.length === PAGE ? h("button", { type: "button", onclick: () => load(entries[entries.length - 1].id) }, "Older") : null);
  }
  form.addEventListener("submit", (event) => { event.preventDefault(); load(); });
  await load();
  return null;
}

// before -> after as the fields that differ (a details element holds both in full)
function change(entry) {
  const before = entry.before && typeof entry.before === "object" ? entry.before : {};
  const after = entry.after && typeof entry.after === "object" ? entry.after : {};
  const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])]
    .filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k]));
  const summary = entry.before === null ? "created" : entry.after === null ? "removed"
    : keys.map((k) => describe(k, before[k], after[k])).join("; ") || "no field changed";
  return h("details", {}, h("summary", {}, summary),
    h("pre", { class: "mono" }, `before: ${JSON.stringify(entry.before, null, 1)}\nafter: ${JSON.stringify(entry.after, null, 1)}`));
}

// One field's change: lists of named things (rules) by name, whole objects as added or removed.
function describe(key, was, now) {
  const named = (v) => Array.isArray(v) && v.every((x) => x && typeof x === "object" && "name" in x);
  if (named(was) && named(now)) {
    const old = new Map(was.map((x) => [x.name, JSON.stringify(x)]));
    const next = new Map(now.map((x) => [x.name, JSON.stringify(x)]));
    const parts = [...next.keys()].filter((n) => !old.has(n)).map((n) => `+${n}`)
      .concat([...old.keys()].filter((n) => !next.has(n)).map((n) => `−${n}`))
      .concat([...next.keys()].filter((n) => old.has(n) && old.get(n) !== next.get(n)).map((n) => `~${n}`));
    return `${key}: ${parts.join(", ") || "reordered"}`;
  }
  if (was === undefined && now && typeof now === "object") return `${key} added`;
  if (now === undefined && was && typeof was === "object") return `${key} removed`;
  return `${key}: ${short(was)} → ${short(now)}`;
}

const short = (v) => { const s = JSON.stringify(v); return s === undefined ? "–" : s.length > 60 ? s.slice(0, 57) + "…" : s; };
