// The doctor's ratings on the queue page: the satisfaction figure (R41) and the newest ratings of
// its visits, each with a reply form while a reply is allowed (once, within 30 days, R40). Read
// when the page opens and again when a rating of its visits is pushed: the queue does not poll.

import { onLanguageChange, t } from "./i18n.js";
import { api } from "./api.js";
import { busy, oneAtATime, portal } from "./portal.js";
import { when } from "./console-dom.js";

const el = {
  card: document.getElementById("ratings-card"),
  satisfaction: document.getElementById("satisfaction"),
  list: document.getElementById("ratings-list"),
};

let figure = null;
let ratings = [];

function stars(n) {
  return "★".repeat(n) + "☆".repeat(5 - n);
}

function renderFigure() {
  if (!figure) return;
  el.satisfaction.textContent = figure.count
    ? t("queue.satisfaction", { average: figure.average.toFixed(1), count: figure.count })
    : t("queue.satisfaction_none");
}

function item({ visit_id: visitId, closed_at: closedAt, rating }) {
  const li = document.createElement("li");
  li.dataset.visit = visitId;
  const head = document.createElement("p");
  const shown = document.createElement("span");
  shown.className = "rating-stars";
  shown.setAttribute("role", "img");
  shown.setAttribute("aria-label", t("rating.star_n", { n: rating.stars }));
  shown.textContent = stars(rating.stars);
  head.append(shown, ` ${when(closedAt ?? rating.created_at)}`);
  li.append(head);
  if (rating.text) {
    const text = document.createElement("p");
    text.textContent = rating.text;
    li.append(text);
  }
  if (rating.reply) {
    const reply = document.createElement("p");
    reply.dataset.field = "reply";
    const label = document.createElement("strong");
    label.textContent = t("queue.your_reply");
    reply.append(label, rating.reply);
    li.append(reply);
  } else if (rating.can_reply) {
    const form = document.createElement("form");
    const id = `reply-${visitId}`;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = t("queue.reply_label");
    const area = document.createElement("textarea");
    area.id = id;
    area.name = "reply";
    area.maxLength = 500;
    area.required = true;
    const send = document.createElement("button");
    send.type = "submit";
    send.className = "btn";
    send.dataset.action = "reply";
    send.textContent = t("queue.reply_send");
    const field = document.createElement("div");
    field.className = "field";
    field.append(label, area);
    form.append(field, send);
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(send, async () => {
        const answered = await api("POST", `/visits/${visitId}/rating/reply`, {
          text: area.value,
        });
        ratings = ratings.map((r) => (r.visit_id === visitId ? { ...r, rating: answered } : r));
        render();
      });
    });
    li.append(form);
  }
  return li;
}

function render() {
  portal.ratings = ratings;
  el.card.hidden = !figure && ratings.length === 0;
  renderFigure();
  // a pushed re-read redraws the list: a reply being typed (and its focus) survives it
  const typed = [...el.list.querySelectorAll("textarea[id]")].map((area) => [area.id, area.value]);
  const focused = el.list.contains(document.activeElement) ? document.activeElement.id : null;
  el.list.replaceChildren(...ratings.map(item));
  for (const [id, value] of typed) {
    const area = document.getElementById(id);
    if (area) area.value = value;
  }
  if (focused) document.getElementById(focused)?.focus();
}

let doctor = null;

/** Read the figure and the ratings (on load and when a rating is pushed), and show them. */
const readRatings = oneAtATime(async () => {
  const [got, list] = await Promise.allSettled([
    api("GET", `/practitioners/${doctor}/satisfaction`),
    api("GET", "/me/ratings"),
  ]);
  if (got.status === "fulfilled") figure = got.value;
  if (list.status === "fulfilled") ratings = list.value.ratings;
  portal.satisfaction = figure;
  portal.ratingReads = (portal.ratingReads ?? 0) + 1;
  render();
});

export async function mountRatings(doctorId) {
  doctor = doctorId;
  onLanguageChange(() => render());
  await readRatings();
}

/** A rating given, edited or answered was pushed (or the page reconnected): read again. */
export function ratingPushed() {
  if (doctor) readRatings();
}
