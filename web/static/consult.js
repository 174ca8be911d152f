// Remote consultation (/consult, issue 14): the grassroots doctor's requests, the consult
// centres' queues (approve, assign experts), the invited experts' answers, the co-signed
// opinion report and the inviter's decision. The API decides who may do what; the page shows
// each side the actions its `sides` allow. Changes arrive live on the /updates socket. What
// follows an issued report (referral R17, interpretation R18) is in consult-followups.js.

import { addStrings, onLanguageChange, t } from "./i18n.js";
import { CONSOLE_STRINGS } from "./console-strings.js";
import { CONSULT_STRINGS } from "./consult-strings.js";
import { api, ApiError, getSession, requireSession } from "./api.js";
import { initPage, oneAtATime, portal, setState, showError, watchIdle } from "./portal.js";
import { button, fillSelect, formValues, h, keepInput, replaceKeepingInput, when } from "./console-dom.js";
import { watchUpdates } from "./updates.js";
import { followupCards, followupDetail, readFollowups } from "./consult-followups.js";
import { mountReminders } from "./reminders.js";

addStrings(CONSOLE_STRINGS);
addStrings(CONSULT_STRINGS);

const REPORT_FIELDS = [
  "findings",
  "opinion",
  "treatment_plan",
  "medication_advice",
  "referral_advice",
];
// A remote read's diagnostic report (R14, R19): what was read, findings, impression, advice.
const DIAGNOSIS_FIELDS = ["examination", "findings", "opinion", "recommendation"];
const DIAGNOSIS_KINDS = new Set(["imaging", "ecg", "pathology", "ultrasound"]);
const fieldsOf = (kind) => (DIAGNOSIS_KINDS.has(kind) ? DIAGNOSIS_FIELDS : REPORT_FIELDS);

const state = {
  me: null,
  list: [],
  current: null,
  experts: [],
  institutions: [],
  referrals: [],
  interpretations: [],
  departments: {},
  examChoices: null,
};
portal.consult = state;

const $ = (id) => document.getElementById(id);
let infoKey = null;
let infoParams = {};

function notify(key, params = {}) {
  infoKey = key;
  infoParams = params;
  $("info").textContent = key ? t(key, params) : "";
  $("info").hidden = !key;
}

/** Run an action: errors shown, success noted, everything read again. */
let acting = 0;

async function act(work, okKey = "cs.done") {
  acting += 1;
  setState("busy");
  showError(null);
  try {
    await work();
    notify(okKey);
  } catch (err) {
    notify(null);
    showError(err);
  }
  acting -= 1;
  await refresh();
}

async function upload(consultationId, file) {
  const session = getSession();
  const path = `/api/v1/consultations/${consultationId}/attachments?filename=${encodeURIComponent(file.name)}`;
  const response = await fetch(path, {
    method: "POST",
    headers: {
      Authorization: `Bearer ${session?.token}`,
      "Content-Type": file.type || "application/octet-stream",
    },
    body: file,
  });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, data?.error?.code ?? "unknown", data?.error?.message ?? "");
  }
  return data;
}

async function download(consultationId, attachment) {
  const session = getSession();
  const response = await fetch(
    `/api/v1/consultations/${consultationId}/attachments/${attachment.id}`,
    { headers: { Authorization: `Bearer ${session?.token}` } },
  );
  if (!response.ok) throw new ApiError(response.status, "unknown", "");
  const url = URL.createObjectURL(await response.blob());
  window.open(url, "_blank", "noopener");
}

// --- Worklists ------------------------------------------------------------------------------

function lists() {
  const mine = [];
  const invited = [];
  const approve = [];
  const assign = [];
  const other = [];
  for (const c of state.list) {
    const sides = new Set(c.sides);
    if (sides.has("requester") || sides.has("inviter")) mine.push(c);
    else if (sides.has("expert")) invited.push(c);
    else if (sides.has("inviter_centre") && c.state === "submitted") approve.push(c);
    else if (sides.has("invitee_centre") && ["sent", "accepted", "in_session"].includes(c.state))
      assign.push(c);
    else other.push(c);
  }
  if (state.me.role === "doctor") return [["mine", mine], ["invited", invited]];
  return [["approve", approve], ["assign", assign], ["other", other]];
}

