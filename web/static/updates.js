// Pushed updates for the portal pages (docs/signaling.md, namespace /updates): the queue and
// the waiting room read again when told that one of their visits changed, instead of polling.

import { clearSession, getSession } from "./api.js";
import { portal } from "./portal.js";
import { openUpdates } from "./signaling.js";

const TOUCH_MS = 60_000;

/**
 * Connect the page's `/updates` socket. `onChange(change)` runs on every push
 * (`visit_changed` `{visit, state, event}`, `consultation_changed` `{machine, id, state, event}`,
 * `room_changed` `{room, state, reason}`) and, with `null`, on every (re)connect, since pushes may have been
 * missed meanwhile. A `reminder` push, and each (re)connect, are also dispatched on `window`
 * (`teleconsult:reminder`, `teleconsult:updates-connected`) for reminders.js. `inUse()` says whether the page is busy without being touched (a room open
 * in it): the session is then kept alive, once a minute at most.
 */
export function watchUpdates(onChange, inUse = () => false) {
  const session = getSession();
  const socket = openUpdates(session?.token);
  portal.pushes = [];
  socket.on("connect", () => {
    portal.updates = "connected";
    onChange(null);
    window.dispatchEvent(new CustomEvent("teleconsult:updates-connected"));
  });
  socket.on("disconnect", () => (portal.updates = "disconnected"));
  socket.on("visit_changed", (change) => {
    portal.pushes.push(change);
    onChange(change);
  });
  socket.on("rating_changed", (change) => {
    portal.pushes.push(change);
    onChange(change);
  });
  socket.on("consultation_changed", (change) => {
    portal.pushes.push(change);
    onChange(change);
  });
  socket.on("room_changed", (change) => {
    // asked out of a consultation's room, or let back in (docs/consultations.md)
    portal.pushes.push(change);
    onChange(change);
  });
  socket.on("reminder", (reminder) => {
    // a reminder for this account (docs/consultations.md, Reminders): reminders.js shows it
    window.dispatchEvent(new CustomEvent("teleconsult:reminder", { detail: reminder }));
  });
  socket.on("signed_out", (payload) => {
    console.info("[portal] signed out elsewhere:", payload?.reason);
    clearSession();
    window.location.assign("/signin?expired=1");
  });
  socket.on("connect_error", (err) => {
    if (err?.data?.code) {
      // The session is no longer valid: sign in again.
      clearSession();
      const next = window.location.pathname + window.location.search;
      window.location.assign(`/signin?next=${encodeURIComponent(next)}&expired=1`);
    }
  });
  const timer = setInterval(() => {
    if (socket.connected && inUse()) socket.emit("touch");
  }, TOUCH_MS);
  window.addEventListener("pagehide", () => {
    clearInterval(timer);
    socket.disconnect();
  });
  return socket;
}
