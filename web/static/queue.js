// The doctor's queue: go online, admit the next patient (one at a time), talk in the consult
// room shown beside the queue (room-view.js, mounted in this page: no frame, one top bar), send
// back, end, or end and refer offline with a reason. While the room is open, the visit's summary
// and actions sit at the top of the room's side panel, above the chat.

import { applyI18n, onLanguageChange, t } from "./i18n.js";
import { api, ApiError, requireSession } from "./api.js";
import { busy, clock, initPage, oneAtATime, portal, setState, showError, watchIdle } from "./portal.js";
import { watchUpdates } from "./updates.js";
import { RoomView } from "./room-view.js";
import { mountRatings, ratingPushed } from "./queue-ratings.js";

const el = {
  status: document.getElementById("status"),
  onlineText: document.getElementById("online-text"),
  onlineToggle: document.getElementById("online-toggle"),
  roomCard: document.getElementById("room-card"),
  roomHost: document.getElementById("room-host"),
  queue: document.getElementById("queue"),
  empty: document.getElementById("queue-empty"),
  template: document.getElementById("queue-item"),
};

let me = null;
let practitioner = null;
let visits = [];
let roomVisitId = null;
let room = null; // the mounted RoomView
const itemsById = new Map(); // visit id -> its <li> (in the queue, or in the room's side panel)
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
  const parts = [t(`staff_state.${visit.state}`), t(`visit.mode.${visit.mode}`)];
  if (visit.state === "waiting" && visit.checked_in_at) {
    parts.push(t("visit.checked_in_at", { time: clock(visit.checked_in_at) }));
  }
  // R4: pushed when the guardian comes (visit_changed "arrived"); the doctor may start then
  if (visit.state === "waiting" && visit.guardian_present) parts.push(t("queue.guardian_here"));
  return parts.join(" · ");
}

function renderQueue() {
  const inRoom = visits.find((v) => v.state === "in_room");
  for (const [id, li] of itemsById) {
    if (!visits.some((v) => v.id === id)) {
      li.remove();
      itemsById.delete(id);
    }
  }
  el.empty.hidden = visits.some((v) => v.id !== roomVisitId);
  for (const visit of visits) {
    let li = itemsById.get(visit.id);
    if (!li) {
      li = el.template.content.firstElementChild.cloneNode(true);
      li.dataset.visitId = visit.id;
      applyI18n(li);
      wire(li, visit.id);
      itemsById.set(visit.id, li);
    }
    if (room && visit.id === roomVisitId) {
      // the visit in the room: its summary and actions beside the video
      if (li.parentElement?.id !== "room-visit") room.setVisitPanel(visitPanel(li));
    } else {
      el.queue.appendChild(li); // keeps the server's order
    }
    li.dataset.state = visit.state;
    li.querySelector(".who").textContent = visit.patient_name ?? t("role.patient");
    li.querySelector(".meta").textContent = describe(visit);
    const summary = li.querySelector(".summary");
    summary.hidden = visit.state !== "in_room";
    if (visit.state === "in_room") summary.replaceChildren(...summaryRows(visit));
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

/** The facts of the visit the doctor is in: what the room's side panel shows first. */
function summaryRows(visit) {
  const rows = [
    ["queue.summary_department", visit.department_name],
    ["queue.summary_admitted", visit.admitted_at ? clock(visit.admitted_at) : null],
    ["queue.summary_guardian", visit.guardian_present ? t("queue.summary_yes") : null],
  ];
  const out = [];
  for (const [key, value] of rows) {
    if (!value) continue;
    const dt = document.createElement("dt");
    dt.textContent = t(key);
    const dd = document.createElement("dd");
    dd.textContent = value;
    out.push(dt, dd);
  }
  return out;
}

/** The room's side panel block: a heading and the visit's <li> in a list of its own. */
function visitPanel(li) {
  const section = document.createElement("section");
  section.className = "room-visit";
  section.setAttribute("aria-labelledby", "room-visit-heading");
  const heading = document.createElement("h2");
  heading.id = "room-visit-heading";
  heading.dataset.i18n = "queue.room_heading";
  heading.textContent = t("queue.room_heading");
  const list = document.createElement("ol");
  list.id = "room-visit";
  list.className = "queue";
  list.append(li);
  section.append(heading, list);
  return section;
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
    // in the queue's list the page scrolls: show the whole question, not only its button
    // (beside the video it floats over the page, portal.css)
    li.querySelector(".end-confirm").scrollIntoView({ block: "nearest" });
  });
  on("end_cancel", () => {
    ending.delete(visitId);
    renderQueue();
  });
  // Escape answers "go on with the visit", as the room's other questions do (a <dialog>)
  li.querySelector(".end-confirm").addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    event.preventDefault();
    ending.delete(visitId);
    renderQueue();
    li.querySelector('[data-action="end"]').focus();
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
    li.querySelector(".refer-form").scrollIntoView({ block: "nearest" }); // in the queue's list
  });
  on("refer_cancel", () => {
    referring.delete(visitId);
    renderQueue();
  });
  li.querySelector(".refer-form").addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return; // as "cancel": the visit goes on
    event.preventDefault();
    referring.delete(visitId);
    renderQueue();
    li.querySelector('[data-action="refer"]').focus();
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
  // the token from the answer itself: the link's fragment is for pages opened from a link
  const link = new URL(join.room_url, window.location.origin).searchParams;
  room?.destroy();
  roomVisitId = visitId;
  portal.roomVisitId = visitId;
  document.body.classList.add("in-room");
  el.roomCard.hidden = false;
  room = new RoomView(el.roomHost, {
    visitId,
    token: join.token,
    textOnly: link.get("mode") === "text",
    embedded: true,
    // sent back, ended, referred: the server took the visit out of the room; read the queue
    onRoomLeft: () => refresh(),
    // the doctor left the room (the visit goes on): back to the queue, "open video" offered
    onClosed: () => {
      if (roomVisitId === visitId) closeRoom();
    },
  });
  room.start();
  renderQueue();
}

function closeRoom() {
  roomVisitId = null;
  portal.roomVisitId = null;
  room?.destroy();
  room = null;
  document.body.classList.remove("in-room");
  el.roomCard.hidden = true;
  renderQueue();
}

// pushes come in bursts: one read at a time, the last one shown last
const refresh = oneAtATime(async () => {
  try {
    const queue = await api("GET", "/queue");
    visits = queue.visits;
    portal.queue = visits;
    renderQueue();
  } catch (err) {
    showError(err);
  }
});

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
  try {
    practitioner = await api("GET", `/practitioners/${me.user_id}`);
    portal.practitioner = practitioner;
  } catch (err) {
    showError(err);
  }
  renderOnline();
  mountRatings(me.user_id).catch((err) => console.info("[queue] ratings not shown:", err));
  setState("ready");
  // No polling: the queue reads again when the server pushes a change (and on each connect).
  watchUpdates(
    (change) => {
      // a reconnect (null) may have missed either kind of push
      if (!change?.rating_visit) refresh();
      if (change === null || change.rating_visit) ratingPushed();
    },
    () => roomVisitId !== null,
  );
}

main();
