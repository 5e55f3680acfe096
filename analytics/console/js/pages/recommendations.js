// Recommendations: per tier, a per-client limit learnt from legitimate clients' busiest minutes,
// with what it would have denied; staged as a shadow rule on its tier in one click.
import { api } from "../api.js";
import { card, clear, clientLink, field, fmt, h, showFieldErrors, table } from "../dom.js";

export const title = "Recommendations";

export async function render(main) {
  const range = h("select", {}, ["1h", "24h", "7d", "30d"].map((r) => h("option", { value: r }, r)));
  range.value = "7d";
  const percentile = h("input", { type: "number", min: 0.1, max: 100, step: "any", size: 6, value: 99 });
  const headroom = h("input", { type: "number", min: 1, max: 100, step: "any", size: 6, value: 1.5 });
  const rest = h("ul", { class: "error" });
  const form = h("form", { class: "grid", id: "recommend-form", novalidate: true },
    field("range", "learn from the last", range), field("percentile", "percentile of the peaks", percentile),
    field("headroom", "headroom (limit = peak × this)", headroom),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Propose")), rest);
  const results = h("div");
  const staged = h("div", { role: "status", id: "staged" });
  const findings = h("div");
  main.append(h("h2", {}, "Recommendations"), card("Learn limits from usage", { wide: true }, form, staged),
              card("Proposals", { wide: true, id: "proposals-card" }, results),
              card("Staged rules: the estimate beside what the enforcers found since", { wide: true, id: "findings-card" }, findings));

  async function showFindings() {
    const rows = await api("/recommendations/staged");
    clear(findings, table(
      [{ label: "tier" }, { label: "rule" }, { label: "staged" }, { label: "by" }, { label: "estimated denials / h", num: true },
       { label: "found since / h", num: true }, { label: "found since (requests / clients)", num: true }, { label: "now" }],
      rows.map((f) => [h("a", { href: `#/plans/${encodeURIComponent(f.tier)}` }, f.tier), f.rule, fmt.time(f.staged_at), f.actor,
        f.estimate.per_hour.toFixed(1), f.observed.per_hour.toFixed(1),
        `${fmt.int(f.observed.would_deny_requests)} / ${fmt.int(f.observed.would_deny_clients)}`,
        f.still_shadow ? h("span", { class: "badge shadow" }, "shadow") : h("span", { class: "badge enforcing" }, "enforcing or removed")]),
      { id: "findings", empty: "nothing staged yet" }));
  }

  async function refresh() {
    clear(rest);
    let found;
    try {
      found = await api("/recommendations", { query: { range: range.value, percentile: percentile.value, headroom: headroom.value } });
    } catch (error) {
      if (error.status === 422) { showFieldErrors(form, error.detail, rest); return; }
      throw error;
    }
    clear(results, h("p", { class: "muted" }, `from ${fmt.time(found.start)} to ${fmt.time(found.end)}`), table(
      [{ label: "tier" }, { label: "limit / min", num: true }, { label: "peak at percentile", num: true },
       { label: "legit clients", num: true }, { label: "left out (alerted)" }, { label: "tier requests", num: true },
       { label: "would deny (requests)", num: true }, { label: "would deny (clients)", num: true },
       { label: "of which legit (requests / clients)", num: true }, { label: "" }],
      found.proposals.map((p) => [p.tier, fmt.int(p.limit), fmt.int(p.peak_at_percentile), fmt.int(p.legit_clients),
        p.excluded_clients.map((c, i) => [i ? ", " : "", clientLink(c)]), fmt.int(p.requests),
        fmt.int(p.would_deny_requests), fmt.int(p.would_deny_clients),
        `${fmt.int(p.would_deny_legit_requests)} / ${fmt.int(p.would_deny_legit_clients)}`,
        h("button", { type: "button", "data-stage": p.tier, onclick: async (event) => {
          event.target.disabled = true;
          try {
            const result = await api("/recommendations/stage", { method: "POST", body: { tier: p.tier, limit: p.limit, name: p.rule_name, range: range.value } });
            clear(staged, h("p", { class: "notice" }, `Staged ${result.rule.name} on ${p.tier} as a shadow rule: enforcers report what it `
              + "would deny (Overview: shadow rules) and deny nothing. ", h("a", { href: `#/plans/${encodeURIComponent(p.tier)}` },
              `Open plan ${p.tier}`), " to make it enforcing."));
            await showFindings();
          } catch (error) { clear(staged, h("p", { class: "error" }, error.message)); event.target.disabled = false; }
        } }, `Stage ${p.rule_name} as shadow`)]),
      { id: "proposals", empty: "no proposals: no usage in this range" }));
  }
  form.addEventListener("submit", (event) => { event.preventDefault(); refresh(); });
  await Promise.all([refresh(), showFindings()]);
  return null;
}
