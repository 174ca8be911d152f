// The patient's waiting room: device check, consent with its risk notice, check-in, waiting
// for the doctor; on admission the page moves to the consult room (/room?visit=..#token=..).

import { getLanguage, onLanguageChange, t } from "./i18n.js";
import { api, requireSession } from "./api.js";
import { busy, clock, initPage, oneAtATime, portal, setState, showError, watchIdle } from "./portal.js";
import { watchUpdates } from "./updates.js";
import { mountReminders } from "./reminders.js";
import { mountBooking } from "./booking.js";
import { when } from "./console-dom.js";
import { constraints, listDevices, preferredDevices, savePreferredDevices } from "./local-media.js";
import { playChime } from "./chime.js";
import { hideRating, loadHistory, loadRating, mountRating, ratingPushed, renderHistory } from "./rating.js";
import {
  aboutConsultations,
  afterConsultationsRead,
  openConsultations,
  readConsultations,
  renderConsultations,
} from "./waiting-consultations.js";
import { readFollowups, renderFollowups } from "./waiting-followups.js";

const OPEN_STATES = ["booked", "waiting", "in_room"];

/** A finished service, which the patient may rate (R40): ended, or referred from the room. */
function finished(v) {
  return v.state === "ended" || (v.state === "referred" && Boolean(v.admitted_at));
}

const el = {
  status: document.getElementById("status"),
  visitCard: document.getElementById("visit-card"),
  visitState: document.getElementById("visit-state"),
  visitDetails: document.getElementById("visit-details"),
  noVisit: document.getElementById("no-visit"),
  bookCard: document.getElementById("book-card"),
  bookPatientField: document.getElementById("book-patient-field"),
  bookPatient: document.getElementById("book-patient"),
  bookNoRecord: document.getElementById("book-no-record"),
  bookWardPending: document.getElementById("book-ward-pending"),
  bookForm: document.getElementById("book-form"),
  checkinNeeds: document.getElementById("checkin-needs"),
  deviceCard: document.getElementById("device-card"),
  deviceVideo: document.getElementById("device-video"),
  deviceCheck: document.getElementById("device-check"),
  cameraResult: document.getElementById("camera-result"),
  micResult: document.getElementById("mic-result"),
  micMeter: document.getElementById("mic-meter"),
  micLevel: document.getElementById("mic-level"),
  speakerTest: document.getElementById("speaker-test"),
  speakerResult: document.getElementById("speaker-result"),
  deviceChoice: document.getElementById("device-choice"),
  cameraSelect: document.getElementById("camera-select"),
  microphoneSelect: document.getElementById("microphone-select"),
  speakerSelect: document.getElementById("speaker-select"),
  speakerField: document.getElementById("speaker-field"),
  consentCard: document.getElementById("consent-card"),
  consentText: document.getElementById("consent-text"),
  consentAgree: document.getElementById("consent-agree"),
  consentSign: document.getElementById("consent-sign"),
  checkinCard: document.getElementById("checkin-card"),
  checkinText: document.getElementById("checkin-text"),
  checkIn: document.getElementById("check-in"),
  outcomeCard: document.getElementById("outcome-card"),
  outcomeText: document.getElementById("outcome-text"),
  visitSummary: document.getElementById("visit-summary"),
  referralBox: document.getElementById("referral-box"),
  referralReason: document.getElementById("referral-reason"),
  referralAppointmentLine: document.getElementById("referral-appointment-line"),
  referralAppointment: document.getElementById("referral-appointment"),
  refusalAgree: document.getElementById("refusal-agree"),
  refusalSign: document.getElementById("refusal-sign"),
  refusalDone: document.getElementById("refusal-done"),
  refusalText: document.getElementById("refusal-text"),
  leftNotice: document.getElementById("left-notice"),
};

// Why the room sent us here (/waiting?visit=..&left=sent_back|ended|referred|cancelled).
const LEFT_REASONS = ["sent_back", "ended", "referred", "cancelled"];
const leftReason = new URLSearchParams(window.location.search).get("left");

