// After the report (/consult, issue 14 item 7): the online referral (R17) and report
// interpretation requests (R18). The requesting doctor refers the patient to the invited
// institution and asks for interpretations for its patient; the invited centre answers
// referrals and names the expert who interprets; the expert answers in writing or schedules a
// voice or video call (the call's room, joined with a join token like the consultation's).
// The inbox items carry their actions, so an expert named only to interpret needs no access to
// the consultation itself (R37). Changes arrive on /updates (`consultation_changed`).

import { t } from "./i18n.js";
import { api } from "./api.js";
import { button, fillSelect, formValues, h, when } from "./console-dom.js";

const REPORTED = ["reported", "decided"];

/** Read the caller's referrals and interpretation requests (and, for a centre that has some to
 * assign, its institution's practitioners). */
export async function readFollowups(state) {
  const [{ referrals }, { interpretations }] = await Promise.all([
    api("GET", "/referrals"),
    api("GET", "/interpretations"),
  ]);
  state.referrals = referrals;
  state.interpretations = interpretations;
  const assigning = interpretations.some(
    (i) => i.sides.includes("invitee_centre") && i.state === "asked",
  );
  if (assigning && !state.interpreters) {
    const { practitioners } = await api(
      "GET",
      `/practitioners?institution_id=${state.me.institution_id}`,
    );
    state.interpreters = practitioners;
  }
}

function textForm({ id, label, submitKey, action, required = true, rows = 2, onSubmit, act }) {
  const form = h(
    "form",
    { class: "inline-form", dataset: { form: action }, novalidate: true },
    h("label", { for: id, text: t(label) }),
    h("textarea", { id, name: "text", rows, maxlength: 4000 }),
    h("button", { type: "submit", class: "btn btn-primary", dataset: { action }, text: t(submitKey) }),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const { text } = formValues(form);
    if (required && !text) {
      form.querySelector("textarea").focus();
      return;
    }
    act(() => onSubmit(text));
  });
  return form;
}

function referralItem(r, act) {
  const sides = new Set(r.sides);
  const where = r.target_department_name
    ? `${r.target_institution_name} · ${r.target_department_name}`
    : r.target_institution_name;
  const li = h(
    "li",
    { class: "row followup", dataset: { referral: r.id, state: r.state } },
    h(
      "span",
      { class: "row-main" },
      h("strong", { text: t("fu.referral_to", { where }) }),
      " ",
      h("span", { class: "badge", text: t(`fu.ref.${r.state}`) }),
      h("br"),
      h("small", { text: t("fu.referral_line", { reason: r.reason, from: r.institution_name, doctor: r.requester_name }) }),
      r.proposed_time ? [h("br"), h("small", { text: t("fu.proposed_time", { time: when(r.proposed_time) }) })] : null,
      r.answer_note ? [h("br"), h("small", { text: t("fu.note", { note: r.answer_note }) })] : null,
      r.decline_reason
        ? [h("br"), h("small", { class: "decline-reason", text: t("cs.declined_because", { reason: r.decline_reason }) })]
        : null,
    ),
  );
  if (r.state !== "requested") return li;
  if (sides.has("invitee_centre")) {
    const timeId = `referral-time-${r.id}`;
    const noteId = `referral-note-${r.id}`;
    const time = h("input", { id: timeId, type: "datetime-local" });
    const note = h("input", { id: noteId, maxlength: 1000 });
    li.append(
      h(
        "div",
        { class: "actions" },
        h("label", { for: timeId, text: t("fu.time") }),
        time,
        h("label", { for: noteId, text: t("fu.note_label") }),
        note,
        button(
          "fu.accept",
          () =>
            act(() =>
              api("POST", `/referrals/${r.id}/accept`, {
                proposed_time: time.value ? new Date(time.value).toISOString() : null,
                note: note.value.trim(),
              }),
            ),
          { action: "accept-referral", kind: "btn-primary" },
        ),
      ),
      textForm({
        id: `referral-decline-${r.id}`,
        label: "cs.decline_reason",
        submitKey: "fu.decline",
        action: "decline-referral",
        onSubmit: (reason) => api("POST", `/referrals/${r.id}/decline`, { reason }),
        act,
      }),
    );
  }
  if (sides.has("requester")) {
    li.append(
      h(
        "div",
        { class: "actions" },
        button("fu.cancel_referral", () => act(() => api("POST", `/referrals/${r.id}/cancel`)), {
          action: "cancel-referral",
        }),
      ),
    );
  }
  return li;
}