function renderLists() {
  const cards = lists().map(([name, items]) =>
    h(
      "div",
      { class: "card", id: `list-${name}` },
      h("h2", { text: t(`cs.list.${name}`) }),
      items.length
        ? h(
            "ul",
            { class: "rows" },
            items.map((c) =>
              h(
                "li",
                { class: "row", dataset: { id: c.id, state: c.state } },
                h(
                  "span",
                  { class: "row-main" },
                  h("strong", { text: c.reason }),
                  " ",
                  h("span", { class: "badge", text: t(`state.${c.state}`) }),
                  h("br"),
                  h("small", {
                    text: `${t(`kind.${c.kind}`)} · ${t("cs.from_to", { from: c.institution_name, to: c.target_institution_name })}`,
                  }),
                ),
                button("cs.open", () => openConsultation(c.id), { action: "open" }),
              ),
            ),
          )
        : h("p", { class: "empty", text: t("cs.list.empty") }),
    ),
  );
  replaceKeepingInput($("worklists"), ...cards, ...followupCards(state, act));
}

// --- One consultation -----------------------------------------------------------------------

function fact(label, value) {
  return value ? [h("dt", { text: t(label) }), h("dd", { text: value })] : [];
}

function reasonForm(labelKey, buttonKey, action, onSubmit) {
  const id = `reason-${action}`;
  const form = h(
    "form",
    { class: "inline-form", dataset: { form: action }, novalidate: true },
    h("label", { for: id, text: t(labelKey) }),
    h("textarea", { id, name: "reason", rows: 2, maxlength: 1000 }),
    h("button", { type: "submit", class: "btn", dataset: { action }, text: t(buttonKey) }),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    act(() => onSubmit(formValues(form).reason));
  });
  return form;
}

function renderReport(c, report, canWrite) {
  const editable = canWrite && report?.state === "draft";
  const signers = report?.signatures?.map((s) => s.signer_name).join("、") ?? "";
  const form = h("form", { id: "report-form", novalidate: true });
  const diagnosis = DIAGNOSIS_KINDS.has(c.kind);
  const fields = fieldsOf(c.kind);
  const label = (field) => t(diagnosis && field === "opinion" ? "cs.impression" : `cs.${field}`);
  for (const field of fields) {
    const id = `report-${field}`;
    form.append(
      h(
        "div",
        { class: "field" },
        h("label", { for: id, text: label(field) }),
        h("textarea", {
          id,
          name: field,
          rows: field === "opinion" ? 3 : 2,
          maxlength: 4000,
          readonly: !canWrite || (report && !editable && !canWrite),
        }),
      ),
    );
  }
  for (const field of fields) {
    form.elements[field].value = report?.content?.[field] ?? "";
    if (report && !editable && !canWrite) form.elements[field].readOnly = true;
  }
  const box = h(
    "div",
    { class: "report", dataset: { reportId: report?.id ?? "", state: report?.state ?? "none" } },
    report
      ? h("h4", {
          text: `${t("cs.report_heading", { version: report.version })} · ${t(`rep.${report.state}`)}`,
        })
      : null,
    form,
    signers ? h("p", { class: "signed-by", text: t("cs.signed_by", { names: signers }) }) : null,
    diagnosis && report ? liability(c, signers) : null,
  );
  if (!canWrite) return box;
  const actions = h("div", { class: "actions" });
  if (!report || editable) {
    actions.append(
      button(
        "cs.save_report",
        () =>
          act(() => api("PUT", `/consultations/${c.id}/report`, formValues(form)), "cs.saved"),
        { action: "save-report" },
      ),
    );
  } else if (report.state !== "superseded") {
    actions.append(
      button(
        "cs.new_version",
        () =>
          act(
            () => api("POST", `/consultations/${c.id}/report/versions`, formValues(form)),
            "cs.saved",
          ),
        { action: "new-version" },
      ),
    );
  }
  const mine = report?.signatures?.some((s) => s.signer_id === state.me.user_id);
  if (report && ["draft", "signing"].includes(report.state) && !mine) {
    const pin = h("input", {
      id: "sign-pin",
      type: "password",
      inputmode: "numeric",
      autocomplete: "off",
      maxlength: 12,
    });
    actions.append(
      h("label", { for: "sign-pin", text: t("cs.pin") }),
      pin,
      button(
        "cs.sign",
        () =>
          act(() =>
            api("POST", `/reports/${report.id}/sign`, {
              pin: pin.value,
              content_digest: report.content_digest,
            }),
          ),
        { action: "sign", kind: "btn-primary" },
      ),
    );
  }
  if (report?.state === "signing") {
    actions.append(
      button("cs.issue", () => act(() => api("POST", `/reports/${report.id}/issue`)), {
        action: "issue",
      }),
    );
  }
  box.append(actions);
  return box;
}

