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

/** Before a push re-renders `container`, note what was typed into its controls with an id (a
 * textarea, a text input, a select the user changed) and where the focus and caret were; the
 * returned function puts them into the new controls of the same ids. Without this, an answer
 * being written is wiped when any update arrives. */
export function keepInput(container) {
  const typed = new Map();
  for (const control of container.querySelectorAll("textarea[id], input[id], select[id]")) {
    if (["checkbox", "radio", "hidden", "file"].includes(control.type)) continue;
    const changed =
      control.tagName === "SELECT"
        ? [...control.options].some((option) => option.selected !== option.defaultSelected)
        : control.value !== control.defaultValue;
    if (changed) typed.set(control.id, control.value);
  }
  const focused = container.contains(document.activeElement) ? document.activeElement : null;
  const caret =
    focused && typeof focused.selectionStart === "number" ? [focused.selectionStart, focused.selectionEnd] : null;
  return () => {
    for (const [id, value] of typed) {
      const control = container.querySelector(`#${CSS.escape(id)}`);
      if (!control || control.readOnly || control.disabled) continue;
      if (control.tagName === "SELECT" && ![...control.options].some((o) => o.value === value)) continue;
      control.value = value;
    }
    const again = focused?.id ? container.querySelector(`#${CSS.escape(focused.id)}`) : null;
    if (!again || again === document.activeElement) return;
    again.focus();
    if (!caret) return;
    try {
      again.setSelectionRange(...caret);
    } catch {
      // controls without a caret (number, date) refuse a selection; the focus is enough
    }
  };
}

/** `container.replaceChildren(...children)`, keeping what was being typed in it (keepInput). */
export function replaceKeepingInput(container, ...children) {
  const restore = keepInput(container);
  container.replaceChildren(...children);
  restore();
}