async function joinCall(interpretation) {
  const { room_url: url } = await api("POST", `/interpretations/${interpretation.id}/join-token`);
  const tab = window.open(url, "_blank");
  if (tab) tab.opener = null;
}

function interpretationItem(i, state, act) {
  const sides = new Set(i.sides);
  const li = h(
    "li",
    { class: "row followup", dataset: { interpretation: i.id, state: i.state } },
    h(
      "span",
      { class: "row-main" },
      h("strong", { text: t("fu.question", { question: i.question }) }),
      " ",
      h("span", { class: "badge", text: t(`fu.int.${i.state}`) }),
      h("br"),
      h("small", {
        text: t(i.asked_by_patient ? "fu.asked_by_patient" : "fu.asked_by_doctor", {
          age: i.patient_age ?? "?",
          expert: i.expert_name ?? t("fu.nobody"),
        }),
      }),
      i.report?.opinion ? [h("br"), h("small", { text: t("fu.report_opinion", { opinion: i.report.opinion }) })] : null,
      i.scheduled_at && i.state === "scheduled"
        ? [h("br"), h("small", { text: t(`fu.call.${i.mode}`, { time: when(i.scheduled_at) }) })]
        : null,
      i.answer ? [h("br"), h("span", { class: "answer", text: t("fu.answer_line", { answer: i.answer }) })] : null,
    ),
  );
  const actions = h("div", { class: "actions" });
  if (sides.has("invitee_centre") && i.state === "asked") {
    const id = `interpreter-${i.id}`;
    const select = h("select", { id });
    fillSelect(
      select,
      (state.interpreters ?? []).map((p) => ({
        value: p.user_id,
        label: t("cs.expert_line", { name: p.display_name, title: t(`title.${p.title}`), years: p.years_of_practice }),
      })),
    );
    if (i.expert_id) select.value = i.expert_id;
    actions.append(
      h("label", { for: id, text: t("fu.interpreter") }),
      select,
      button(
        "fu.assign",
        () => act(() => api("POST", `/interpretations/${i.id}/assign`, { expert_id: select.value })),
        { action: "assign-interpreter" },
      ),
    );
  }
  if (sides.has("expert") && ["asked", "scheduled"].includes(i.state)) {
    if (i.state === "asked") {
      for (const mode of ["video", "voice"]) {
        actions.append(
          button(
            `fu.schedule_${mode}`,
            () => act(() => api("POST", `/interpretations/${i.id}/schedule`, { mode })),
            { action: `schedule-${mode}` },
          ),
        );
      }
    }
    li.append(
      textForm({
        id: `interpretation-answer-${i.id}`,
        label: i.state === "scheduled" ? "fu.summary" : "fu.answer",
        submitKey: "fu.send_answer",
        action: "answer-interpretation",
        required: i.state === "asked",
        rows: 3,
        onSubmit: (answer) => api("POST", `/interpretations/${i.id}/answer`, { answer }),
        act,
      }),
    );
  }
  if (i.state === "scheduled" && (sides.has("expert") || sides.has("requester"))) {
    actions.append(
      button("fu.join_call", () => act(() => joinCall(i)), { action: "join-call", kind: "btn-primary" }),
    );
  }
  if (sides.has("asker") && ["asked", "scheduled"].includes(i.state)) {
    actions.append(
      button("fu.cancel_interpretation", () => act(() => api("POST", `/interpretations/${i.id}/cancel`)), {
        action: "cancel-interpretation",
      }),
    );
  }
  if (actions.children.length) li.insertBefore(actions, li.querySelector("form"));
  return li;
}

