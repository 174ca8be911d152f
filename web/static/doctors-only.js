// The doctors-only part of a consultation (issue 14, R12), in the room view (room-view.js).
//
// The consultation's host (its inviter) asks the patient's side out of the room for a part among
// clinicians, and back in, through the REST API with this tab's session (api.js:
// POST /consultations/{id}/participants/{user}/step-out and /step-in). What the pages show comes
// from the server, never from this page's memory: every `participants` event and join ack
// carries the room's patient's side and who of it is out (`patient_side`, docs/signaling.md), so
// the experts' pages, and the host's page opened again, show the same banner.

import { ApiError, api } from "./api.js";

/**
 * `el`: the step-out button, its confirm dialog (with confirm and cancel buttons), the banner
 * and its bring-back button. `onError(err)`: a refusal (ApiError with the API's stable code);
 * `onStart()`: a call begins (clear the last error).
 */
export class DoctorsOnly {
  constructor(el, { onError, onStart }) {
    this.el = el;
    this.onError = onError;
    this.onStart = onStart;
    this.self = null;
    this.subject = null;
    this.side = [];
    this.ended = false;
    this.busy = false;
    this.focusNext = null; // the control to focus once the server's answer shows it
    el.stepOut.addEventListener("click", () => this.confirm());
    el.confirm.addEventListener("click", () => {
      el.dialog.close();
      this.move("step-out", this.inside());
    });
    el.cancel.addEventListener("click", () => el.dialog.close());
    el.bringBack.addEventListener("click", () => this.move("step-in", this.out()));
  }

  /** The room's state as the server sent it: this page's participant, the room's subject (join
   * ack) and its patient's side (`patient_side`). */
  update({ self = this.self, subject = this.subject, side = this.side }) {
    this.self = self;
    this.subject = subject;
    this.side = Array.isArray(side) ? side : [];
    this.render();
  }

  end() {
    this.ended = true;
    if (this.el.dialog.open) this.el.dialog.close();
    this.render();
  }

  /** The host of a consultation's room: its inviter (the API lets nobody else). */
  get host() {
    return this.subject?.type === "consultation" && this.self?.room_role === "inviter";
  }

  /** A clinician: anyone of the room who is not of the patient's side. */
  get clinician() {
    return this.self !== null && !this.side.some((p) => p.id === this.self.id);
  }

  inside() {
    return this.side.filter((p) => !p.stepped_out);
  }

  out() {
    return this.side.filter((p) => p.stepped_out);
  }

  confirm() {
    if (this.busy || !this.host) return;
    this.el.dialog.showModal();
    this.el.cancel.focus(); // the safe answer first: Enter does not send the patient out
  }

  /** Step every one of `people` out (`step-out`) or back in (`step-in`), one call each. */
  async move(action, people) {
    if (this.busy || !this.host || people.length === 0) return;
    this.busy = true;
    this.onStart?.();
    this.render();
    const cid = encodeURIComponent(this.subject.id);
    try {
      for (const person of people) {
        await api("POST", `/consultations/${cid}/participants/${encodeURIComponent(person.id)}/${action}`);
      }
      this.focusNext = action === "step-out" ? this.el.bringBack : this.el.stepOut;
    } catch (err) {
      console.warn("[tc] doctors-only", action, err?.code ?? err);
      this.onError(err instanceof ApiError ? err : new ApiError(0, "unknown", String(err)));
    } finally {
      this.busy = false;
      this.render();
    }
  }

  render() {
    const el = this.el;
    const live = !this.ended && this.self !== null;
    const out = this.out().length > 0;
    el.banner.hidden = !(live && this.clinician && out);
    el.bringBack.hidden = !(live && this.host && out);
    el.stepOut.hidden = !(live && this.host && this.inside().length > 0);
    el.bringBack.disabled = this.busy;
    el.stepOut.disabled = this.busy;
    el.confirm.disabled = this.busy;
    const next = this.focusNext;
    if (next && !next.hidden) {
      this.focusNext = null;
      next.focus();
    }
  }
}
