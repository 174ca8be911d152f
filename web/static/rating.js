// Rating a finished visit (R40) on the waiting-room page, and the patient's history of visits.
//
// The stars are a native radio group (one tab stop, arrow keys move, each target 44 px or more);
// the comment is optional. After submitting, the page shows the rating, the doctor's reply when
// there is one, and an edit button while the one edit is unused.

import { t } from "./i18n.js";
import { api } from "./api.js";
import { busy, portal, showError } from "./portal.js";
import { when } from "./console-dom.js";

const STARS = [1, 2, 3, 4, 5];

const el = {
  box: document.getElementById("rating-box"),
  form: document.getElementById("rating-form"),
  stars: document.getElementById("rating-stars"),
  text: document.getElementById("rating-text"),
  submit: document.getElementById("rating-submit"),
  cancel: document.getElementById("rating-cancel"),
  done: document.getElementById("rating-done"),
  shownStars: document.getElementById("rating-shown-stars"),
  shownText: document.getElementById("rating-shown-text"),
  replyLine: document.getElementById("rating-reply-line"),
  reply: document.getElementById("rating-reply"),
  edit: document.getElementById("rating-edit"),
  closed: document.getElementById("rating-closed"),
  until: document.getElementById("rating-until"),
  historyCard: document.getElementById("history-card"),
  historyList: document.getElementById("history-list"),
};

// {visitId, status: {can_rate, rate_until, rating}, editing}
const state = { visitId: null, status: null, editing: false };
let history = [];

function starText(n) {
  return "★".repeat(n) + "☆".repeat(5 - n);
}

function chosen() {
  const input = el.stars.querySelector("input:checked");
  return input ? Number(input.value) : 0;
}

function paintStars() {
  const value = chosen();
  for (const label of el.stars.querySelectorAll("label")) {
    label.dataset.on = String(Number(label.dataset.value) <= value);
  }
  el.submit.disabled = value === 0;
}

function buildStars() {
  el.stars.querySelectorAll("label").forEach((label) => label.remove());
  for (const n of STARS) {
    const label = document.createElement("label");
    label.className = "star";
    label.dataset.value = String(n);
    const input = document.createElement("input");
    input.type = "radio";
    input.name = "stars";
    input.value = String(n);
    input.addEventListener("change", paintStars);
    const glyph = document.createElement("span");
    glyph.setAttribute("aria-hidden", "true");
    glyph.textContent = "★";
    const name = document.createElement("span");
    name.className = "visually-hidden";
    name.textContent = t("rating.star_n", { n });
    label.append(input, glyph, name);
    el.stars.append(label);
  }
}

/** Show the rating part of the finished visit's card. */
export function renderRating() {
  portal.rating = state.status;
  const status = state.status;
  el.box.hidden = !status;
  if (!status) return;
  const rating = status.rating;
  const form = state.editing || (status.can_rate && !rating);
  if (el.stars.querySelectorAll("label").length === 0) buildStars();
  for (const label of el.stars.querySelectorAll("label")) {
    label.querySelector(".visually-hidden").textContent = t("rating.star_n", {
      n: Number(label.dataset.value),
    });
  }
  el.form.hidden = !form;
  el.cancel.hidden = !state.editing;
  el.submit.textContent = t(state.editing ? "rating.save" : "rating.submit");
  el.until.textContent =
    status.rate_until && !state.editing ? t("rating.until", { time: when(status.rate_until) }) : "";
  el.done.hidden = form || !rating;
  el.closed.hidden = form || Boolean(rating) || status.can_rate;
  if (rating && !form) {
    el.shownStars.textContent = starText(rating.stars);
    el.shownStars.setAttribute("aria-label", t("rating.star_n", { n: rating.stars }));
    el.shownText.textContent = rating.text ?? "";
    el.shownText.hidden = !rating.text;
    el.replyLine.hidden = !rating.reply;
    el.reply.textContent = rating.reply ?? "";
    el.edit.hidden = !rating.can_edit;
  }
  paintStars();
}

/** Read the rating state of a finished visit (an audited view: once per visit shown). */
export async function loadRating(visit) {
  if (state.visitId === visit.id && state.status) {
    renderRating();
    return;
  }
  state.visitId = visit.id;
  state.editing = false;
  state.status = await api("GET", `/visits/${visit.id}/rating`);
  renderRating();
}

/** A change of ``visitId``'s rating was pushed (the doctor answered it, or it was rated or
 * edited from another page): read it again if it is the one on show and not being edited. */
export async function ratingPushed(visitId) {
  if (state.visitId !== visitId || state.editing) return;
  state.status = await api("GET", `/visits/${visitId}/rating`);
  renderRating();
}

/** No finished visit on show: hide the rating. */
export function hideRating() {
  state.visitId = null;
  state.status = null;
  renderRating();
}

async function submit(event) {
  event.preventDefault();
  const stars = chosen();
  if (!stars || !state.visitId) return;
  const text = el.text.value.trim();
  const body = text ? { stars, text } : { stars };
  const method = state.editing ? "PUT" : "POST";
  await busy(el.submit, async () => {
    const rating = await api(method, `/visits/${state.visitId}/rating`, body);
    state.status = { ...state.status, can_rate: false, rating };
    state.editing = false;
    renderRating();
    await loadHistory();
    el.done.focus(); // a screen reader hears the rating as it was kept
  });
  paintStars();
}

function startEdit() {
  const rating = state.status?.rating;
  if (!rating) return;
  state.editing = true;
  renderRating();
  const input = el.stars.querySelector(`input[value="${rating.stars}"]`);
  if (input) input.checked = true;
  el.text.value = rating.text ?? "";
  paintStars();
  (input ?? el.text).focus();
}

function cancelEdit() {
  state.editing = false;
  renderRating();
  el.edit.focus();
}

// ---------------------------------------------------------------------------------------------
// The patient's visits

function historyLine(visit) {
  const parts = [when(visit.slot_starts_at ?? visit.admitted_at ?? visit.created_at)];
  if (visit.doctor_name) parts.push(t("visit.doctor", { name: visit.doctor_name }));
  if (visit.department_name) parts.push(visit.department_name);
  parts.push(t(`visit.state.${visit.state}`));
  return parts.join(" · ");
}

function historyRating(visit) {
  if (visit.rating) return `${starText(visit.rating.stars)} ${t("rating.rated")}`;
  if (visit.can_rate) return t("rating.to_rate");
  return "";
}

export function renderHistory() {
  el.historyCard.hidden = history.length === 0;
  el.historyList.replaceChildren(
    ...history.map((visit) => {
      const item = document.createElement("li");
      item.dataset.visit = visit.id;
      const link = document.createElement("a");
      link.href = `/waiting?visit=${encodeURIComponent(visit.id)}`;
      link.textContent = historyLine(visit);
      if (visit.id === state.visitId || visit.id === portal.visit?.id) {
        link.setAttribute("aria-current", "page");
      }
      const rating = document.createElement("span");
      rating.className = "history-rating";
      rating.dataset.field = "rating";
      rating.textContent = historyRating(visit);
      item.append(link, rating);
      return item;
    }),
  );
  portal.history = history;
}

export async function loadHistory() {
  ({ visits: history } = await api("GET", "/me/visits"));
  renderHistory();
}

export function mountRating() {
  el.form.addEventListener("submit", (event) => submit(event).catch((err) => showError(err)));
  el.edit.addEventListener("click", startEdit);
  el.cancel.addEventListener("click", cancelEdit);
}