let visit = null;
// The documents as shown: {kind, version, digest, text_zh, text_en}; signing sends back the
// version and digest of exactly this text.
let consent = null;
let refusal = null;
const device = { stream: null, audio: null, camera: null, microphone: null, raf: 0 };
portal.device = { camera: null, microphone: null };
let entering = false;
let updates = null; // the /updates socket: the consultations' card, and an open visit
let watchingVisit = false; // an open visit is shown: its pushes read it again
let myId = null; // the signed-in account

/** This page is a guardian's for a ward's visit (a child with its own account books it, R4):
 * the guardian checks in on its own, after the child did, and the doctor waits for it. */
function asGuardian() {
  return Boolean(visit && myId && visit.patient_id !== myId);
}

/** This page's person is in the waiting room (or the room): its own check-in counted. */
function arrived() {
  if (asGuardian()) return visit.guardian_present;
  return visit.state === "waiting" || visit.state === "in_room";
}

// ---------------------------------------------------------------------------------------------
// Rendering

function renderStatus() {
  let key = "waiting.status_loading";
  if (portal.state === "no_visit") {
    // no visit, but a remote consultation may be under way: say so, not "nothing booked"
    key = openConsultations().length ? "waiting.status_consultation" : "waiting.status_no_visit";
  }
  else if (visit) key = `visit.state.${visit.state}`;
  if (portal.state === "entering") key = "waiting.status_entering";
  el.status.textContent = t(key);
  el.status.dataset.state = visit?.state === "in_room" ? "joined" : "init";
}

function renderLeft() {
  const known = LEFT_REASONS.includes(leftReason);
  el.leftNotice.hidden = !known;
  if (!known) return;
  el.leftNotice.dataset.reason = leftReason;
  el.leftNotice.textContent = t(`waiting.left.${leftReason}`);
}

function renderVisit() {
  portal.visit = visit;
  renderStatus();
  renderLeft();
  if (!visit) return;
  el.visitCard.hidden = false;
  el.visitState.textContent = t(`visit.state.${visit.state}`);
  const open = OPEN_STATES.includes(visit.state);
  const parts = [t(`visit.mode.${visit.mode}`)];
  if (asGuardian() && visit.patient_name) parts.push(t("visit.ward", { name: visit.patient_name }));
  if (visit.doctor_name) parts.push(t("visit.doctor", { name: visit.doctor_name }));
  if (visit.department_name) parts.push(visit.department_name);
  if (visit.slot_starts_at) parts.push(t("visit.slot_time", { time: when(visit.slot_starts_at) }));
  else parts.push(t("booking.queue"));
  // "Waiting since" only while waiting: an ended visit is not waiting any more.
  if (visit.state === "waiting" && visit.checked_in_at) {
    parts.push(t("visit.checked_in_at", { time: clock(visit.checked_in_at) }));
  }
  if (visit.state === "waiting" && visit.queue_position != null) {
    parts.push(
      visit.queue_position === 0
        ? t("visit.queue_next")
        : t("visit.queue_position", { n: visit.queue_position }),
    );
  }
  el.visitDetails.textContent = parts.join(" · ");

  el.deviceCard.hidden = !open;
  el.consentCard.hidden = !open;
  el.consentCard.dataset.done = String(Boolean(visit.consent_signed));
  el.consentAgree.disabled = Boolean(visit.consent_signed);
  el.consentAgree.checked = el.consentAgree.checked || Boolean(visit.consent_signed);
  el.consentSign.disabled = Boolean(visit.consent_signed) || !el.consentAgree.checked;
  el.consentSign.textContent = t(visit.consent_signed ? "consent.signed" : "consent.sign");
  el.checkinCard.hidden = !open;
  const waiting = arrived();
  el.checkinCard.dataset.done = String(waiting);
  el.checkIn.hidden = waiting;
  // Check-in comes after the consent (R5): the button says so instead of failing when pressed.
  el.checkIn.disabled = !visit.consent_signed;
  el.checkinNeeds.hidden = waiting || Boolean(visit.consent_signed);
  let intro = waiting ? "checkin.waiting" : "checkin.intro";
  if (asGuardian() && !waiting) intro = "checkin.guardian_intro";
  el.checkinText.textContent = t(intro, { name: visit.patient_name ?? "" });

  el.outcomeCard.hidden = open;
  if (!open) renderOutcome();
  renderDevice();
}

