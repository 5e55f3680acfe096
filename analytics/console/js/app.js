// The console's shell: sign-in, navigation between pages (the URL's hash: #/keys,
// #/clients/<id>, ...), and live updates of the pages that have them.
import { api, onUnauthorized, session } from "./api.js";
import { clear, h } from "./dom.js";
import * as overview from "./pages/overview.js";
import * as plans from "./pages/plans.js";
import * as keys from "./pages/keys.js";
import * as client from "./pages/client.js";
import * as endpoint from "./pages/endpoint.js";
import * as recommendations from "./pages/recommendations.js";
import * as audit from "./pages/audit.js";

const PAGES = { overview, plans, keys, clients: client, endpoints: endpoint, recommendations, audit };
const LIVE_EVERY_MS = 5000;
const el = (id) => document.getElementById(id);
let current = { live: null, timer: null, generation: 0 };

function signedIn(yes, message = "") {
  el("login").hidden = yes;
  el("main").hidden = !yes;
  el("nav").hidden = !yes;
  el("goto").hidden = !yes;
  el("sign-out").hidden = !yes;
  el("login-error").textContent = message;
  if (!yes) { stopLive(); clear(el("main")); el("status").textContent = "not signed in"; el("token").focus(); }
}

function stopLive() { clearInterval(current.timer); current.timer = null; current.live = null; }

function status(text) { el("status").textContent = text; }

async function route() {
  if (!session.token()) return signedIn(false);
  const [, name = "overview", ...rest] = location.hash.split("/");
  const page = PAGES[name] || overview;
  const generation = ++current.generation;
  stopLive();
  document.querySelectorAll("#nav a").forEach((a) => {
    if (a.dataset.page === (PAGES[name] ? name : "overview")) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  });
  const main = clear(el("main"));
  main.dataset.page = PAGES[name] ? name : "overview";
  main.setAttribute("aria-busy", "true");
  try {
    const param = rest.length ? decodeURIComponent(rest.join("/")) : null;
    const result = await page.render(main, param, { status });
    if (generation !== current.generation) return;
    document.title = `${page.title || "ratewarden"} · ratewarden console`;
    status(`updated ${new Date().toISOString().slice(11, 19)} UTC`);
    if (result && result.refresh) {
      current.live = result.refresh;
      current.timer = setInterval(async () => {
        if (document.hidden || generation !== current.generation) return;
        try { await current.live(); status(`live · updated ${new Date().toISOString().slice(11, 19)} UTC`); }
        catch (error) { status(`live update failed: ${error.message}`); }
      }, LIVE_EVERY_MS);
    }
  } catch (error) {
    if (error.status === 401) return;
    main.append(h("p", { class: "error", role: "alert" }, `Could not load this page: ${error.message}`));
  } finally {
    main.removeAttribute("aria-busy");
  }
}

onUnauthorized((message) => { session.signOut(); signedIn(false, message); });

el("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const actor = el("actor").value.trim();
  if (actor && !/^[A-Za-z0-9_ .@:+-]{1,64}$/.test(actor)) {
    el("login-error").textContent = "a name has letters, digits, space and .@:+-_ only";
    return;
  }
  session.signIn(el("token").value, actor);
  try {
    await api("/tiers");
  } catch (error) {
    if (error.status !== 401) el("login-error").textContent = error.message;
    return;
  }
  el("token").value = "";
  signedIn(true);
  status(actor ? `signed in as ${actor}` : "signed in");
  await route();
  el("main").focus();
});

el("sign-out").addEventListener("click", () => { session.signOut(); signedIn(false); });
el("goto").addEventListener("submit", (event) => {
  event.preventDefault();
  const id = el("goto-client").value.trim();
  if (id) location.hash = `#/clients/${encodeURIComponent(id)}`;
});
window.addEventListener("hashchange", () => { if (session.token()) route(); });
document.addEventListener("visibilitychange", () => { if (!document.hidden && current.live) current.live().catch(() => {}); });

if (session.token()) { signedIn(true); route(); } else signedIn(false);
