// What follows a remote consultation's report, on the patient's waiting page (issue 14 item 7):
// its referrals and their answers (R17), its report interpretation requests with the answers
// (R18), and, for a consultation whose report is out, "Ask for interpretation". While an
// interpretation call waits for the patient, a button enters its room (join token, this tab).
// Read on load and on every push (`consultation_changed` for a referral or an interpretation).

import { t } from "./i18n.js";
import { api } from "./api.js";
import { busy, oneAtATime, portal, showError } from "./portal.js";
import { h, replaceKeepingInput, when } from "./console-dom.js";

const REPORTED = ["reported", "decided"];

const el = {
  card: document.getElementById("followup-card"),
  list: document.getElementById("followup-list"),
};

let data = { referrals: [], interpretations: [], consultations: [] };
let entering = false;

function referralItem(r) {
  const where = r.target_department_name
    ? `${r.target_institution_name} ${r.target_department_name}`
    : r.target_institution_name;
  return h(
    "li",
    { class: "consult-item followup-item", dataset: { referral: r.id, state: r.state } },
    h("h3", { text: t("mf.referral", { where }) }),
    h("p", { text: t("mf.referral_from", { from: r.institution_name, reason: r.reason }) }),
    h("p", {
      class: "consult-state",
      dataset: { field: "referral-state" },
      text: t(`mf.ref.${r.state}`, { reason: r.decline_reason ?? "" }),
    }),
    r.proposed_time ? h("p", { text: t("mf.appointment", { time: when(r.proposed_time) }) }) : null,
    r.answer_note ? h("p", { text: t("mf.note", { note: r.answer_note }) }) : null,
  );
}

async function enterCall(i, button) {
  if (entering) return;
  entering = true;
  const joined = await busy(button, async () => {
    const join = await api("POST", `/interpretations/${i.id}/join-token`, {});
    window.location.assign(join.room_url);
    return join;
  });
  if (!joined) {
    entering = false;
    readFollowups();
  }
}

function interpretationItem(i) {
  const stateKey = i.state === "scheduled" ? `mf.int.scheduled_${i.mode}` : `mf.int.${i.state}`;
  const li = h(
    "li",
    { class: "consult-item followup-item", dataset: { interpretation: i.id, state: i.state } },
    h("h3", { text: t("mf.interpretation") }),
    h("p", { text: t("mf.question", { question: i.question }) }),
    h("p", {
      class: "consult-state",
      dataset: { field: "interpretation-state" },
      text: t(stateKey, { time: when(i.scheduled_at) }),
    }),
    i.answer
      ? h("p", { class: "answer", text: t("mf.answer", { expert: i.expert_name ?? "", answer: i.answer }) })
      : null,
  );
  if (i.room_open) {
    const button = h("button", {
      type: "button",
      class: "btn btn-primary",
      dataset: { action: "join-interpretation" },
      text: t("mf.join"),
    });
    button.addEventListener("click", () => enterCall(i, button));
    li.append(h("div", { class: "actions" }, button));
  }
  return li;
}

function askItem(c) {
  const id = `ask-${c.id}`;
  const form = h(
    "form",
    { class: "inline-form", dataset: { form: "ask-interpretation", consultation: c.id }, novalidate: true },
    h("label", { for: id, text: t("mf.ask_label") }),
    h("textarea", { id, name: "question", rows: 2, maxlength: 4000 }),
    h("button", { type: "submit", class: "btn", dataset: { action: "ask-interpretation" }, text: t("mf.ask") }),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const question = form.elements.question.value.trim();
    if (!question) {
      form.elements.question.focus();
      return;
    }
    const sent = await busy(form.querySelector("button"), () =>
      api("POST", `/consultations/${c.id}/interpretations`, { question }),
    );
    if (sent) {
      form.reset();
      portal.followupAsked = sent.id;
      readFollowups();
    }
  });
  return h(
    "li",
    { class: "consult-item followup-item", dataset: { ask: c.id } },
    h("h3", { text: t("mf.ask_heading", { to: c.target_institution_name }) }),
    form,
  );
}

/** Draw the card from what was read last (also after a language toggle). */
export function renderFollowups() {
  const asking = data.consultations.filter((c) => REPORTED.includes(c.state));
  const items = [
    ...data.referrals.map(referralItem),
    ...data.interpretations.map(interpretationItem),
    ...asking.map(askItem),
  ];
  el.card.hidden = items.length === 0;
  replaceKeepingInput(el.list, ...items); // what the patient is typing survives a push
}

/** Read the patient's referrals, interpretations and consultations again; one read at a time. */
export const readFollowups = oneAtATime(async () => {
  try {
    const [{ referrals }, { interpretations }, { consultations }] = await Promise.all([
      api("GET", "/me/referrals"),
      api("GET", "/me/interpretations"),
      api("GET", "/me/consultations"),
    ]);
    data = { referrals, interpretations, consultations };
    portal.followups = data;
    portal.followupReads = (portal.followupReads ?? 0) + 1;
    renderFollowups();
  } catch (err) {
    showError(err);
  }
});