/** What the finished visit was: doctor, department, when it started and ended, how long. */
function renderSummary() {
  const minutes =
    visit.admitted_at && visit.closed_at
      ? Math.max(1, Math.round((Date.parse(visit.closed_at) - Date.parse(visit.admitted_at)) / 60_000))
      : null;
  const rows = [
    ["summary.doctor", visit.doctor_name],
    ["summary.department", visit.department_name],
    ["summary.mode", t(`visit.mode.${visit.mode}`)],
    ["summary.started", visit.admitted_at ? when(visit.admitted_at) : null],
    ["summary.ended", visit.closed_at ? when(visit.closed_at) : null],
    ["summary.duration", minutes === null ? null : t("summary.minutes", { minutes })],
  ].filter(([, value]) => value);
  el.visitSummary.replaceChildren(
    ...rows.flatMap(([key, value]) => {
      const dt = document.createElement("dt");
      dt.textContent = t(key);
      const dd = document.createElement("dd");
      dd.textContent = value;
      dd.dataset.field = key;
      return [dt, dd];
    }),
  );
  el.visitSummary.hidden = rows.length === 0 || !visit.admitted_at;
}

function renderOutcome() {
  el.outcomeText.textContent = t(`outcome.${visit.state}`);
  renderSummary();
  if (finished(visit)) loadRating(visit).catch((err) => showError(err));
  else hideRating();
  const referred = visit.state === "referred";
  el.referralBox.hidden = !referred;
  if (!referred) return;
  loadRefusal().catch((err) => showError(err));
  el.referralReason.textContent = visit.referral_reason ?? "";
  el.referralAppointmentLine.hidden = !visit.referral_appointment;
  el.referralAppointment.textContent = visit.referral_appointment ?? "";
  const acknowledged = Boolean(visit.refusal_acknowledged);
  el.refusalDone.hidden = !acknowledged;
  el.refusalAgree.disabled = acknowledged;
  el.refusalSign.hidden = acknowledged;
  el.refusalSign.disabled = !el.refusalAgree.checked;
}

function renderDevice() {
  const show = (node, kind, ok) => {
    node.dataset.ok = ok === null ? "" : String(ok);
    node.textContent = t(`device.${kind}_${ok === null ? "unknown" : ok ? "ok" : "failed"}`);
  };
  show(el.cameraResult, "camera", device.camera);
  show(el.micResult, "mic", device.microphone);
  el.deviceCard.dataset.done = String(device.camera === true && device.microphone === true);
  el.deviceCheck.textContent = t(device.stream ? "device.again" : "device.start");
}

// ---------------------------------------------------------------------------------------------
// Device check: a preview of the camera and a level meter of the microphone.

function stopDevices() {
  cancelAnimationFrame(device.raf);
  device.stream?.getTracks().forEach((track) => track.stop());
  device.stream = null;
  device.audio?.close().catch(() => {});
  device.audio = null;
  el.deviceVideo.srcObject = null;
}

