// The patient's remote consultations on the waiting-room page (issue 14): the open ones, each
// with the two institutions, the time and its state in plain words; while the consultation's
// room is open to the patient, a button enters it (a join token, then the room in this tab).
// When the inviter asks the patient out for the doctors' discussion, the room page comes back
// here (/waiting?left=stepped_out) and the card says so; pushed back in, the button returns.

import { t } from "./i18n.js";
import { api } from "./api.js";
import { busy, oneAtATime, portal, showError } from "./portal.js";
import { h, when } from "./console-dom.js";

/** Finished ones are left out: decided (archived), declined, cancelled. */
const CLOSED_STATES = ["decided", "declined", "cancelled"];

const el = {
  card: document.getElementById("consult-card"),
  list: document.getElementById("consult-list"),
};

let consultations = [];
let entering = false;
// Back from the room, asked out: the line that says why gets the focus once (read out first).
let focusStepped = new URLSearchParams(window.location.search).get("left") === "stepped_out";

/** The state line: what is happening, in plain words. */
function stateKey(c) {
  if (c.state === "in_session") {
    if (c.room_open) return "mc.state.room_open";
    if (c.stepped_out) return "mc.state.stepped_out";
  }
  return `mc.state.${c.state}`;
}

async function enter(c, button) {
  if (entering) return;
  entering = true;
  const joined = await busy(button, async () => {
    const join = await api("POST", `/consultations/${c.id}/join-token`, {});
    portal.consultationEntering = c.id;
    window.location.assign(join.room_url);
    return join;
  });
  if (!joined) {
    entering = false;
    read(); // refused (asked out meanwhile, or the session ended): show it as it is now
  }
}

function item(c) {
  const stateId = `consult-state-${c.id}`;
  const starts = c.starts_at ? when(c.starts_at) : t("mc.time_unknown");
  const li = h(
    "li",
    {
      class: "consult-item",
      dataset: { id: c.id, state: c.state, roomOpen: String(c.room_open) },
    },
    h("h3", { class: "consult-kind", text: t(`mc.kind.${c.kind}`) }),
    h(
      "dl",
      { class: "consult-facts" },
      h("dt", { text: t("mc.from") }),
      h("dd", { dataset: { field: "from" }, text: c.institution_name }),
      h("dt", { text: t("mc.to") }),
      h("dd", { dataset: { field: "to" }, text: c.target_institution_name }),
      h("dt", { text: t("mc.time") }),
      h("dd", { dataset: { field: "time" }, text: starts }),
    ),
    h("p", {
      id: stateId,
      class: "consult-state",
      tabindex: "-1",
      dataset: { stepped: String(Boolean(c.stepped_out)) },
      text: t(stateKey(c)),
    }),
  );
  if (c.room_open) {
    const button = h("button", {
      type: "button",
      class: "btn btn-primary consult-enter",
      dataset: { action: "enter-consultation" },
      "aria-describedby": stateId,
      text: t("mc.enter"),
    });
    button.addEventListener("click", () => enter(c, button));
    li.append(h("div", { class: "actions" }, button));
  }
  return li;
}

/** The consultations still open (the page's status line mentions them when there is no visit). */
export function openConsultations() {
  return consultations.filter((c) => !CLOSED_STATES.includes(c.state));
}

/** Draw the card from what was read last (also after a language toggle). */
export function renderConsultations() {
  const open = openConsultations();
  el.card.hidden = open.length === 0;
  // a re-read redraws the card: the focus stays on the same consultation (its button, else its
  // state line) instead of falling back to the page
  const active = document.activeElement;
  const had = el.list.contains(active) ? active.closest("li[data-id]")?.dataset.id : null;
  el.list.replaceChildren(...open.map(item));
  const stepped = el.list.querySelector('.consult-state[data-stepped="true"]');
  if (focusStepped && stepped) {
    focusStepped = false;
    stepped.focus();
  } else if (had) {
    const li = [...el.list.children].find((node) => node.dataset.id === had);
    (li?.querySelector(".consult-enter") ?? li?.querySelector(".consult-state"))?.focus();
  }
}

/** Read the patient's consultations again (on load, on every push and reconnect); one read
 * at a time, the last one shown last. */
export const readConsultations = oneAtATime(async () => {
  try {
    const body = await api("GET", "/me/consultations");
    consultations = body.consultations;
    portal.consultations = consultations;
    portal.consultationReads = (portal.consultationReads ?? 0) + 1;
    renderConsultations();
    onRead();
  } catch (err) {
    showError(err);
  }
});

const read = readConsultations;

let onRead = () => {};
/** `fn` runs after each read (the page's status line). */
export function afterConsultationsRead(fn) {
  onRead = fn;
}

/** Whether a push concerns the consultations (a request's machine, or the room's presence). */
export function aboutConsultations(change) {
  return change === null || Boolean(change.machine) || Boolean(change.room);
}
