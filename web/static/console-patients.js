// Patients in the console: find by ID number (the blind index; a POST, never in a URL), register
// a person or a guardian's ward, give a patient its sign-in account, record prior diagnoses (R2)
// and book a follow-up; identity checks (console-identity.js). For a doctor: one patient's
// record, read-only.

import { t } from "./i18n.js";
import { api, ApiError } from "./api.js";
import { busy, clock, showError } from "./portal.js";
import { formValues, h, when } from "./console-dom.js";
import { mountBooking } from "./booking.js";
import { ctx, notify } from "./console.js";
import { initIdentity } from "./console-identity.js";

const $ = (id) => document.getElementById(id);

let patient = null; // the record on show
let diagnoses = [];
let wardOf = null; // the guardian record when registering a ward
let booking = null;

function relationText(relation) {
  return relation ? t(`relation.${relation}`) : "";
}

function renderPatient() {
  const card = $("patient-card");
  card.hidden = !patient;
  if (!patient) return;
  card.dataset.patientId = patient.id;
  $("patient-name").textContent = patient.name;
  const facts = [
    `${t("patients.id_number")} ${patient.id_number_masked}`,
    t("patients.age", { n: patient.age }),
  ];
  if (patient.phone_masked) facts.push(`${t("patients.phone_short")} ${patient.phone_masked}`);
  if (patient.guardian_id) {
    facts.push(t("patients.ward", { relation: relationText(patient.guardian_relation) }));
  }
  $("patient-facts").textContent = facts.join(" · ");
  const needsAccount = !patient.user_id && !patient.guardian_id;
  $("patient-account-line").textContent = patient.user_id
    ? t("patients.has_account")
    : patient.guardian_id
      ? t("patients.ward_account")
      : t("patients.no_account");
  $("patient-account-form").hidden = !needsAccount;
  $("register-ward").hidden = Boolean(patient.guardian_id);
  renderDiagnoses($("diagnosis-list"), $("diagnosis-empty"));
}

function renderDiagnoses(list, empty) {
  list.replaceChildren(
    ...diagnoses.map((d) =>
      h(
        "li",
        { class: "row", dataset: { code: d.condition_code } },
        h(
          "div",
          { class: "row-main" },
          h("div", { class: "row-title", text: `${d.condition_name}（${d.condition_code}）` }),
          h("div", { class: "row-meta", text: `${d.institution_name} · ${d.diagnosed_on}` }),
        ),
      ),
    ),
  );
  if (empty) empty.hidden = diagnoses.length > 0;
}

async function show(record) {
  patient = record;
  diagnoses = (await api("GET", `/patients/${record.id}/diagnoses`)).diagnoses;
  $("register-form").hidden = true;
  $("find-none").hidden = true;
  renderPatient();
  mountBookingForm();
}

function mountBookingForm() {
  booking?.close();
  booking = null;
  if (!patient) return;
  const bookable = ctx.practitioners.filter((p) => p.verification === "verified");
  booking = mountBooking($("booking-fields"), {
    patientId: patient.id,
    diagnoses,
    practitioners: bookable,
    onBooked: (visit) => {
      notify("booking.done", {
        doctor: visit.doctor_name,
        time: visit.slot_starts_at ? when(visit.slot_starts_at) : t("booking.queue_now"),
      });
      ctx.refreshers.get("bookings")?.().catch(showError);
    },
  });
}

async function find(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const idNumber = form.elements.id_number.value.trim();
  if (!idNumber) return showError({ code: "fields_missing_form" });
  // The card of the person shown before goes at once: nothing is done to the wrong patient.
  booking?.close();
  booking = null;
  patient = null;
  renderPatient();
  await busy(form.querySelector("[type=submit]"), async () => {
    notify(null);
    const { patient: found } = await api("POST", "/patients/find", { id_number: idNumber });
    if (found) {
      form.elements.id_number.value = "";
      await show(found);
    } else {
      patient = null;
      renderPatient();
      $("find-none").hidden = false;
      openRegister(null, idNumber);
    }
  });
}

function openRegister(guardian, idNumber = "") {
  wardOf = guardian;
  const form = $("register-form");
  form.reset();
  form.elements.id_number.value = idNumber;
  form.hidden = false;
  $("register-relation-field").hidden = !guardian;
  $("register-ward-of").hidden = !guardian;
  $("register-ward-of").textContent = guardian ? t("patients.ward_of", { name: guardian.name }) : "";
  form.elements.name.focus();
}

async function register(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const values = formValues(form);
  if (!values.name || !values.id_number) return showError({ code: "fields_missing_form" });
  const body = { name: values.name, id_number: values.id_number };
  if (values.phone) body.phone = values.phone;
  if (wardOf) {
    body.guardian_id = wardOf.id;
    body.guardian_relation = values.guardian_relation;
  }
  await busy(form.querySelector("[type=submit]"), async () => {
    const record = await api("POST", "/patients", body);
    form.reset();
    $("find-form").reset(); // the full ID number does not stay on the screen
    form.hidden = true;
    await show(record);
    notify("patients.registered", { name: record.name });
  });
}

async function createAccount(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const values = formValues(form);
  if (!values.username || !form.elements.password.value) {
    return showError({ code: "fields_missing_form" });
  }
  await busy(form.querySelector("[type=submit]"), async () => {
    const account = await api("POST", `/patients/${patient.id}/account`, {
      username: values.username,
      password: form.elements.password.value,
    });
    form.reset();
    patient = { ...patient, user_id: account.id };
    renderPatient();
    notify("patients.account_created", { username: account.username });
  });
}