async function checkDevices() {
  stopDevices();
  let stream;
  try {
    // the devices chosen below (kept for the room), else the browser's defaults
    stream = await navigator.mediaDevices.getUserMedia(constraints());
  } catch (err) {
    console.warn("[portal] getUserMedia failed", err);
    device.camera = false;
    device.microphone = false;
    portal.device = { camera: false, microphone: false, error: err?.name ?? String(err) };
    renderDevice();
    return;
  }
  device.stream = stream;
  el.deviceVideo.srcObject = stream;
  const video = stream.getVideoTracks()[0];
  const audio = stream.getAudioTracks()[0];
  device.camera = Boolean(video && video.readyState === "live");
  device.microphone = Boolean(audio && audio.readyState === "live");
  if (audio) meter(stream);
  portal.device = { ...portal.device, camera: device.camera, microphone: device.microphone };
  renderDevice();
  await renderDeviceChoice(stream);
}

/** Camera, microphone and speaker lists (labels are known once permission was given); the
 * choice is kept for the room (local-media.js) and the check runs again with it. */
async function renderDeviceChoice(stream) {
  const devices = await listDevices();
  const chosen = {
    camera: stream.getVideoTracks()[0]?.getSettings().deviceId,
    microphone: stream.getAudioTracks()[0]?.getSettings().deviceId,
    speaker: preferredDevices().speaker,
  };
  const fill = (select, list, selected) => {
    select.replaceChildren(
      ...list.map((d, i) => {
        const option = document.createElement("option");
        option.value = d.id;
        option.textContent = d.label || t("device.unnamed", { n: i + 1 });
        option.selected = d.id === selected;
        return option;
      }),
    );
  };
  fill(el.cameraSelect, devices.camera, chosen.camera);
  fill(el.microphoneSelect, devices.microphone, chosen.microphone);
  fill(el.speakerSelect, devices.speaker, chosen.speaker);
  // choosing a speaker needs setSinkId (Chromium; not every browser)
  el.speakerField.hidden = devices.speaker.length === 0 || !("setSinkId" in HTMLMediaElement.prototype);
  el.deviceChoice.hidden = devices.camera.length + devices.microphone.length === 0;
  portal.device.choices = {
    camera: devices.camera.length,
    microphone: devices.microphone.length,
    speaker: devices.speaker.length,
  };
}

function chooseDevice(kind, select) {
  savePreferredDevices({ [kind]: select.value });
  portal.device.chosen = preferredDevices();
  if (kind !== "speaker") checkDevices();
}

/** The speaker test: a chime on the chosen speaker. */
async function testSpeaker() {
  el.speakerTest.disabled = true;
  try {
    await playChime({ sinkId: preferredDevices().speaker });
    portal.device = { ...portal.device, speakerPlayed: (portal.device.speakerPlayed ?? 0) + 1 };
    el.speakerResult.dataset.i18n = "device.speaker_played";
    el.speakerResult.textContent = t("device.speaker_played");
  } catch (err) {
    console.warn("[portal] speaker test failed", err);
  } finally {
    el.speakerTest.disabled = false;
  }
}

function meter(stream) {
  const context = new AudioContext();
  device.audio = context;
  const analyser = context.createAnalyser();
  analyser.fftSize = 512;
  context.createMediaStreamSource(stream).connect(analyser);
  const samples = new Uint8Array(analyser.fftSize);
  const tick = () => {
    analyser.getByteTimeDomainData(samples);
    let peak = 0;
    for (const s of samples) peak = Math.max(peak, Math.abs(s - 128));
    const level = Math.min(100, Math.round((peak / 128) * 200));
    el.micLevel.style.width = `${level}%`;
    el.micMeter.setAttribute("aria-valuenow", String(level));
    portal.device.level = Math.max(portal.device.level ?? 0, level);
    device.raf = requestAnimationFrame(tick);
  };
  tick();
}

// ---------------------------------------------------------------------------------------------
// The visit

function documentText(document) {
  if (!document) return "";
  return getLanguage() === "en" ? document.text_en : document.text_zh;
}

function renderDocuments() {
  el.consentText.textContent = documentText(consent);
  el.refusalText.textContent = documentText(refusal);
}

async function loadConsent() {
  consent = await api("GET", "/documents/risk_notice");
  renderDocuments();
}

async function loadRefusal() {
  if (refusal) return;
  refusal = await api("GET", "/documents/referral_refusal");
  renderDocuments();
}

