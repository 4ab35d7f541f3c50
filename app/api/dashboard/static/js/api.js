// The public HTTP API, called with the session cookie (the browser sends it; scripts
// cannot read it) and, on every change, the session's CSRF token.

const ROLES = ["viewer", "operator", "author", "admin"];

export const session = {signedIn: false, auth: true, name: null, role: null, csrf: null,
                        flowerUrl: null};

export class ApiError extends Error {
  constructor(status, body) {
    const detail = body && typeof body === "object" ? body.detail : body;
    super(typeof detail === "string" ? detail : JSON.stringify(detail ?? `HTTP ${status}`));
    this.status = status;
    this.body = body;
  }
}

let onSignedOut = () => {};
/** What to do when the API says the session is gone (401): show the sign-in form. */
export function whenSignedOut(fn) { onSignedOut = fn; }

/** Whether the signed-in key's role is ``role`` or higher. */
export function can(role) {
  return session.signedIn && ROLES.indexOf(session.role) >= ROLES.indexOf(role);
}

function url(path, query) {
  const full = new URL(path.startsWith("/ui/") ? path : `/api/v1${path}`, location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value === undefined || value === null || value === "") continue;
    for (const one of Array.isArray(value) ? value : [value]) full.searchParams.append(key, one);
  }
  return full;
}

/** The URL of an API path (for links: downloads, Flower). */
export function apiUrl(path, query) { return url(path, query).toString(); }

/**
 * Call the API: api("GET", "/runs", {query}), api("POST", "/runs", {body}),
 * api("PUT", "/workflows/x", {yaml: text}). Resolves to the JSON (or text) body;
 * rejects with an ApiError carrying the status and the API's error body.
 */
export async function api(method, path, {query, body, yaml, text = false} = {}) {
  const headers = {Accept: text ? "text/plain" : "application/json"};
  if (!["GET", "HEAD"].includes(method) && session.csrf) headers["X-CSRF-Token"] = session.csrf;
  let payload;
  if (yaml !== undefined) {
    headers["Content-Type"] = "application/yaml";
    payload = yaml;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const response = await fetch(url(path, query), {method, headers, body: payload,
                                                  credentials: "same-origin"});
  const raw = await response.text();
  const type = response.headers.get("content-type") || "";
  const data = type.includes("json") && raw ? JSON.parse(raw) : raw;
  if (!response.ok) {
    if (response.status === 401 && !path.startsWith("/ui/")) onSignedOut();
    throw new ApiError(response.status, data);
  }
  return data;
}

/** Read the session (after a reload, the cookie is still there). */
export async function loadSession() {
  return adopt(await api("GET", "/ui/session"));
}

export async function signIn(key) {
  return adopt(await api("POST", "/ui/session", {body: {key}}));
}

export async function signOut() {
  await api("DELETE", "/ui/session");
  adopt({signed_in: false, auth: session.auth});
}

function adopt(answer) {
  Object.assign(session, {signedIn: answer.signed_in, auth: answer.auth, name: answer.name,
                          role: answer.role, csrf: answer.csrf, flowerUrl: answer.flower_url});
  return session;
}
