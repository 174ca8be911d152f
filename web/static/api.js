// The REST API (/api/v1, docs/api.md) as the pages use it, and the signed-in session.
//
// The bearer token lives in sessionStorage: it is gone when the tab closes, and it is not sent
// by the browser on its own (no cookie), so another site cannot make requests with it.

const SESSION_KEY = "teleconsult.session";
const PREFIX = "/api/v1";

/** An error answer of the API: HTTP status plus the stable `code` and English `message`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
    this.serverMessage = message;
  }
}

export function getSession() {
  try {
    const raw = window.sessionStorage.getItem(SESSION_KEY);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

export function saveSession(session) {
  window.sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

export function clearSession() {
  window.sessionStorage.removeItem(SESSION_KEY);
}

/** Call the API; resolve with the parsed JSON (null for 204), reject with ApiError. */
export async function api(method, path, body = undefined) {
  const headers = { Accept: "application/json" };
  const session = getSession();
  if (session?.token) headers.Authorization = `Bearer ${session.token}`;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(PREFIX + path, init);
  } catch (err) {
    throw new ApiError(0, "network_error", String(err?.message ?? err));
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    // Not JSON: reported below as an error without a code.
  }
  if (!response.ok) {
    const error = data?.error ?? {};
    throw new ApiError(response.status, error.code ?? "unknown", error.message ?? "");
  }
  return data;
}

/** The page a role lands on after signing in. */
export function homeFor(role) {
  if (role === "patient") return "/waiting";
  if (role === "doctor") return "/queue";
  if (role === "admin" || role === "operator" || role === "nurse") return "/console";
  return "/signin?signed_in=1";
}

/** Send the user to the sign-in page unless signed in (optionally with one of `roles`). */
export function requireSession(roles = null) {
  const session = getSession();
  if (!session?.token || (roles && !roles.includes(session.me?.role))) {
    const next = window.location.pathname + window.location.search;
    window.location.assign(`/signin?next=${encodeURIComponent(next)}`);
    return null;
  }
  return session;
}