/** R14: both sides share the liability of a read: who performed, who read, who accepted. */
function liability(c, signers) {
  return h(
    "div",
    { class: "liability", dataset: { liability: "joint" } },
    h("h5", { text: t("cs.liability") }),
    h("p", { text: t("cs.liability_performing", { institution: c.institution_name, doctor: c.requester_name }) }),
    h("p", {
      text: t("cs.liability_reading", { institution: c.target_institution_name, experts: signers || t("cs.none") }),
    }),
    c.decided_by_name
      ? h("p", {
          class: "accepted-by",
          text: t("cs.liability_accepted", { name: c.decided_by_name, at: when(c.decided_at) }),
        })
      : null,
  );
}

/** Open an exam in the viewer (the server says which study: the original or the copy). */
async function openExam(c, a) {
  // opened at once (a popup opened after an await is blocked); the viewer tab keeps this
  // tab's session (sessionStorage is copied to a tab it opens: no noopener)
  const tab = window.open("about:blank", "_blank");
  try {
    const link = await api("GET", `/consultations/${c.id}/exams/${a.id}`);
    if (tab) tab.location.href = link.viewer_url;
    else window.location.href = link.viewer_url;
  } catch (err) {
    tab?.close();
    throw err;
  }
}

function attachmentItem(c, a) {
  if (!a.exam) {
    return h(
      "li",
      { class: "row" },
      h("a", {
        href: "#",
        text: `${a.filename} (${Math.ceil(a.size / 1024)} KB)`,
        onclick: (event) => {
          event.preventDefault();
          download(c.id, a).catch(showError);
        },
      }),
    );
  }
  const what = t(a.exam.ecg ? "cs.exam_ecg" : "cs.exam_images", {
    modalities: a.exam.modalities.join("/") || "DICOM",
    count: a.exam.instances,
  });
  return h(
    "li",
    { class: "row exam", dataset: { exam: a.id, shared: String(a.exam.shared) } },
    h("span", { text: what }),
    button("cs.open_exam", () => openExam(c, a).catch(showError), { action: "open-exam" }),
  );
}

function examPicker(c) {
  const select = h("select", { id: "exam-study" });
  const choices = state.examChoices?.id === c.id ? state.examChoices.exams : [];
  fillSelect(
    select,
    choices.map((e) => ({
      value: e.study_uid,
      label: `${e.modalities.join("/") || "DICOM"} · ${t("cs.exam_count", { count: e.instances })} · ${when(e.created_at)}`,
    })),
  );
  const uid = h("input", { id: "exam-uid", type: "text", maxlength: 64, placeholder: t("cs.exam_uid") });
  return h(
    "div",
    { class: "exam-picker" },
    h("label", { for: "exam-study", class: "label", text: t("cs.attach_exam") }),
    choices.length ? select : h("span", { class: "empty", text: t("cs.no_exams") }),
    uid,
    button(
      "cs.attach_exam_button",
      () =>
        act(
          () =>
            api("POST", `/consultations/${c.id}/exams`, {
              study_uid: uid.value.trim() || select.value,
            }),
          "cs.exam_attached",
        ),
      { action: "attach-exam" },
    ),
  );
}

async function loadExamChoices(c) {
  if (!new Set(c.sides).has("requester") || c.state !== "draft") return;
  try {
    const { exams } = await api("GET", `/consultations/${c.id}/exam-choices`);
    state.examChoices = { id: c.id, exams };
  } catch (err) {
    showError(err);
  }
}

function renderDetail() {
  const restore = keepInput($("detail")); // what is being typed survives a pushed re-render
  renderDetailNow();
  restore();
}

