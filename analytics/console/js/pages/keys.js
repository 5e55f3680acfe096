// API keys: create (the secret shown once), list, change owner, tier and note, rotate (the old
// secret keeps working for a grace period), revoke.
import { api, enc } from "../api.js";
import { card, clear, clearFieldErrors, clientLink, field, fmt, h, showFieldErrors, table } from "../dom.js";

export const title = "Keys";

export async function render(main) {
  const secretBox = h("div", { id: "secret-box", "aria-live": "polite" });
  const listBox = h("div");
  const editBox = h("div");
  let tiers = [];

  function showSecret(what, apiKey, record) {
    const code = h("code", { id: "new-secret", tabindex: -1 }, apiKey);
    clear(secretBox, h("div", { class: "secret", role: "alert" },
      h("p", {}, `${what} for ${record.owner} (${record.id}). Copy it now: it is shown once and never again.`),
      h("p", {}, code),
      h("div", { class: "actions" },
        h("button", { type: "button", onclick: async (e) => {
          try { await navigator.clipboard.writeText(apiKey); e.target.textContent = "Copied"; }
          catch { e.target.textContent = "Select the key and copy it"; }
        } }, "Copy"),
        h("button", { type: "button", id: "dismiss-secret", onclick: () => clear(secretBox) }, "I have saved it: hide"))));
    code.focus();
  }

  const tierSelect = (value) => {
    const select = h("select", {}, h("option", { value: "" }, "default tier"), tiers.map((t) => h("option", { value: t }, t)));
    select.value = value ?? "";
    return select;
  };

  function createForm() {
    const owner = h("input", { required: true, size: 20, maxlength: 200, autocomplete: "off" });
    const tier = tierSelect(null);
    const note = h("input", { size: 30, maxlength: 500 });
    const rest = h("ul", { class: "error" });
    const form = h("form", { class: "grid", id: "key-form", "aria-label": "create a key", novalidate: true },
      field("owner", "owner", owner), field("tier", "tier", tier), field("note", "note", note),
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Create key")), rest);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearFieldErrors(form, rest);
      try {
        const created = await api("/keys", { method: "POST", body: { owner: owner.value.trim(), tier: tier.value || null, note: note.value } });
        form.reset();
        showSecret("New key", created.api_key, created.record);
        await refresh();
      } catch (error) {
        if (error.status === 422) showFieldErrors(form, error.detail, rest); else clear(rest, h("li", {}, error.message));
      }
    });
    return form;
  }

  function editForm(key) {
    const owner = h("input", { size: 20, maxlength: 200 }); owner.value = key.owner;
    const tier = tierSelect(key.tier);
    const note = h("input", { size: 30, maxlength: 500 }); note.value = key.note || "";
    const grace = h("input", { type: "number", min: 0, step: "any", size: 8, placeholder: "default" });
    const rest = h("ul", { class: "error" });
    const form = h("form", { class: "grid", id: "key-edit-form", "aria-label": `change ${key.id}`, novalidate: true },
      field("owner", "owner", owner), field("tier", "tier", tier), field("note", "note", note),
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Save"),
        h("button", { type: "button", onclick: () => clear(editBox) }, "Cancel")), rest);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearFieldErrors(form, rest);
      try {
        await api(`/keys/${enc(key.id)}`, { method: "PATCH", body: { owner: owner.value.trim(), tier: tier.value || null, note: note.value } });
        clear(editBox);
        await refresh();
      } catch (error) {
        if (error.status === 422) showFieldErrors(form, error.detail, rest); else clear(rest, h("li", {}, error.message));
      }
    });
    const rotateRest = h("ul", { class: "error" });
    const rotate = h("form", { class: "grid", id: "key-rotate-form", "aria-label": `rotate ${key.id}`, novalidate: true },
      field("grace_s", "grace period of the old secret (seconds; empty: the server's default, 24 h unless set)", grace),
      h("div", { class: "actions" }, h("button", { type: "submit" }, `Rotate ${key.id}`)), rotateRest);
    rotate.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearFieldErrors(rotate, rotateRest);
      try {
        const body = grace.value === "" ? {} : { grace_s: Number(grace.value) };
        const rotated = await api(`/keys/${enc(key.id)}/rotate`, { method: "POST", body });
        clear(editBox);
        showSecret("New secret", rotated.api_key, rotated.record);
        await refresh();
      } catch (error) {
        if (error.status === 422) showFieldErrors(rotate, error.detail, rotateRest); else clear(rotateRest, h("li", {}, error.message));
      }
    });
    clear(editBox, card(`Key ${key.id}`, { wide: true, id: "key-editor" },
      h("p", {}, "Client page: ", clientLink(`k:${key.id}`)), form, h("h4", {}, "Rotate"), rotate));
    owner.focus();
  }

  async function refresh() {
    const [keys, view] = await Promise.all([api("/keys"), api("/tiers")]);
    tiers = Object.keys(view.tiers).sort();
    clear(listBox, table(
      [{ label: "id" }, { label: "owner" }, { label: "tier" }, { label: "note" }, { label: "prefix" }, { label: "status" },
       { label: "created" }, { label: "rotated-out secret" }, { label: "actions" }],
      keys.sort((a, b) => b.created_at - a.created_at).map((k) => [
        h("a", { href: `#/clients/${enc(`k:${k.id}`)}`, title: `client k:${k.id}` }, k.id), k.owner, k.tier ?? "(default)", k.note || "", h("code", {}, `${k.prefix}…`),
        h("span", { class: `badge ${k.status}` }, k.status), fmt.time(k.created_at),
        k.previous ? `${k.previous.prefix}… until ${fmt.time(k.previous.expires_at)}` : "",
        k.status === "revoked" ? "" : h("div", { class: "actions" },
          h("button", { type: "button", "data-edit": k.id, "aria-label": `change or rotate ${k.id}`,
                     onclick: () => editForm(k) }, "Change or rotate"),
          h("button", { type: "button", class: "danger", "data-revoke": k.id, onclick: async () => {
            if (!confirm(`Revoke ${k.id} (${k.owner})? Every enforcer refuses it within a second.`)) return;
            await api(`/keys/${enc(k.id)}`, { method: "DELETE" });
            await refresh();
          }, "aria-label": `revoke ${k.id}` }, "Revoke")),
      ]), { id: "keys", empty: "no keys yet" }));
  }

  await refresh();
  main.append(h("h2", {}, "API keys"),
    card("Create a key", { wide: true }, createForm(), secretBox), editBox, card("Keys", { wide: true, id: "keys-card" }, listBox));
  return null;
}
