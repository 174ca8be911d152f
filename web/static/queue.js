// The doctor's queue: go online, admit the next patient (one at a time), talk in the embedded
// consult room, send back, end, or end and refer offline with a reason.

import { applyI18n, onLanguageChange, t } from "./i18n.js";
import { api, ApiError, requireSession } from "./api.js";
import { busy, clock, initPage, portal, setState, showError, watchIdle } from "./portal.js";
import { watchUpdates } from "./updates.js";

const el = {
  status: document.getElementById("status"),
  onlineText: document.getElementById("online-text"),
  onlineToggle: document.getElementById("online-toggle"),
  roomCard: document.getElementById("room-card"),
  roomFrame: document.getElementById("room-frame"),
  queue: document.getElementById("queue"),
  empty: document.getElementById("queue-empty"),
  template: document.getElementById("queue-item"),
};

let me = null;
let practitioner = null;
let visits = [];
let roomVisitId = null;
const referring = new Set(); // visit ids whose refer form is open
const ending = new Set(); // visit ids whose "end the visit?" question is open
portal.queue = visits;
portal.roomVisitId = null;

function renderOnline() {
  const online = Boolean(practitioner?.online);
  el.onlineText.textContent = t(online ? "queue.online" : "queue.offline");
  el.onlineToggle.textContent = t(online ? "queue.go_offline" : "queue.go_online");
  el.onlineToggle.dataset.online = String(online);
  el.status.textContent = t(online ? "queue.status_online" : "queue.status_offline");
  el.status.dataset.state = online ? "joined" : "init";
}

function describe(visit) {
  const parts = [t(`visit.state.${visit.state}`), t(`visit.mode.${visit.mode}`)];
  if (visit.state === "waiting" && visit.checked_in_at) {
    parts.push(t("visit.checked_in_at", { time: clock(visit.checked_in_at) }));
  }
  return parts.join(" · ");
}

function renderQueue() {
  const inRoom = visits.find((v) => v.state === "in_room");
  el.empty.hidden = visits.length > 0;
  const items = new Map([...el.queue.children].map((li) => [li.dataset.visitId, li]));
  for (const [id, li] of items) {
    if (!visits.some((v) => v.id === id)) li.remove();
  }
  for (const visit of visits) {
    let li = items.get(visit.id);
    if (!li) {
      li = el.template.content.firstElementChild.cloneNode(true);
      li.dataset.visitId = visit.id;
      applyI18n(li);
      wire(li, visit.id);
    }
    el.queue.appendChild(li); // keeps the server's order
    li.dataset.state = visit.state;
    li.querySelector(".who").textContent = visit.patient_name ?? t("role.patient");
    li.querySelector(".meta").textContent = describe(visit);
    const button = (action) => li.querySelector(`[data-action="${action}"]`);
    const here = visit.state === "in_room";
    button("admit").hidden = visit.state !== "waiting";
    button("admit").disabled = Boolean(inRoom);
    button("enter").hidden = !here || roomVisitId === visit.id;
    button("send_back").hidden = !here;
    button("end").hidden = !here || ending.has(visit.id);
    button("refer").hidden = !here || referring.has(visit.id);
    li.querySelector(".refer-form").hidden = !here || !referring.has(visit.id);
    li.querySelector(".end-confirm").hidden = !here || !ending.has(visit.id);
    const record = button("record");
    record.hidden = !visit.patient_record_id;
    if (visit.patient_record_id) {
      record.href = `/console?patient=${encodeURIComponent(visit.patient_record_id)}`;
    }
  }
  if (roomVisitId && !visits.some((v) => v.id === roomVisitId && v.state === "in_room")) {
    closeRoom();
  }
}

function wire(li, visitId) {
  const on = (action, fn) =>
    li.querySelector(`[data-action="${action}"]`).addEventListener("click", (event) => {
      event.preventDefault();
      fn(event.currentTarget);
    });
  on("admit", (button) => act(button, visitId, "admit", null, true));
  on("enter", (button) => busy(button, () => openRoom(visitId)));
  on("send_back", (button) => act(button, visitId, "send-back"));
  on("end", () => {
    ending.add(visitId);
    referring.delete(visitId);
    renderQueue();
    li.querySelector('[data-action="end_confirm"]').focus();
  });
  on("end_cancel", () => {
    ending.delete(visitId);
    renderQueue();
  });
  on("end_confirm", async (button) => {
    const done = await act(button, visitId, "end");
    if (done) ending.delete(visitId);
    renderQueue();
  });
  on("refer", () => {
    referring.add(visitId);
    ending.delete(visitId);
    renderQueue();
    li.querySelector("textarea").focus();
  });
  on("refer_cancel", () => {
    referring.delete(visitId);
    renderQueue();
  });
  li.querySelector(".refer-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const reason = form.elements.reason.value.trim();
    if (!reason) {
      form.elements.reason.focus();
      showError(new ApiError(0, "reason_missing", ""));
      return;
    }
    const body = { reason };
    const appointment = form.elements.appointment.value.trim();
    if (appointment) body.appointment = appointment;
    const done = await act(form.querySelector('[data-action="refer_confirm"]'), visitId, "refer", body);
    if (done) referring.delete(visitId);
    renderQueue();
  });
}

/** POST /visits/{id}/{step}; on success refresh the queue (and open the room after admit). */
async function act(button, visitId, step, body = null, enter = false) {
  const result = await busy(button, async () => {
    const visit = await api("POST", `/visits/${visitId}/${step}`, body ?? {});
    await refresh();
    if (enter) await openRoom(visitId);
    return visit;
  });
  if (result === null) await refresh();
  return result !== null;
}

async function openRoom(visitId) {
  const join = await api("POST", `/visits/${visitId}/join-token`, {});
  roomVisitId = visitId;
  portal.roomVisitId = visitId;
  el.roomFrame.src = join.room_url;
  el.roomCard.hidden = false;
  renderQueue();
}

function closeRoom() {
  roomVisitId = null;
  portal.roomVisitId = null;
  el.roomFrame.src = "about:blank";
  el.roomCard.hidden = true;
}

async function refresh() {
  try {
    const queue = await api("GET", "/queue");
    visits = queue.visits;
    portal.queue = visits;
    renderQueue();
  } catch (err) {
    showError(err);
  }
}

async function toggleOnline() {
  await busy(el.onlineToggle, async () => {
    practitioner = await api("POST", "/me/online", { online: !practitioner?.online });
    portal.practitioner = practitioner;
    renderOnline();
  });
}

async function main() {
  initPage();
  const session = requireSession(["doctor"]);
  if (!session) return;
  watchIdle(() => roomVisitId !== null);
  me = session.me;
  onLanguageChange(() => {
    renderOnline();
    renderQueue();
  });
  el.onlineToggle.addEventListener("click", () => toggleOnline());
  // The embedded room tells us when it was left (send-back, end, referral: room_left).
  window.addEventListener("message", (event) => {
    if (event.origin === window.location.origin && event.data?.type === "room_left") refresh();
  });
  try {
    practitioner = await api("GET", `/practitioners/${me.user_id}`);
    portal.practitioner = practitioner;
  } catch (err) {
    showError(err);
  }
  renderOnline();
  setState("ready");
  // No polling: the queue reads again when the server pushes a change (and on each connect).
  watchUpdates(() => refresh(), () => roomVisitId !== null);
}

main();
