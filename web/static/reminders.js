// The signed-in account's reminders (issue 14, R11; docs/consultations.md, Reminders): a button
// in the page's top bar with the unread count, and the list it opens. Read again when the
// /updates socket pushes a `reminder` (updates.js dispatches it) or (re)connects; a reminder
// is marked read from the list. Shared by /consult and /waiting.

import { addStrings, hasKey, onLanguageChange, t } from "./i18n.js";
import { api } from "./api.js";
import { h, when } from "./console-dom.js";
import { portal, showError } from "./portal.js";
import { REMINDER_STRINGS } from "./reminders-strings.js";

addStrings(REMINDER_STRINGS);

/** Put the reminders button before `anchor` (an element of the top bar) and its list in
 * `panelParent` (top of the page's main); returns `reload()`. */
export function mountReminders(anchor, panelParent) {
  let data = { reminders: [], unread: 0 };
  let loaded = false; // the list has been read once (tests wait for portal.reminders)
  const toggle = h("button", {
    type: "button",
    id: "reminders-toggle",
    class: "btn btn-quiet",
    "aria-expanded": "false",
    "aria-controls": "reminders-panel",
  });
  // A bell and the label; on a phone only the bell and the unread count show (portal.css), so
  // that the top bar keeps one line; the label stays the button's accessible name.
  const label = h("span", { class: "reminders-label" });
  toggle.append(bellIcon(), label);
  const list = h("ul", { id: "reminders-list", class: "reminders-list" });
  const heading = h("h2", { id: "reminders-heading" });
  const panel = h(
    "section",
    { id: "reminders-panel", class: "card", "aria-labelledby": "reminders-heading", hidden: true },
    heading,
    list,
  );
  anchor.before(toggle);
  panelParent.prepend(panel);
  toggle.addEventListener("click", () => {
    panel.hidden = !panel.hidden;
    toggle.setAttribute("aria-expanded", String(!panel.hidden));
  });

  function text(reminder) {
    const key = `rm.kind.${reminder.kind}`;
    return t(hasKey(key) ? key : "rm.kind.unknown", { at: when(reminder.at) });
  }

  function render() {
    label.textContent = data.unread
      ? t("rm.button_unread", { count: data.unread })
      : t("rm.button");
    toggle.dataset.unread = String(data.unread);
    heading.textContent = t("rm.heading");
    list.replaceChildren();
    if (!data.reminders.length) list.append(h("li", { class: "muted", text: t("rm.none") }));
    for (const reminder of data.reminders) {
      const item = h(
        "li",
        { dataset: { reminder: reminder.id, kind: reminder.kind, read: String(reminder.read) } },
        h("span", { class: "reminder-text", text: text(reminder) }),
      );
      if (reminder.read) {
        item.append(" ", h("span", { class: "muted", text: t("rm.read") }));
      } else {
        item.append(
          " ",
          h("button", {
            type: "button",
            class: "btn btn-quiet",
            dataset: { action: "reminder-read" },
            text: t("rm.mark_read"),
            onclick: () => markRead(reminder.id),
          }),
        );
      }
      list.append(item);
    }
    if (loaded) portal.reminders = data;
  }

  async function reload() {
    try {
      data = await api("GET", "/me/reminders");
      loaded = true;
      render();
    } catch (err) {
      showError(err);
    }
  }

  async function markRead(id) {
    try {
      await api("POST", `/me/reminders/${encodeURIComponent(id)}/read`);
    } catch (err) {
      showError(err);
    }
    await reload();
  }

  window.addEventListener("teleconsult:reminder", reload);
  window.addEventListener("teleconsult:updates-connected", reload);
  onLanguageChange(render);
  render();
  reload();
  return reload;
}

const SVG = "http://www.w3.org/2000/svg";

/** A bell, drawn in the button's text colour; decorative (the label names the button). */
function bellIcon() {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "reminders-bell");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute(
    "d",
    "M12 3a6 6 0 0 0-6 6v4l-2 3v1h16v-1l-2-3V9a6 6 0 0 0-6-6zm-2 15a2 2 0 0 0 4 0z",
  );
  path.setAttribute("fill", "currentColor");
  svg.append(path);
  return svg;
}
