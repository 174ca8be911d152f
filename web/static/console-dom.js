// Small DOM helpers of the staff console: build elements, read forms, fill selects.

import { t } from "./i18n.js";

/** `h("li", {class: "row", dataset: {id}}, child, "text")`: an element with attributes. */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** A button of the console's size with a translated label. */
export function button(key, onclick, { kind = "", action = "", params = {} } = {}) {
  return h("button", {
    type: "button",
    class: `btn ${kind}`.trim(),
    dataset: { action: action || key },
    text: t(key, params),
    onclick,
  });
}

/** The form's named controls as an object of trimmed strings (checkboxes as booleans). */
export function formValues(form) {
  const values = {};
  for (const control of form.elements) {
    if (!control.name) continue;
    if (control.type === "checkbox") values[control.name] = control.checked;
    else values[control.name] = String(control.value ?? "").trim();
  }
  return values;
}

/** Replace a select's options: `items` of {value, label}; keeps the choice when still there. */
export function fillSelect(select, items, { placeholder = null } = {}) {
  const previous = select.value;
  const options = items.map((item) => h("option", { value: item.value, text: item.label }));
  if (placeholder) options.unshift(h("option", { value: "", text: t(placeholder) }));
  select.replaceChildren(...options);
  if (items.some((item) => item.value === previous)) select.value = previous;
}

/** Local date and time of an ISO instant, e.g. "12月3日 09:30" / "Dec 3, 09:30". */
export function when(iso) {
  if (!iso) return "";
  return new Date(iso).toLocaleString(document.documentElement.lang || "zh-CN", {
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });
}
