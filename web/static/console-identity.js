// Identity checks in the console (issue 13 item 3), for nurses and operators at the desk:
// - guardian relations a patient registered for a ward: verify (proof seen) or refuse;
// - identity disputes: a patient registered an ID number already on file (the patient was not
//   told); compare documents, then "merge" (the claimant is that person, or its guardian) or
//   "reject" (a typo or another person).
// ID numbers appear masked only.

import { t } from "./i18n.js";
import { api } from "./api.js";
import { busy } from "./portal.js";
import { h, when } from "./console-dom.js";
import { ctx, notify } from "./console.js";

const $ = (id) => document.getElementById(id);

let links = [];
let disputes = [];

function person(p) {
  return `${p.name} · ${t("patients.id_number")} ${p.id_number_masked}`;
}

function actionButton(label, kind, onClick) {
  return h("button", { type: "button", class: `btn ${kind}`, text: t(label), onclick: onClick });
}

function render() {
  $("guardian-list").replaceChildren(
    ...links.map((link) =>
      h(
        "li",
        { class: "row", dataset: { wardId: link.ward.id } },
        h(
          "div",
          { class: "row-main" },
          h("div", { class: "row-title", text: person(link.ward) }),
          h("div", {
            class: "row-meta",
            text: t("identity.guardian_is", {
              guardian: person(link.guardian),
              relation: t(`relation.${link.ward.guardian_relation}`),
            }),
          }),
        ),
        h(
          "div",
          { class: "row-actions" },
          actionButton("identity.verify", "btn-primary", (e) => decideGuardian(e, link, "verify")),
          actionButton("identity.refuse", "", (e) => decideGuardian(e, link, "refuse")),
        ),
      ),
    ),
  );
  $("guardian-empty").hidden = links.length > 0;
  $("dispute-list").replaceChildren(
    ...disputes.map((d) =>
      h(
        "li",
        { class: "row", dataset: { disputeId: d.id } },
        h(
          "div",
          { class: "row-main" },
          h("div", {
            class: "row-title",
            text: t(d.as_ward ? "identity.claim_ward" : "identity.claim_self", {
              claimant: d.claimant_name,
              claim: d.claim ? person(d.claim) : "",
            }),
          }),
          h("div", {
            class: "row-meta",
            text: `${t("identity.on_file", { existing: person(d.existing) })} · ${when(d.created_at)}`,
          }),
        ),
        h(
          "div",
          { class: "row-actions" },
          actionButton("identity.merge", "btn-primary", (e) => resolve(e, d, "merge")),
          actionButton("identity.reject", "", (e) => resolve(e, d, "reject")),
        ),
      ),
    ),
  );
  $("dispute-empty").hidden = disputes.length > 0;
}

async function refresh() {
  [{ links }, { disputes }] = await Promise.all([
    api("GET", "/guardian-links/pending"),
    api("GET", "/identity-disputes"),
  ]);
  render();
}

async function decideGuardian(event, link, decision) {
  await busy(event.currentTarget, async () => {
    await api("POST", `/patients/${link.ward.id}/guardian`, { decision });
    notify(decision === "verify" ? "identity.verified" : "identity.refused", { name: link.ward.name });
    await refresh();
  });
}

async function resolve(event, dispute, decision) {
  await busy(event.currentTarget, async () => {
    await api("POST", `/identity-disputes/${dispute.id}/resolve`, { decision });
    notify(decision === "merge" ? "identity.merged" : "identity.rejected", {
      name: dispute.existing.name,
    });
    await refresh();
  });
}

export function initIdentity() {
  ctx.refreshers.set("patients", refresh);
  ctx.renderers.add(render);
}
