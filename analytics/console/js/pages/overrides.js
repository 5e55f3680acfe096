// The override form (block, allow or another tier for a client, with an expiry), shared by the
// overview and client pages.
import { api, enc } from "../api.js";
import { field, h, showFieldErrors, clearFieldErrors } from "../dom.js";

export function overrideForm(after, fixedClient = null) {
  const client = h("input", { required: true, size: 24, placeholder: "k:…, u:… or ip:…", autocomplete: "off" });
  if (fixedClient) { client.value = fixedClient; client.readOnly = true; }
  const action = h("select", {}, h("option", { value: "block" }, "block"), h("option", { value: "allow" }, "allow (no limits)"),
                   h("option", { value: "tier" }, "another tier"));
  const tier = h("input", { size: 10, placeholder: "tier" });
  const minutes = h("input", { type: "number", min: 1, step: 1, placeholder: "minutes (empty: never)", size: 8 });
  const reason = h("input", { size: 24, placeholder: "reason", maxlength: 500 });
  const rest = h("ul", { class: "error" });
  const form = h("form", { class: "grid", id: "override-form", "aria-label": "set an override" },
    field("client_id", "client", client), field("action", "what", action), field("tier", "tier (for another tier)", tier),
    field("expires_at", "expires in (minutes)", minutes), field("reason", "reason", reason),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Apply override")), rest);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldErrors(form, rest);
    const id = client.value.trim();
    const body = { client_id: id, source: "console", reason: reason.value.trim() || "set in the console" };
    if (action.value === "block") body.block = true;
    else if (action.value === "allow") body.allow = true;
    else body.tier = tier.value.trim();
    if (Number(minutes.value) > 0) body.expires_at = Date.now() / 1000 + Number(minutes.value) * 60;
    try {
      await api(`/overrides/${enc(id)}`, { method: "PUT", body });
      if (!fixedClient) client.value = "";
      minutes.value = ""; reason.value = "";
      await after();
    } catch (error) {
      if (error.status === 422 || error.status === 404) showFieldErrors(form, error.status === 404
        ? [{ loc: ["body", "client_id"], msg: "not a client id (k:…, u:… or ip:…)" }] : error.detail, rest);
      else showFieldErrors(form, String(error.message), rest);
    }
  });
  return form;
}
