// Doctors' schedules (R7) and the bookings of the operator's departments (or the nurse's
// institution): open and remove slots, see who booked what, cancel a booking.

import { t } from "./i18n.js";
import { api } from "./api.js";
import { busy, showError } from "./portal.js";
import { button, fillSelect, formValues, h, when } from "./console-dom.js";
import { ctx, departmentName, loadPractitioners, notify } from "./console.js";

const $ = (id) => document.getElementById(id);
const OPEN = new Set(["booked", "waiting", "in_room"]);
let slots = [];
let visits = [];

function doctorName(id) {
  return ctx.practitioners.find((p) => p.user_id === id)?.display_name ?? "";
}

function renderDoctors() {
  const verified = ctx.practitioners.filter((p) => p.verification === "verified");
  fillSelect(
    $("schedule-doctor"),
    verified.map((p) => ({ value: p.user_id, label: `${p.display_name} · ${departmentName(p.department_id)}` })),
    { placeholder: verified.length ? null : "schedule.no_doctor" },
  );
  $("slot-form").querySelector("[type=submit]").disabled = !verified.length;
}

function renderSlots() {
  $("slot-empty").hidden = slots.length > 0;
  $("slot-list").replaceChildren(
    ...slots.map((slot) => {
      const row = h(
        "li",
        { class: "row", dataset: { slotId: slot.id } },
        h(
          "div",
          { class: "row-main" },
          h("div", {
            class: "row-title",
            text: `${when(slot.starts_at)} – ${new Date(slot.ends_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}`,
          }),
          h("div", { class: "row-meta", text: t("schedule.booked", { booked: slot.booked, capacity: slot.capacity }) }),
        ),
      );
      if (slot.booked === 0) {
        row.append(
          h(
            "div",
            { class: "actions row-actions" },
            button("schedule.delete", (e) =>
              busy(e.currentTarget, async () => {
                await api("DELETE", `/slots/${slot.id}`);
                await refreshSlots();
                notify("schedule.deleted");
              }),
            ),
          ),
        );
      }
      return row;
    }),
  );
}

async function refreshSlots() {
  const doctorId = $("schedule-doctor").value;
  slots = doctorId ? (await api("GET", `/practitioners/${doctorId}/slots`)).slots : [];
  renderSlots();
}

function localInstant(date, time) {
  // `new Date("YYYY-MM-DDTHH:MM")` is local time; the API wants an instant with its zone.
  return new Date(`${date}T${time}`).toISOString();
}

async function createSlot(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const values = formValues(form);
  const doctorId = $("schedule-doctor").value;
  if (!doctorId || !values.date || !values.start || !values.end) {
    return showError({ code: "fields_missing_form" });
  }
  await busy(form.querySelector("[type=submit]"), async () => {
    await api("POST", `/practitioners/${doctorId}/slots`, {
      starts_at: localInstant(values.date, values.start),
      ends_at: localInstant(values.date, values.end),
      capacity: Number(values.capacity || 1),
    });
    await refreshSlots();
    notify("schedule.created");
  });
}

function renderBookings() {
  $("booking-empty").hidden = visits.length > 0;
  $("booking-list").replaceChildren(
    ...visits.map((v) => {
      const row = h(
        "li",
        { class: "row", dataset: { visitId: v.id, state: v.state } },
        h(
          "div",
          { class: "row-main" },
          h("div", { class: "row-title", text: `${v.patient_name ?? ""} → ${v.doctor_name}` }),
          h("div", {
            class: "row-meta",
            text: [
              t(`staff_state.${v.state}`),
              t(`visit.mode.${v.mode}`),
              v.department_name ?? "",
              v.slot_starts_at ? when(v.slot_starts_at) : t("booking.queue"),
            ]
              .filter(Boolean)
              .join(" · "),
          }),
        ),
      );
      if (v.state === "booked" || v.state === "waiting") {
        const pane = h("div", { class: "row-pane" });
        row.append(
          h(
            "div",
            { class: "row-side" },
            h(
              "div",
              { class: "actions row-actions" },
              button("bookings.cancel", (e) => {
                const trigger = e.currentTarget;
                pane.replaceChildren(
                  h(
                    "div",
                    { class: "confirm", role: "alertdialog" },
                    h("p", { text: t("bookings.confirm_cancel", { name: v.patient_name ?? "" }) }),
                    h(
                      "div",
                      { class: "actions" },
                      button(
                        "bookings.cancel_confirm",
                        (ev) =>
                          busy(ev.currentTarget, async () => {
                            await api("POST", `/visits/${v.id}/cancel`, {});
                            await refreshBookings();
                            notify("bookings.cancelled");
                          }),
                        { kind: "btn-danger" },
                      ),
                      button("common.keep", () => {
                        pane.replaceChildren();
                        trigger.focus();
                      }),
                    ),
                  ),
                );
              }),
            ),
            pane,
          ),
        );
      }
      return row;
    }),
  );
}

async function refreshBookings() {
  const result = await api("GET", "/visits?limit=200");
  visits = result.visits.sort((a, b) => Number(OPEN.has(b.state)) - Number(OPEN.has(a.state)));
  renderBookings();
}

export function initSchedule() {
  if (ctx.me.role === "operator") {
    $("schedule-doctor").addEventListener("change", () => refreshSlots().catch(showError));
    $("slot-form").addEventListener("submit", createSlot);
    const today = new Date();
    const pad = (n) => String(n).padStart(2, "0");
    $("slot-date").value = `${today.getFullYear()}-${pad(today.getMonth() + 1)}-${pad(today.getDate())}`;
    ctx.refreshers.set("schedule", async () => {
      await loadPractitioners();
      renderDoctors();
      await refreshSlots();
    });
    ctx.renderers.add(() => {
      renderDoctors();
      renderSlots();
    });
  }
  ctx.refreshers.set("bookings", refreshBookings);
  const patientsBefore = ctx.refreshers.get("patients"); // the identity checks' (set first)
  ctx.refreshers.set("patients", async () => {
    await Promise.all([loadPractitioners(), patientsBefore?.()]);
  });
  ctx.renderers.add(renderBookings);
}
