// What the sign-in, waiting-room and queue pages share: strings, the language toggle, errors,
// the top bar's sign-out, and `window.__portal` (state for tests and for people debugging).

import {
  addStrings,
  applyI18n,
  getLanguage,
  hasKey,
  initLanguageToggle,
  onLanguageChange,
  t,
} from "./i18n.js";
import { STRINGS } from "./portal-strings.js";
import { ApiError, api, clearSession, getSession } from "./api.js";

addStrings(STRINGS);

export const portal = { state: "init", errors: [] };
window.__portal = portal;

export function setState(state) {
  if (portal.state !== state) console.info(`[portal] state ${portal.state} -> ${state}`);
  portal.state = state;
}

// Answers that mean "sign in again": the page goes to the sign-in page and comes back after.
const SIGNED_OUT_CODES = new Set([
  "unauthenticated",
  "session_invalid",
  "session_expired",
  "token_revoked",
]);

// The last time the person touched the page. The pages poll, and polling alone would keep a
// session alive forever; so a page that nobody has touched for the session's idle timeout (15
// minutes for staff, 2 hours for patients) signs out by itself (R33).
let lastActivity = Date.now();
for (const type of ["pointerdown", "keydown", "touchstart"]) {
  window.addEventListener(type, () => (lastActivity = Date.now()), { passive: true });
}

/** Sign out once nobody has used the page for the session's idle timeout. `inUse()` says
 * whether the page is busy anyway (a consultation open in an embedded room, whose clicks the
 * page does not see). */
export function watchIdle(inUse = () => false) {
  const timer = setInterval(() => {
    if (inUse()) lastActivity = Date.now();
    const timeoutS = getSession()?.idle_timeout_s ?? 15 * 60;
    if (Date.now() - lastActivity > timeoutS * 1000) {
      clearInterval(timer);
      signOutAndLeave("/signin?expired=1");
    }
  }, 10_000);
}

/** Wire the language toggle and fill the static strings. */
export function initPage() {
  const toggle = document.getElementById("lang-toggle");
  if (toggle) initLanguageToggle(toggle);
  applyI18n();
  const whoAmI = document.getElementById("who-am-i");
  const me = getSession()?.me;
  if (whoAmI && me) whoAmI.textContent = me.display_name ?? "";
  const signOut = document.getElementById("topbar-sign-out");
  if (signOut) signOut.addEventListener("click", () => signOutAndLeave());
  // The error line is text made in the language of the moment: remake it after a toggle.
  onLanguageChange(() => renderError());
}

/** The stable code of an error: an ApiError's, or `code` of a page's own `{code}` object. */
export function errorCode(err) {
  if (err instanceof ApiError) return err.code;
  if (err && typeof err === "object" && typeof err.code === "string") return err.code;
  return "unknown";
}

/** The text for an API error: our own wording for known codes, else the server's message. */
export function errorText(err) {
  const code = errorCode(err);
  // a form's own wording where it has one (booking-strings.js), else the one table's
  // (/errors.js): every code of the table has its text, none shows as a raw code
  if (hasKey(`api.${code}`)) return t(`api.${code}`);
  return hasKey(`error.${code}`) ? t(`error.${code}`) : t("error.unknown");
}

let errorBox = null;
let shownError = null; // the error on show, remade in the new language after a toggle

function renderError() {
  errorBox ??= document.getElementById("error");
  if (!errorBox || shownError === null) return;
  const colon = getLanguage() === "en" ? ": " : "："; // a full-width colon only in Chinese
  errorBox.textContent = `${t("error.prefix")}${colon}${errorText(shownError)}`;
}

/** Show `err` in the page's error line (role=alert), or hide it with `null`. */
export function showError(err) {
  errorBox ??= document.getElementById("error");
  if (!errorBox) return;
  if (err === null) {
    shownError = null;
    errorBox.hidden = true;
    errorBox.textContent = "";
    delete errorBox.dataset.code;
    return;
  }
  const code = errorCode(err);
  if (err instanceof ApiError && err.status === 401 && SIGNED_OUT_CODES.has(code)) {
    clearSession();
    const next = window.location.pathname + window.location.search;
    window.location.assign(`/signin?next=${encodeURIComponent(next)}&expired=1`);
    return;
  }
  portal.errors.push({ code, message: String(err?.message ?? err) });
  console.warn("[portal] error", code, err);
  shownError = err;
  renderError();
  errorBox.dataset.code = code;
  errorBox.hidden = false;
}

export async function signOutAndLeave(target = "/signin") {
  try {
    await api("DELETE", "/session");
  } catch {
    // Signed out locally in any case; the session also ends by itself.
  }
  clearSession();
  window.location.assign(target);
}

/**
 * `fn` (a re-read of what the server holds) run one at a time. A call while it runs asks for
 * one more run once it is over, and calls in between share that run: a read started earlier
 * can then never be shown after one started later (pushes come in bursts, and a stale
 * re-render would drop a form the person is typing in).
 */
export function oneAtATime(fn) {
  let running = null;
  let again = false;
  const run = async () => {
    try {
      do {
        again = false;
        await fn();
      } while (again);
    } finally {
      running = null;
    }
  };
  return () => {
    if (running) {
      again = true;
      return running;
    }
    running = run();
    return running;
  };
}

/** Run `fn` with `button` disabled, showing any error; resolves to fn's result or null. */
export async function busy(button, fn) {
  if (button) button.disabled = true;
  try {
    showError(null);
    return await fn();
  } catch (err) {
    showError(err);
    return null;
  } finally {
    if (button) button.disabled = false;
  }
}

/** Format an ISO time as local HH:MM. */
export function clock(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