function renderDetailNow() {
  const c = state.current;
  $("detail").hidden = !c;
  if (!c) return;
  const sides = new Set(c.sides);
  $("detail").dataset.id = c.id;
  $("detail").dataset.state = c.state;
  $("detail-title").textContent = `${t(`kind.${c.kind}`)} · ${c.reason}`;
  $("detail-state").textContent = t(`state.${c.state}`);
  $("detail-facts").replaceChildren(
    ...fact("cs.target", t("cs.from_to", { from: c.institution_name, to: c.target_institution_name })),
    ...fact(
      "cs.patient",
      c.patient_name
        ? t("cs.patient_line", { name: c.patient_name, age: c.patient_age })
        : t("cs.patient_age", { age: c.patient_age }),
    ),
    ...fact("cs.requester", c.requester_name),
    ...fact("cs.purpose", c.purpose),
    ...fact("cs.description", c.description),
    ...fact("cs.history", c.history),
    ...fact("cs.summary", c.summary),
    ...fact("cs.specialty", `${c.specialty} · ${t(`title.${c.min_title}`)}`),
    ...fact("cs.urgency", t(`urgency.${c.urgency}`)),
    ...fact("cs.proposed_time", when(c.proposed_start)),
    ...fact("cs.scheduled_time", when(c.scheduled_at)),
    ...fact("cs.return_reason", c.return_reason),
    ...fact("cs.decision", c.decision),
  );
  $("detail-attachments").replaceChildren(
    ...(c.attachments.length
      ? c.attachments.map((a) => attachmentItem(c, a))
      : [h("li", { class: "empty", text: t("cs.none") })]),
  );
  $("detail-invitations").replaceChildren(
    ...(c.invitations.length
      ? c.invitations.map((i) =>
          h(
            "li",
            { class: "row", dataset: { expert: i.expert_id, state: i.state } },
            h("span", { text: `${i.expert_name} · ${t(`inv.${i.state}`)}` }),
            i.decline_reason
              ? h("small", {
                  class: "decline-reason",
                  text: ` ${t("cs.declined_because", { reason: i.decline_reason })}`,
                })
              : null,
          ),
        )
      : [h("li", { class: "empty", text: t("cs.none") })]),
  );
  const myInvitation = c.invitations.find((i) => i.expert_id === state.me.user_id);
  const accepted = myInvitation?.state === "accepted";
  const canWrite = accepted && ["accepted", "in_session", "reported"].includes(c.state);
  const shown = c.reports.length ? c.reports : canWrite ? [null] : [];
  $("detail-reports").replaceChildren(
    ...(shown.length
      ? shown.map((r, index) => renderReport(c, r, canWrite && index === shown.length - 1))
      : [h("p", { class: "empty", text: t("cs.none") })]),
  );
  $("detail-followups").replaceChildren(
    followupDetail(c, state, act, state.departments[c.target_institution_id] ?? []),
  );
  const actions = [];
  if (sides.has("requester") && c.state === "draft") {
    const file = h("input", { id: "attach-file", type: "file", accept: ".pdf,.png,.jpg,.jpeg" });
    file.addEventListener("change", () => {
      const chosen = file.files?.[0];
      if (chosen) act(() => upload(c.id, chosen), "cs.attached").then(() => notify("cs.attached", { name: chosen.name }));
    });
    actions.push(
      h("label", { for: "attach-file", class: "label", text: t("cs.attach") }),
      file,
      examPicker(c),
      button("cs.submit", () => act(() => api("POST", `/consultations/${c.id}/submit`)), {
        action: "submit",
        kind: "btn-primary",
      }),
    );
  }
  if (sides.has("inviter_centre") && c.state === "submitted") {
    actions.push(
      button("cs.approve", () => act(() => api("POST", `/consultations/${c.id}/approve`)), {
        action: "approve",
        kind: "btn-primary",
      }),
      reasonForm("cs.return_reason", "cs.return", "return", (reason) =>
        api("POST", `/consultations/${c.id}/return`, { reason }),
      ),
    );
  }
  if (sides.has("invitee_centre") && ["sent", "accepted", "in_session"].includes(c.state)) {
    const invited = new Set(c.invitations.map((i) => i.expert_id));
    const select = h("select", { id: "assign-expert" });
    fillSelect(
      select,
      state.experts
        .filter((p) => !invited.has(p.user_id))
        .map((p) => ({
          value: p.user_id,
          label: t("cs.expert_line", {
            name: p.display_name,
            title: t(`title.${p.title}`),
            years: p.years_of_practice,
          }),
        })),
    );
    actions.push(
      h("label", { for: "assign-expert", text: t("cs.expert") }),
      select,
      button(
        "cs.assign",
        () =>
          act(() => api("POST", `/consultations/${c.id}/invitations`, { expert_id: select.value })),
        { action: "assign", kind: "btn-primary" },
      ),
    );
    if (c.state === "sent") {
      actions.push(
        reasonForm("cs.decline_reason", "cs.decline_request", "decline-request", (reason) =>
          api("POST", `/consultations/${c.id}/decline`, { reason }),
        ),
      );
    }
  }
  if (myInvitation?.state === "invited") {
    actions.push(
      h("p", { text: t("cs.respond_by", { time: when(myInvitation.respond_by) }) }),
      button("cs.accept", () => act(() => api("POST", `/invitations/${myInvitation.id}/accept`)), {
        action: "accept",
        kind: "btn-primary",
      }),
      reasonForm("cs.decline_reason", "cs.decline", "decline", (reason) =>
        api("POST", `/invitations/${myInvitation.id}/decline`, { reason }),
      ),
    );
  }
  if ((sides.has("requester") || sides.has("invitee_centre")) && ["sent", "accepted"].includes(c.state)) {
    // Scheduling against both sides' calendars: the server refuses a time at which the
    // requester or an accepted expert is busy (schedule_conflict).
    const input = h("input", { id: "schedule-time", type: "datetime-local", required: true });
    const form = h(
      "form",
      { id: "schedule-form", novalidate: true },
      h("label", { for: "schedule-time", text: t("cs.schedule_time") }),
      input,
      h("button", { type: "submit", class: "btn", dataset: { action: "schedule" }, text: t("cs.schedule") }),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!input.value) return;
      const scheduled_at = new Date(input.value).toISOString();
      act(() => api("PUT", `/consultations/${c.id}/schedule`, { scheduled_at }));
    });
    actions.push(form);
  }
  if ((sides.has("requester") || accepted) && c.state === "accepted") {
    actions.push(
      button("cs.start", () => act(() => api("POST", `/consultations/${c.id}/start`)), {
        action: "start",
        kind: "btn-primary",
      }),
    );
  }
  if (c.room_id && c.state === "in_session" && (sides.has("requester") || accepted)) {
    actions.push(
      button(
        "cs.room",
        () =>
          act(async () => {
            const { room_url: url } = await api("POST", `/consultations/${c.id}/join-token`);
            // Not "noopener": that would open the tab without this tab's sessionStorage, and the
            // inviter's room page calls the API with the session (the doctors-only part,
            // doctors-only.js). The room is our own page; the link back is cut all the same.
            const tab = window.open(url, "_blank");
            if (tab) tab.opener = null;
          }),
        { action: "room", kind: "btn-primary" },
      ),
    );
  }
  if ((sides.has("requester") || sides.has("inviter")) && c.state === "reported") {
    const form = h(
      "form",
      { id: "decision-form", novalidate: true },
      h("label", { for: "decision-text", text: t("cs.decision") }),
      h("textarea", { id: "decision-text", name: "decision", rows: 3, maxlength: 4000 }),
      h("button", { type: "submit", class: "btn btn-primary", dataset: { action: "decide" }, text: t("cs.decide") }),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      act(() => api("POST", `/consultations/${c.id}/decision`, formValues(form)));
    });
    actions.push(form);
  }
  if (
    (sides.has("requester") || sides.has("inviter_centre")) &&
    ["draft", "submitted", "approved", "sent", "accepted"].includes(c.state)
  ) {
    actions.push(
      button("cs.cancel", () => act(() => api("POST", `/consultations/${c.id}/cancel`)), {
        action: "cancel",
      }),
    );
  }
  $("detail-actions").replaceChildren(h("div", { class: "actions" }, actions));
}

