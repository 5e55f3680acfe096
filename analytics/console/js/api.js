// The admin API as the console calls it: the admin token from this tab's session storage as a
// bearer token, the operator's name as X-Ratewarden-Actor (the audit log's "who").
const TOKEN = "rw-token";
const ACTOR = "rw-actor";

export class ApiError extends Error {
  constructor(status, detail) {
    super(`${status}: ${describe(detail)}`);
    this.status = status;
    this.detail = detail; // a 422's detail: [{loc: ["body", "rules", 0, "limit"], msg}]
  }
}

// A 422's list as "path: message; ...", anything else as text.
function describe(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((e) => `${(e.loc || []).filter((p) => !["body", "path", "query"].includes(p)).join(".")}: ${e.msg}`).join("; ");
  }
  return JSON.stringify(detail);
}

export const session = {
  token: () => sessionStorage.getItem(TOKEN),
  actor: () => sessionStorage.getItem(ACTOR) || "",
  signIn(token, actor) {
    sessionStorage.setItem(TOKEN, token);
    if (actor) sessionStorage.setItem(ACTOR, actor); else sessionStorage.removeItem(ACTOR);
  },
  signOut() { sessionStorage.removeItem(TOKEN); sessionStorage.removeItem(ACTOR); },
};

let unauthorized = () => {};
export function onUnauthorized(handler) { unauthorized = handler; }

// GET/POST/... /api/v1<path>; `query` an object of parameters (arrays repeat), `body` JSON.
export async function api(path, { method = "GET", query, body } = {}) {
  const url = new URL("/api/v1" + path, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    for (const item of [].concat(value)) if (item !== undefined && item !== null && item !== "") url.searchParams.append(name, item);
  }
  const headers = { authorization: "Bearer " + (session.token() || ""), accept: "application/json" };
  if (session.actor()) headers["x-ratewarden-actor"] = session.actor();
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(url, { method, headers, cache: "no-store",
                                      body: body === undefined ? undefined : JSON.stringify(body) });
  if (response.status === 401) {
    unauthorized("the admin token was refused");
    throw new ApiError(401, "the admin token was refused");
  }
  if (!response.ok) {
    const text = await response.text();
    let detail = text;
    try { detail = JSON.parse(text).detail ?? text; } catch { /* not JSON */ }
    throw new ApiError(response.status, detail);
  }
  return response.status === 204 ? null : response.json();
}

export const enc = encodeURIComponent;
