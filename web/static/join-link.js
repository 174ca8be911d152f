// Join links carry the room's join token in the URL fragment (/room?visit=..#token=..), never
// in the query: a fragment is not sent to the server, so it stays out of access logs, proxies
// and Referer headers (issue 13, R33). The page takes it once, removes it from the address bar
// (and so from the history entry), and keeps it in this tab's sessionStorage so that a reload
// still works; the tab's storage is gone when the tab closes (as the sign-in's is, api.js).

const STORE_PREFIX = "tc.join-token:";

/** This page's join token: from the fragment (then erased from the address bar), else the one
 * taken earlier in this tab for this very page (path and query), else null. */
export function takeJoinToken(location = window.location, history = window.history) {
  const key = STORE_PREFIX + location.pathname + location.search;
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  if (!token) {
    try {
      return sessionStorage.getItem(key);
    } catch {
      return null; // storage disabled: the link itself is the only copy
    }
  }
  try {
    sessionStorage.setItem(key, token);
  } catch {
    // storage disabled: the token lives in this page only; a reload needs the link again
  }
  fragment.delete("token");
  const rest = fragment.toString();
  history.replaceState(history.state, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  return token;
}