async function openConsultation(id) {
  showError(null);
  try {
    state.current = await api("GET", `/consultations/${id}`);
    const url = new URL(window.location.href);
    url.searchParams.set("id", id);
    window.history.replaceState(null, "", url);
    if (new Set(state.current.sides).has("invitee_centre")) await loadExperts(state.current);
    if (new Set(state.current.sides).has("requester")) await loadDepartments(state.current);
    await loadExamChoices(state.current);
  } catch (err) {
    state.current = null;
    showError(err);
  }
  renderDetail();
  $("detail").scrollIntoView({ block: "start" });
  setState(`detail:${state.current?.state ?? "none"}`);
}

/** The invited institution's departments, for the referral form (R17). */
async function loadDepartments(c) {
  if (state.departments[c.target_institution_id]) return;
  const { departments } = await api("GET", `/institutions/${c.target_institution_id}/departments`);
  state.departments[c.target_institution_id] = departments;
}

async function loadExperts(c) {
  const { practitioners } = await api(
    "GET",
    `/practitioners?institution_id=${c.target_institution_id}`,
  );
  state.experts = practitioners;
}

// pushes come in bursts: one read at a time, the last one shown last
const refresh = oneAtATime(async () => {
  try {
    state.list = (await api("GET", "/consultations")).consultations;
    await readFollowups(state);
    renderLists();
    const id = state.current?.id;
    if (id) {
      const fresh = await api("GET", `/consultations/${id}`);
      // another consultation may have been opened meanwhile: this read is not for it
      if (state.current?.id === id) {
        state.current = fresh;
        renderDetail();
      }
    }
    // "ready" only once no action is under way (a pushed refresh may finish in the middle).
    if (!acting) setState(`ready:${state.current?.state ?? "list"}`);
  } catch (err) {
    showError(err);
  }
});

