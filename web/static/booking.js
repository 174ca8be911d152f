// Booking a follow-up (R2, R7): a doctor, the condition followed up (one of the patient's prior
// diagnoses), the mode, and a slot of the doctor's schedule or the queue of a doctor who is
// online. Shared by the patient's /waiting and the staff console.

import { addStrings, onLanguageChange, t } from "./i18n.js";
import { BOOKING_STRINGS } from "./booking-strings.js";
import { api } from "./api.js";
import { busy, showError } from "./portal.js";
import { h, when } from "./console-dom.js";

addStrings(BOOKING_STRINGS);

const MODES = ["video", "voice", "text"];

/**
 * Build the booking form into `container`.
 * `patientId`: the record booked for; `diagnoses`: its prior diagnoses; `practitioners`:
 * verified doctors to choose from; `onBooked(visit)` after a booking.
 */
export function mountBooking(container, { patientId, diagnoses, practitioners, onBooked }) {
  const state = {
    doctorId: practitioners[0]?.user_id ?? "",
    slots: [],
    loading: true, // the doctor's times are being read: no choice is offered yet
    choice: "",
    mode: "video",
  };
  state.condition = diagnoses[0]?.condition_code ?? "";
  let alive = true;

  const doctor = () => practitioners.find((p) => p.user_id === state.doctorId);

  async function loadSlots() {
    state.slots = [];
    state.loading = true;
    render();
    try {
      if (state.doctorId) {
        const { slots } = await api("GET", `/practitioners/${state.doctorId}/slots`);
        state.slots = slots.filter((slot) => slot.remaining > 0);
      }
    } catch (err) {
      state.loading = false;
      render();
      throw err;
    }
    state.loading = false;
    const choices = choicesOf();
    if (!choices.some((c) => c.value === state.choice)) state.choice = choices[0]?.value ?? "";
    render();
  }

  function choicesOf() {
    const choices = state.slots.map((slot) => ({
      value: slot.id,
      label: t("booking.slot", {
        from: when(slot.starts_at),
        to: new Date(slot.ends_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }),
        n: slot.remaining,
      }),
    }));
    if (doctor()?.online) choices.unshift({ value: "queue", label: t("booking.queue_now") });
    return choices;
  }

  function select(name, labelKey, items, value, onchange) {
    const id = `booking-${name}`;
    const control = h(
      "select",
      { id, name, onchange: (e) => onchange(e.currentTarget.value) },
      items.map((item) => h("option", { value: item.value, text: item.label })),
    );
    control.value = value;
    return h("div", { class: "field" }, h("label", { for: id, text: t(labelKey) }), control);
  }

  function render() {
    if (!alive) return;
    if (!diagnoses.length) {
      container.replaceChildren(h("p", { class: "empty", text: t("booking.no_diagnosis") }));
      return;
    }
    if (!practitioners.length) {
      container.replaceChildren(h("p", { class: "empty", text: t("booking.no_doctor") }));
      return;
    }
    const choices = choicesOf();
    const whenField = h(
      "fieldset",
      { class: "field choices", id: "booking-when" },
      h("legend", { class: "label", text: t("booking.when") }),
      state.loading
        ? h("p", { class: "empty", text: t("booking.loading") })
        : choices.length
        ? choices.map((c) =>
            h(
              "label",
              { class: "check choice" },
              h("input", {
                type: "radio",
                name: "when",
                value: c.value,
                checked: c.value === state.choice,
                onchange: () => (state.choice = c.value),
              }),
              h("span", { text: c.label }),
            ),
          )
        : h("p", { class: "empty", text: t("booking.no_time") }),
    );
    const submit = h("button", {
      type: "button",
      id: "booking-submit",
      class: "btn btn-primary",
      disabled: state.loading || !choices.length,
      text: t("booking.submit"),
      onclick: (e) => book(e.currentTarget),
    });
    container.replaceChildren(
      select(
        "doctor",
        "booking.doctor",
        practitioners.map((p) => ({
          value: p.user_id,
          label: `${p.display_name} · ${t(`title.${p.title}`)} · ${p.specialty}${p.online ? ` · ${t("prac.online")}` : ""}`,
        })),
        state.doctorId,
        (value) => {
          state.doctorId = value;
          loadSlots().catch(showError);
        },
      ),
      select(
        "condition",
        "booking.condition",
        diagnoses.map((d) => ({ value: d.condition_code, label: `${d.condition_name}（${d.condition_code}）` })),
        state.condition,
        (value) => (state.condition = value),
      ),
      select(
        "mode",
        "booking.mode",
        MODES.map((m) => ({ value: m, label: t(`visit.mode.${m}`) })),
        state.mode,
        (value) => (state.mode = value),
      ),
      whenField,
      h("div", { class: "actions" }, submit),
    );
  }

  async function book(submit) {
    if (!state.choice) return showError({ code: "booking_no_time" });
    const body = {
      patient_id: patientId,
      doctor_id: state.doctorId,
      mode: state.mode,
      condition_code: state.condition,
    };
    if (state.choice !== "queue") body.slot_id = state.choice;
    const visit = await busy(submit, () => api("POST", "/visits", body));
    if (visit) {
      await loadSlots().catch(() => {});
      onBooked(visit);
    }
  }

  const unsubscribe = onLanguageChange(render);
  render();
  loadSlots().catch(showError);
  return {
    close() {
      alive = false;
      unsubscribe();
      container.replaceChildren();
    },
  };
}
