// Plans: every tier (from the policy file, set at run time, or both), created and edited here:
// rules, quotas, fail mode; applied as a shadow first (reported, never denying), then switched
// to enforcing. Each validation error is shown next to its field.
import { api, enc } from "../api.js";
import { card, clear, clearFieldErrors, field, fmt, h, showFieldErrors, table } from "../dom.js";

export const title = "Plans";
const ALGORITHMS = ["sliding_window_counter", "fixed_window", "sliding_window_log", "token_bucket", "gcra", "concurrency"];

export async function render(main, name) {
  const list = h("div");
  const editor = h("div", { class: "contents" });
  main.append(h("h2", {}, "Plans"), card("Tiers", { wide: true, id: "plans-card" }, list), editor);

  async function refresh() {
    const view = await api("/tiers");
    clear(list, table(
      [{ label: "tier" }, { label: "mode" }, { label: "origin" }, { label: "rules" }, { label: "quotas" },
       { label: "capacity shares" }, { label: "actions" }],
      view.plans.map((plan) => [
        h("a", { href: `#/plans/${enc(plan.name)}` }, plan.name),
        plan.shadow ? h("span", { class: "badge shadow" }, "shadow") : h("span", { class: "badge enforcing" }, "enforcing"),
        plan.origin,
        plan.tier.rules.map((r, i) => [i ? "; " : "", ruleSummary(r)]),
        quotaSummary(plan.tier.quotas),
        Object.entries(plan.capacity_shares).map(([c, s]) => `${c} ${Math.round(s * 100)}%`).join(", "),
        h("div", { class: "actions" },
          h("a", { href: `#/plans/${enc(plan.name)}` }, "edit"),
          h("button", { type: "button", "data-mode": plan.name, "data-shadow": String(!plan.shadow), onclick: async () => {
            await api(`/tiers/${enc(plan.name)}/mode`, { method: "POST", body: { shadow: !plan.shadow } });
            await refresh();
            if (name === plan.name) await showEditor(plan.name);
          } }, plan.shadow ? "Switch to enforcing" : "Switch to shadow"),
          plan.origin !== "file" ? h("button", { type: "button", class: "danger", "data-drop": plan.name, onclick: async () => {
            if (!confirm(`Drop the run-time version of ${plan.name}?`)) return;
            await api(`/tiers/${enc(plan.name)}`, { method: "DELETE" });
            location.hash = "#/plans";
          } }, "Drop run-time version") : null),
      ]), { id: "plans" }),
      h("div", { class: "actions" }, h("a", { href: "#/plans/new", id: "new-plan" }, "New plan…")));
    return view;
  }

  async function showEditor(which) {
    if (!which) return clear(editor);
    const [plan, view] = await Promise.all([which === "new" ? null : api(`/tiers/${enc(which)}`), api("/tiers")]);
    const capacities = [...new Set(view.plans.flatMap((p) => Object.keys(p.capacity_shares)))].sort();
    clear(editor, planEditor(plan, capacities, async (saved) => { await refresh(); await showEditor(saved); }));
  }

  await refresh();
  await showEditor(name);
  return null;
}

const ruleSummary = (r) => `${r.name} ${r.limit}/${fmt.seconds(r.period)}${r.shadow ? " (shadow)" : ""}`;
function quotaSummary(q) {
  const parts = [];
  if (q.daily) parts.push(`${fmt.int(q.daily)}/day`);
  if (q.monthly) parts.push(`${fmt.int(q.monthly)}/month${q.billing_anchor_day ? ` from day ${q.billing_anchor_day}` : ""}`);
  return parts.join(", ") || "none";
}

const asNumber = (text) => (text.trim() === "" ? null : /^-?\d+(\.\d+)?$/.test(text.trim()) ? Number(text.trim()) : text.trim());
const items = (text) => text.split(/[,\n]/).map((s) => s.trim()).filter(Boolean);