// --- The request form ------------------------------------------------------------------------

async function openRequestForm() {
  const form = $("request-form");
  try {
    const [{ patients }, { institutions }, { agreements }] = await Promise.all([
      api("GET", "/consultation-patients"),
      api("GET", "/institutions"),
      api("GET", "/agreements"),
    ]);
    const names = new Map(institutions.map((i) => [i.id, i.name]));
    fillSelect(
      $("rq-patient"),
      patients.map((p) => ({ value: p.id, label: `${p.name}（${p.age}）` })),
    );
    fillSelect(
      $("rq-target"),
      agreements
        .filter((a) => a.inviter_institution_id === state.me.institution_id)
        .map((a) => ({ value: a.invitee_institution_id, label: names.get(a.invitee_institution_id) ?? "" })),
    );
    form.hidden = false;
    form.scrollIntoView({ block: "start" });
  } catch (err) {
    showError(err);
  }
}

function wireRequestForm() {
  const form = $("request-form");
  $("new-request").addEventListener("click", openRequestForm);
  $("request-cancel").addEventListener("click", () => (form.hidden = true));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(null);
    const values = formValues(form);
    const missing = ["patient_id", "target_institution_id", "reason", "purpose", "description", "summary", "specialty"].some((name) => !values[name]);
    if (missing) {
      showError(new ApiError(0, "fields_missing_form", ""));
      return;
    }
    const body = { ...values };
    body.proposed_start = values.proposed_start ? new Date(values.proposed_start).toISOString() : null;
    try {
      const created = await api("POST", "/consultations", body);
      form.reset();
      form.hidden = true;
      notify("cs.saved");
      await refresh();
      await openConsultation(created.id);
    } catch (err) {
      showError(err);
    }
  });
}

/** The header's way back: a doctor's queue, an operator's console. */
function showBackLink(role) {
  const link = $("back-link");
  const [href, key] = role === "doctor" ? ["/queue", "cs.back_queue"] : ["/console", "cs.back_console"];
  link.href = href;
  link.dataset.i18n = key;
  link.textContent = t(key);
  link.hidden = false;
}

async function main() {
  initPage();
  const session = requireSession(["doctor", "operator"]);
  if (!session) return;
  watchIdle();
  state.me = session.me;
  $("new-actions").hidden = state.me.role !== "doctor";
  showBackLink(state.me.role);
  mountReminders($("lang-toggle"), document.querySelector("main.page"));
  wireRequestForm();
  onLanguageChange(() => {
    if (infoKey) notify(infoKey, infoParams);
    renderLists();
    renderDetail();
  });
  await refresh();
  const wanted = new URLSearchParams(window.location.search).get("id");
  if (wanted) await openConsultation(wanted);
  // Every state change is pushed: read again (and on every reconnect, pushes may be missed).
  watchUpdates((change) => {
    if (change === null || change.consultation || change.machine) refresh();
  });
}

main();