async function signConsent() {
  await busy(el.consentSign, async () => {
    visit = await api("POST", `/visits/${visit.id}/consent`, {
      version: consent.version,
      digest: consent.digest,
    });
    renderVisit();
  });
  renderVisit();
}

async function checkIn() {
  await busy(el.checkIn, async () => {
    visit = await api("POST", `/visits/${visit.id}/check-in`, {});
    renderVisit();
  });
  // a guardian coming after the child finds the visit already in the room and is let in at
  // once (issue 11): go in now rather than wait for the push
  if (visit.state === "in_room" && visit.consent_signed && arrived()) await enterRoom();
}

async function acknowledgeRefusal() {
  await busy(el.refusalSign, async () => {
    await loadRefusal();
    visit = await api("POST", `/visits/${visit.id}/refusal`, {
      version: refusal.version,
      digest: refusal.digest,
    });
    renderVisit();
  });
}

/** Admitted: fetch a join token and move to the consult room. */
async function enterRoom() {
  if (entering) return;
  entering = true;
  setState("entering");
  renderStatus();
  try {
    const join = await api("POST", `/visits/${visit.id}/join-token`, {});
    stopDevices();
    // An audible call: a patient who looked away hears that the doctor is ready.
    el.status.textContent = t("waiting.called");
    portal.called = (portal.called ?? 0) + 1;
    console.info("[portal] admitted: playing the call chime");
    await playChime({ notes: [659, 784, 1047, 1319], sinkId: preferredDevices().speaker }).catch((err) =>
      console.info("[portal] call chime not played:", err?.name),
    );
    window.location.assign(join.room_url);
  } catch (err) {
    entering = false;
    setState("waiting");
    showError(err);
  }
}

/** The visit as it is now. Polling reads the list of one's visits, which is not an audited
 * view of a record: waiting for half an hour must not write hundreds of audit events. */
async function current(visitId) {
  const { visits } = await api("GET", "/visits?limit=50");
  return visits.find((v) => v.id === visitId) ?? (await api("GET", `/visits/${visitId}`));
}

/** Read the visit again (pushed: it changed, or the updates socket (re)connected). */
// pushes come in bursts: one read at a time, the last one shown last
const reread = oneAtATime(async () => {
  try {
    const before = visit.state;
    visit = await current(visit.id);
    portal.visit = visit;
    renderVisit();
    if (visit.state !== before) loadHistory().catch((err) => showError(err));
    if (visit.state === "in_room" && visit.consent_signed && arrived()) {
      await enterRoom();
      return;
    }
  } catch (err) {
    showError(err);
  }
  if (!OPEN_STATES.includes(visit.state) && el.bookCard.hidden) {
    showBooking().catch((err) => showError(err));
  }
});

// ---------------------------------------------------------------------------------------------
// Booking, when there is no open visit: for one's own record or a ward's.

let records = [];
let booking = null;

async function mountBookingFor(recordId) {
  booking?.close();
  const [{ diagnoses }, { practitioners }] = await Promise.all([
    api("GET", `/patients/${recordId}/diagnoses`),
    api("GET", "/practitioners"),
  ]);
  booking = mountBooking(el.bookForm, {
    patientId: recordId,
    diagnoses,
    practitioners,
    onBooked: (booked) => {
      booking?.close();
      booking = null;
      el.bookCard.hidden = true;
      el.noVisit.hidden = true;
      el.outcomeCard.hidden = true;
      startVisit(booked).catch((err) => showError(err));
    },
  });
}

async function showBooking() {
  el.bookCard.hidden = false;
  const { patients: all } = await api("GET", "/patients");
  // a ward whose guardian relation the hospital has not verified yet cannot be booked for
  records = all.filter((r) => !r.guardian_id || r.guardian_verified || r.user_id);
  el.bookWardPending.hidden = records.length === all.length;
  el.bookNoRecord.hidden = records.length > 0;
  el.bookPatientField.hidden = records.length < 2;
  el.bookPatient.replaceChildren(
    ...records.map((r) => {
      const option = document.createElement("option");
      option.value = r.id;
      option.textContent = r.name;
      return option;
    }),
  );
  portal.booking = "ready";
  if (records.length) await mountBookingFor(records[0].id);
}