async function recordDiagnosis(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const values = formValues(form);
  if (!values.condition_code || !values.condition_name || !values.institution_name || !values.diagnosed_on) {
    return showError({ code: "fields_missing_form" });
  }
  values.condition_code = values.condition_code.toUpperCase();
  await busy(form.querySelector("[type=submit]"), async () => {
    await api("POST", `/patients/${patient.id}/diagnoses`, values);
    form.reset();
    await show(patient);
    notify("patients.diagnosis_saved");
  });
}

export function initPatients() {
  $("find-form").addEventListener("submit", find);
  $("show-register").addEventListener("click", () => openRegister(null));
  $("register-cancel").addEventListener("click", () => ($("register-form").hidden = true));
  $("register-form").addEventListener("submit", register);
  $("register-ward").addEventListener("click", () => openRegister(patient));
  $("patient-account-form").addEventListener("submit", createAccount);
  $("diagnosis-form").addEventListener("submit", recordDiagnosis);
  ctx.renderers.add(renderPatient);
  initIdentity();
  ctx.renderers.add(() => {
    if (wardOf) $("register-ward-of").textContent = t("patients.ward_of", { name: wardOf.name });
  });
}

// --- A doctor's view of one patient ------------------------------------------------------------

let recordVisits = [];
const recordings = new Map(); // visit id -> its GET /visits/{id}/recordings answer

/** A moment in Beijing time (Asia/Shanghai), whatever the browser's zone: a recording is
 * listed as the hospital's clock saw it. */
function beijing(iso) {
  const text = new Date(iso).toLocaleString(document.documentElement.lang || "zh-CN", {
    timeZone: "Asia/Shanghai",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    hourCycle: "h23",
  });
  return t("recording.when", { time: text });
}

function length(seconds) {
  const total = Math.max(0, Math.round(seconds));
  const m = Math.floor(total / 60);
  const s = total % 60;
  return m ? t("recording.minutes", { m, s }) : t("recording.seconds", { s });
}

/** One visit's recordings: when (Beijing), the doctor, the department, how long, and where each
 * stands; no ids. */
function recordingList(visitId) {
  const found = recordings.get(visitId);
  if (!found?.sessions.length) return null;
  return h(
    "div",
    { class: "recordings" },
    h("div", { class: "row-meta", text: t("record.recordings") }),
    h(
      "ul",
      { class: "recording-list" },
      ...found.sessions.map((r) =>
        h("li", {
          dataset: { state: r.state },
          text: [
            beijing(r.started_at),
            t("recording.doctor", { name: found.doctor_name }),
            found.department_name,
            r.duration_s != null ? t("recording.duration", { text: length(r.duration_s) }) : "",
            t(`recording.state.${r.state}`),
            r.interrupted ? t("recording.interrupted") : "",
          ]
            .filter(Boolean)
            .join(" · "),
        }),
      ),
    ),
  );
}

async function loadRecordings(visits) {
  // a visit that went into its room has recordings (booked or cancelled ones never opened one)
  const seen = visits.filter((v) => v.admitted_at || ["in_room", "ended", "referred"].includes(v.state));
  const answers = await Promise.all(seen.map((v) => api("GET", `/visits/${v.id}/recordings`)));
  recordings.clear();
  for (const answer of answers) recordings.set(answer.visit_id, answer);
}

function renderRecord() {
  if (!patient) return;
  $("record-name").textContent = patient.name;
  $("record-facts").textContent = [
    `${t("patients.id_number")} ${patient.id_number_masked}`,
    t("patients.age", { n: patient.age }),
  ].join(" · ");
  renderDiagnoses($("record-diagnoses"), null);
  $("record-visits").replaceChildren(
    ...recordVisits.map((v) =>
      h(
        "li",
        { class: "row", dataset: { visitId: v.id, state: v.state } },
        h(
          "div",
          { class: "row-main" },
          h("div", { class: "row-title", text: `${when(v.created_at)} · ${t(`visit.mode.${v.mode}`)}` }),
          h("div", {
            class: "row-meta",
            text: [
              t(`staff_state.${v.state}`),
              v.closed_at ? t("record.closed_at", { time: clock(v.closed_at) }) : "",
              v.referral_reason ? `${t("outcome.reason")}${v.referral_reason}` : "",
            ]
              .filter(Boolean)
              .join(" · "),
          }),
          recordingList(v.id),
        ),
      ),
    ),
  );
}

/** The doctor's read of one patient: its record, prior diagnoses and visits with this doctor. */
export async function openRecord(patientId) {
  if (!patientId) {
    $("record-none").hidden = false;
    return;
  }
  try {
    patient = await api("GET", `/patients/${encodeURIComponent(patientId)}`);
    diagnoses = (await api("GET", `/patients/${patient.id}/diagnoses`)).diagnoses;
    const { visits } = await api("GET", "/visits?limit=500");
    recordVisits = visits.filter((v) => v.patient_record_id === patient.id);
    await loadRecordings(recordVisits);
    renderRecord();
    ctx.renderers.add(renderRecord);
  } catch (err) {
    showError(err instanceof ApiError ? err : { code: "unknown" });
  }
}