function card(name, items) {
  return h(
    "div",
    { class: "card", id: `list-${name}` },
    h("h2", { text: t(`fu.list.${name}`) }),
    items.length ? h("ul", { class: "rows" }, items) : h("p", { class: "empty", text: t("cs.list.empty") }),
  );
}

/** The worklists' cards of what follows reports: a centre's referral inbox and interpretations
 * to assign; an expert's interpretations to answer. */
export function followupCards(state, act) {
  const role = state.me.role;
  const referrals = state.referrals ?? [];
  const interpretations = state.interpretations ?? [];
  if (role === "operator") {
    const inbox = referrals.filter((r) => r.sides.includes("invitee_centre") && r.state === "requested");
    const toAssign = interpretations.filter((i) => i.sides.includes("invitee_centre") && i.state === "asked");
    return [
      card("referral_inbox", inbox.map((r) => referralItem(r, act))),
      card("interpretations_to_assign", toAssign.map((i) => interpretationItem(i, state, act))),
    ];
  }
  const toAnswer = interpretations.filter(
    (i) => i.sides.includes("expert") && ["asked", "scheduled"].includes(i.state),
  );
  return [card("interpretation_inbox", toAnswer.map((i) => interpretationItem(i, state, act)))];
}

/** The consultation's referrals and interpretation requests, with "Refer" and "Ask for
 * interpretation" for its requesting doctor once the report is issued. */
export function followupDetail(c, state, act, departments) {
  const sides = new Set(c.sides);
  const referrals = (state.referrals ?? []).filter((r) => r.consultation_id === c.id);
  const interpretations = (state.interpretations ?? []).filter((i) => i.consultation_id === c.id);
  const box = h("div", { class: "followups" });
  if (!REPORTED.includes(c.state) && !referrals.length && !interpretations.length) return box;
  box.append(
    h("h3", { text: t("fu.referrals") }),
    referrals.length
      ? h("ul", { class: "rows", id: "detail-referrals" }, referrals.map((r) => referralItem(r, act)))
      : h("p", { class: "empty", text: t("cs.none") }),
  );
  const waiting = referrals.some((r) => r.state === "requested");
  if (sides.has("requester") && REPORTED.includes(c.state) && !waiting) {
    const select = h("select", { id: "referral-department", name: "target_department_id" });
    fillSelect(
      select,
      departments.map((d) => ({ value: d.id, label: d.name })),
      { placeholder: "fu.any_department" },
    );
    const form = h(
      "form",
      { id: "referral-form", class: "inline-form", novalidate: true },
      h("label", { for: "referral-department", text: t("fu.department") }),
      select,
      h("label", { for: "referral-reason", text: t("fu.referral_reason") }),
      h("textarea", { id: "referral-reason", name: "reason", rows: 2, maxlength: 1000 }),
      h("button", { type: "submit", class: "btn btn-primary", dataset: { action: "refer" }, text: t("fu.refer") }),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const values = formValues(form);
      if (!values.reason) {
        form.elements.reason.focus();
        return;
      }
      act(() =>
        api("POST", `/consultations/${c.id}/referrals`, {
          reason: values.reason,
          target_department_id: values.target_department_id || null,
        }),
      );
    });
    box.append(form);
  }
  box.append(
    h("h3", { text: t("fu.interpretations") }),
    interpretations.length
      ? h("ul", { class: "rows", id: "detail-interpretations" }, interpretations.map((i) => interpretationItem(i, state, act)))
      : h("p", { class: "empty", text: t("cs.none") }),
  );
  if (sides.has("requester") && REPORTED.includes(c.state)) {
    box.append(
      textForm({
        id: "interpretation-question",
        label: "fu.question_label",
        submitKey: "fu.ask",
        action: "ask-interpretation",
        onSubmit: (question) => api("POST", `/consultations/${c.id}/interpretations`, { question }),
        act,
      }),
    );
  }
  return box;
}