async function findVisit() {
  const wanted = new URLSearchParams(window.location.search).get("visit");
  if (wanted) return api("GET", `/visits/${encodeURIComponent(wanted)}`);
  const { visits } = await api("GET", "/visits");
  return visits.find((v) => OPEN_STATES.includes(v.state)) ?? visits[0] ?? null;
}

async function main() {
  initPage();
  const session = requireSession(["patient"]);
  if (!session) return;
  myId = session.me?.user_id ?? null;
  watchIdle();
  onLanguageChange(() => {
    renderVisit();
    renderDocuments();
    renderHistory();
    renderConsultations();
    renderFollowups();
  });
  mountRating();
  mountReminders(document.getElementById("lang-toggle"), document.querySelector("main.page"));
  el.deviceCheck.addEventListener("click", () => checkDevices());
  el.speakerTest.addEventListener("click", () => testSpeaker());
  el.cameraSelect.addEventListener("change", () => chooseDevice("camera", el.cameraSelect));
  el.microphoneSelect.addEventListener("change", () => chooseDevice("microphone", el.microphoneSelect));
  el.speakerSelect.addEventListener("change", () => chooseDevice("speaker", el.speakerSelect));
  el.consentAgree.addEventListener("change", () => renderVisit());
  el.consentSign.addEventListener("click", () => signConsent());
  el.checkIn.addEventListener("click", () => checkIn());
  el.refusalAgree.addEventListener("change", () => renderOutcome());
  el.refusalSign.addEventListener("click", () => acknowledgeRefusal());
  el.bookPatient.addEventListener("change", () =>
    mountBookingFor(el.bookPatient.value).catch((err) => showError(err)),
  );
  window.addEventListener("pagehide", () => stopDevices());
  renderStatus();
  loadHistory().catch((err) => showError(err));
  // the remote consultations' card reads on load and on every push (and reconnect)
  afterConsultationsRead(renderStatus);
  readConsultations();
  readFollowups();
  watch();
  try {
    visit = await findVisit();
  } catch (err) {
    showError(err);
    return;
  }
  if (!visit) {
    setState("no_visit");
    el.noVisit.hidden = false;
    renderStatus();
    await showBooking().catch((err) => showError(err));
    return;
  }
  await startVisit(visit);
  if (!OPEN_STATES.includes(visit.state)) await showBooking().catch((err) => showError(err));
}

/** Show `current` and, while it is open, the steps before the room. */
async function startVisit(current) {
  visit = current;
  portal.visit = visit;
  setState("waiting");
  renderVisit();
  if (OPEN_STATES.includes(visit.state)) {
    try {
      await loadConsent();
    } catch (err) {
      showError(err);
    }
    renderDevice();
    // No polling: the page reads the visit again when the server pushes a change of it.
    watch(true);
  }
}

/** The page's one /updates socket. With `visitToo`, pushes about the open visit read it again
 * from now on (read once at once: a push may have come before). */
function watch(visitToo = false) {
  if (visitToo && !watchingVisit) {
    watchingVisit = true;
    if (updates) reread();
  }
  updates ??= watchUpdates((change) => {
    if (aboutConsultations(change)) {
      readConsultations();
      readFollowups(); // referrals and interpretations (R17, R18) are pushed the same way
    }
    // the doctor answered a rating (or it changed elsewhere): the history shows it
    if (change?.rating_visit) {
      loadHistory().catch((err) => showError(err));
      ratingPushed(change.rating_visit).catch((err) => showError(err));
    }
    if (watchingVisit && visit && (change === null || change.visit === visit.id)) reread();
  });
}

main();