function planEditor(plan, capacities, saved) {
  const isNew = plan === null;
  const tier = plan ? plan.tier : { rules: [], quotas: {}, fail_mode: "open", shadow: true };
  const name = h("input", { required: true, size: 20, pattern: "[A-Za-z0-9_.\\-]{1,64}", autocomplete: "off" });
  if (!isNew) { name.value = plan.name; name.readOnly = true; }
  const shadow = h("input", { type: "checkbox" });
  shadow.checked = isNew ? true : tier.shadow;
  const failMode = h("select", {}, h("option", { value: "open" }, "open (admit when Redis is away)"),
                     h("option", { value: "closed" }, "closed (deny when Redis is away)"));
  failMode.value = tier.fail_mode;
  const quota = (key) => { const i = h("input", { inputmode: "numeric", size: 10 }); i.value = tier.quotas[key] ?? ""; return i; };
  const daily = quota("daily"), monthly = quota("monthly"), anchor = quota("billing_anchor_day");
  const rules = h("div", { "data-loc": "rules" });
  const rulesError = h("span", { class: "field-error", "data-error-for": "rules", role: "alert" });
  const rest = h("ul", { class: "error", id: "plan-errors" });
  const notice = h("div", { role: "status" });
  const rows = [];

  function addRule(rule) {
    const original = rule || { scope: ["client"] };
    const input = (value, attrs = {}) => { const i = h("input", { size: 10, ...attrs }); i.value = value ?? ""; return i; };
    const set = h("fieldset", { class: "rule" });
    const index = () => rows.indexOf(row);
    const row = { set, original, controls: {} };
    rows.push(row);
    const c = row.controls;
    c.name = input(original.name, { size: 14 });
    c.algorithm = h("select", {}, ALGORITHMS.map((a) => h("option", { value: a }, a)));
    c.algorithm.value = original.algorithm || "sliding_window_counter";
    c.limit = input(original.limit, { inputmode: "numeric", size: 8 });
    c.period = input(original.period, { size: 8, placeholder: "60 or 1m" });
    c.burst = input(original.burst, { inputmode: "numeric", size: 8, placeholder: "token_bucket, gcra" });
    c.scope = input((original.scope || ["client"]).join(", "), { size: 14 });
    c.endpoints = input((original.endpoints || []).join(", "), { size: 24, placeholder: "all; or GET /v1/items, …" });
    c.shadow = h("input", { type: "checkbox" });
    c.shadow.checked = Boolean(original.shadow);
    row.relabel = () => {
      const i = index();
      clear(set, h("legend", {}, `Rule ${i + 1}`),
        h("span", { class: "field-error", "data-error-for": `rules.${i}`, role: "alert" }),
        field(`rules.${i}.name`, "name", c.name), field(`rules.${i}.algorithm`, "algorithm", c.algorithm),
        field(`rules.${i}.limit`, "limit (units per period)", c.limit), field(`rules.${i}.period`, "period (s, or 1m, 1h)", c.period),
        field(`rules.${i}.burst`, "burst", c.burst), field(`rules.${i}.scope`, "scope (client, key, user, ip, endpoint)", c.scope),
        field(`rules.${i}.endpoints`, "endpoints", c.endpoints),
        field(`rules.${i}.shadow`, "shadow (report only)", c.shadow),
        h("div", { class: "actions" }, h("button", { type: "button", class: "danger", onclick: () => {
          rows.splice(index(), 1); set.remove(); rows.forEach((r) => r.relabel()); } }, `Remove rule ${i + 1}`)));
      set.setAttribute("data-loc", `rules.${i}`);
    };
    row.relabel();
    rules.append(set);
    return row;
  }
  tier.rules.forEach(addRule);

  // capacity name -> share input; shares the user leaves as they are keep the tier's own setting
  const effectiveShares = plan ? plan.capacity_shares : {};
  const shareInputs = capacities.map((c) => {
    const i = h("input", { inputmode: "decimal", size: 6, placeholder: "none" });
    i.value = effectiveShares[c] ?? "";
    return [c, i];
  });
  const otherName = h("input", { size: 12, placeholder: "capacity name" });
  const otherShare = h("input", { inputmode: "decimal", size: 6, placeholder: "0–1" });
  const sharesBox = h("div", { class: "grid", "data-loc": "capacity_shares" },
    shareInputs.map(([c, i]) => field(`capacity_shares.${c}`, `share of ${c} (0–1]`, i)),
    field("capacity_shares.__other", "another capacity", otherName), field("capacity_shares.__other_share", "its share", otherShare));
  function capacityShares() {
    const chosen = {};
    for (const [c, i] of shareInputs) if (i.value.trim() !== "") chosen[c] = asNumber(i.value);
    const name = otherName.value.trim();
    if (name) chosen[name] = asNumber(otherShare.value);
    const same = !name && Object.keys(chosen).length === Object.keys(effectiveShares).length
      && Object.entries(chosen).every(([c, v]) => v === effectiveShares[c]);
    return same ? tier.capacity_shares ?? null : chosen;
  }

  const form = h("form", { id: "plan-form", "aria-label": isNew ? "new plan" : `edit ${plan.name}`, novalidate: true },
    h("div", { class: "grid" }, field("name", "tier name", name), field("fail_mode", "when Redis is away", failMode),
      field("shadow", "shadow: report only, never deny (switch to enforcing later)", shadow),
      field("quotas.daily", "daily quota (cost units)", daily), field("quotas.monthly", "monthly quota", monthly),
      field("quotas.billing_anchor_day", "billing month starts on day", anchor)),
    h("h4", {}, "Rules"), rulesError, rules,
    h("div", { class: "actions" },
      h("button", { type: "button", id: "add-rule", onclick: () => addRule(null).controls.name.focus() }, "Add rule")),
    h("h4", {}, "Capacity shares"), h("p", { class: "muted" },
      "This tier's share of each shared capacity of the policy file; empty: no share; left as shown: as the file says."),
    h("span", { class: "field-error", "data-error-for": "capacity_shares", role: "alert" }), sharesBox,
    h("div", { class: "actions" }, h("button", { type: "submit" }, isNew ? "Create plan" : "Apply changes")),
    rest, notice);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(form, rest);
    clear(notice);
    const tierName = name.value.trim();
    if (!tierName) return showFieldErrors(form, [{ loc: ["name"], msg: "a plan needs a name" }], rest);
    const quotas = { ...tier.quotas };
    for (const [key, input] of [["daily", daily], ["monthly", monthly], ["billing_anchor_day", anchor]]) quotas[key] = asNumber(input.value);
    const body = { ...stripNulls(tier), capacity_shares: capacityShares(), shadow: shadow.checked, fail_mode: failMode.value, quotas: stripNulls(quotas),
      rules: rows.map(({ original, controls: c }) => stripNulls({
        ...original, name: c.name.value.trim(), algorithm: c.algorithm.value, limit: asNumber(c.limit.value),
        period: asNumber(c.period.value), burst: asNumber(c.burst.value), scope: items(c.scope.value),
        endpoints: items(c.endpoints.value).length ? items(c.endpoints.value) : null, shadow: c.shadow.checked })) };
    try {
      const result = await api(`/tiers/${enc(tierName)}`, { method: "PUT", body });
      await saved(result.name);
      const again = document.getElementById("plan-notice");
      if (again) clear(again, h("p", { class: "notice" }, result.shadow
        ? `${result.name} applied as a shadow: enforcers report what it would deny and deny nothing. Switch it to enforcing when the shadow figures look right.`
        : `${result.name} applied and enforcing: every enforcer uses it within a second.`));
    } catch (error) {
      if (error.status === 422) showFieldErrors(form, error.detail, rest);
      else clear(rest, h("li", {}, error.message));
    }
  });
  notice.id = "plan-notice";

  return card(isNew ? "New plan" : `Edit plan ${plan.name}`, { wide: true, id: "plan-editor" },
    isNew ? null : h("p", { class: "muted" }, `origin: ${plan.origin}; mode: ${plan.shadow ? "shadow" : "enforcing"}`),
    !isNew && plan.shadow ? h("p", {}, h("button", { type: "button", id: "enforce", onclick: async () => {
      await api(`/tiers/${enc(plan.name)}/mode`, { method: "POST", body: { shadow: false } });
      await saved(plan.name);
    } }, `Switch ${plan.name} to enforcing`)) : null,
    form);
}

function stripNulls(object) {
  return Object.fromEntries(Object.entries(object).filter(([, v]) => v !== null && v !== undefined));
}
