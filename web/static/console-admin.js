// The administrator's part of the console: institutions and departments, accounts (create,
// deactivate, unlock, reset TOTP, reset password), practitioner records and their verification.
// Operators use the practitioner list too (verification within their departments).

import { t } from "./i18n.js";
import { api } from "./api.js";
import { busy, showError } from "./portal.js";
import { button, fillSelect, formValues, h } from "./console-dom.js";
import {
  ctx,
  departmentName,
  departmentOptions,
  loadOrganisation,
  loadPractitioners,
  notify,
} from "./console.js";

const $ = (id) => document.getElementById(id);
const STAFF = new Set(["doctor", "nurse", "operator"]);
let accounts = [];

// --- Institutions and departments --------------------------------------------------------------

function renderOrganisation() {
  const list = $("institution-list");
  list.replaceChildren(
    ...ctx.institutions.map((institution) => {
      const departments = ctx.departments.get(institution.id) ?? [];
      return h(
        "li",
        { class: "row", dataset: { institutionId: institution.id } },
        h(
          "div",
          { class: "row-main" },
          h("div", { class: "row-title", text: institution.name }),
          h("div", { class: "row-meta", text: t(`level.${institution.level}`) }),
          h("div", {
            class: "row-meta",
            text: departments.length
              ? `${t("org.departments")}：${departments.map((d) => d.name).join("、")}`
              : t("org.no_departments"),
          }),
        ),
      );
    }),
  );
  $("institution-empty").hidden = ctx.institutions.length > 0;
  const items = ctx.institutions.map((i) => ({ value: i.id, label: i.name }));
  for (const select of document.querySelectorAll("select[data-institutions]")) {
    fillSelect(select, items);
  }
  renderAccountScope();
  fillSelect($("practitioner-department"), departmentOptions());
}

async function createInstitution(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const values = formValues(form);
  if (!values.name) return showError({ code: "fields_missing_form" });
  await busy(form.querySelector("[type=submit]"), async () => {
    const institution = await api("POST", "/institutions", values);
    await loadOrganisation();
    renderOrganisation();
    $("department-institution").value = institution.id;
    form.reset();
    notify("org.institution_created", { name: institution.name });
  });
}

async function createDepartment(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const { institution_id: institutionId, name } = formValues(form);
  if (!institutionId || !name) return showError({ code: "fields_missing_form" });
  await busy(form.querySelector("[type=submit]"), async () => {
    const department = await api("POST", `/institutions/${institutionId}/departments`, { name });
    await loadOrganisation();
    renderOrganisation();
    form.elements.name.value = "";
    notify("org.department_created", { name: department.name });
  });
}

// --- Accounts ----------------------------------------------------------------------------------

function renderAccountScope() {
  const role = $("account-role").value;
  const institutionId = $("account-institution").value;
  $("account-staff-fields").hidden = !STAFF.has(role);
  $("account-scope-field").hidden = role !== "operator";
  const departments = ctx.departments.get(institutionId) ?? [];
  fillSelect(
    $("account-department"),
    departments.map((d) => ({ value: d.id, label: d.name })),
    { placeholder: "org.no_department" },
  );
  const checked = new Set(
    [...$("account-scope").querySelectorAll("input:checked")].map((input) => input.value),
  );
  $("account-scope").replaceChildren(
    ...departments.map((d) =>
      h(
        "label",
        { class: "check" },
        h("input", { type: "checkbox", value: d.id, checked: checked.has(d.id) }),
        h("span", { text: d.name }),
      ),
    ),
  );
}

function accountState(account) {
  if (!account.is_active) return t("accounts.inactive");
  if (account.locked_until && new Date(account.locked_until) > new Date()) {
    return t("accounts.locked");
  }
  return t(account.totp_enrolled ? "accounts.active" : "accounts.no_totp");
}

function renderAccounts() {
  $("account-list").replaceChildren(
    ...accounts.map((account) => {
      const row = h(
        "li",
        { class: "row", dataset: { accountId: account.id, username: account.username } },
        h(
          "div",
          { class: "row-main" },
          h("div", { class: "row-title", text: `${account.display_name}（${account.username}）` }),
          h("div", {
            class: "row-meta",
            text: [
              t(`role.${account.role}`),
              departmentName(account.department_id),
              accountState(account),
            ]
              .filter(Boolean)
              .join(" · "),
          }),
        ),
      );
      if (account.is_active && account.id !== ctx.me.user_id) row.append(accountActions(account));
      return row;
    }),
  );
}

function accountActions(account) {
  const actions = h("div", { class: "actions row-actions" });
  const pane = h("div", { class: "row-pane" });
  const locked = account.locked_until && new Date(account.locked_until) > new Date();
  const run = (btn, fn, done) =>
    busy(btn, async () => {
      await fn();
      await refreshAccounts();
      notify(done, { name: account.display_name });
    });
  if (locked) {
    actions.append(
      button("accounts.unlock", (e) =>
        run(e.currentTarget, () => api("POST", `/accounts/${account.id}/unlock`, {}), "accounts.unlocked"),
      ),
    );
  }
  if (account.totp_enrolled) {
    actions.append(
      button("accounts.reset_totp", (e) => {
        const btn = e.currentTarget; // null once the click's dispatch is over
        confirmIn(pane, "accounts.confirm_reset_totp", account, () =>
          run(btn, () => api("POST", `/accounts/${account.id}/reset-totp`, {}), "accounts.totp_reset"),
        );
      }),
    );
  }
  actions.append(
    button("accounts.reset_password", () => {
      const form = h(
        "form",
        { class: "inline-form", novalidate: true },
        h(
          "label",
          { class: "field" },
          h("span", { class: "label", text: t("accounts.new_password") }),
          h("input", { type: "password", name: "new_password", autocomplete: "new-password", maxlength: 256 }),
        ),
        h(
          "div",
          { class: "actions" },
          h("button", { type: "submit", class: "btn btn-primary", text: t("accounts.set_password") }),
          button("common.cancel", () => pane.replaceChildren()),
        ),
      );
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const value = form.elements.new_password.value;
        run(
          form.querySelector("[type=submit]"),
          () => api("POST", `/accounts/${account.id}/password`, { new_password: value }),
          "accounts.password_reset",
        );
      });
      pane.replaceChildren(form);
      form.elements.new_password.focus();
    }),
  );
  actions.append(
    button(
      "accounts.deactivate",
      (e) => {
        const btn = e.currentTarget; // null once the click's dispatch is over
        confirmIn(pane, "accounts.confirm_deactivate", account, () =>
          run(btn, () => api("POST", `/accounts/${account.id}/deactivate`, {}), "accounts.deactivated"),
        );
      },
      { kind: "btn-danger" },
    ),
  );
  return h("div", { class: "row-side" }, actions, pane);
}

/** Ask before an action that cannot be undone from here; the question names the account. */
function confirmIn(pane, key, account, action) {
  pane.replaceChildren(
    h(
      "div",
      { class: "confirm", role: "alertdialog" },
      h("p", { text: t(key, { name: account.display_name }) }),
      h(
        "div",
        { class: "actions" },
        button("common.confirm", () => {
          pane.replaceChildren();
          action();
        }, { kind: "btn-danger" }),
        button("common.cancel", () => pane.replaceChildren()),
      ),
    ),
  );
}

async function refreshAccounts() {
  const result = await api("GET", "/accounts?limit=1000");
  accounts = result.accounts;
  renderAccounts();
  renderPractitionerForm();
}

async function createAccount(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const values = formValues(form);
  if (!values.username || !values.display_name || !values.password) {
    return showError({ code: "fields_missing_form" });
  }
  const body = {
    username: values.username,
    display_name: values.display_name,
    role: values.role,
    password: values.password,
  };
  if (STAFF.has(values.role)) {
    body.institution_id = values.institution_id || null;
    if (values.department_id) body.department_id = values.department_id;
  }
  if (values.role === "operator") {
    body.operator_department_ids = [...$("account-scope").querySelectorAll("input:checked")].map(
      (input) => input.value,
    );
  }
  await busy(form.querySelector("[type=submit]"), async () => {
    const account = await api("POST", "/accounts", body);
    form.elements.username.value = "";
    form.elements.display_name.value = "";
    form.elements.password.value = "";
    await refreshAccounts();
    notify("accounts.created", { name: account.display_name, username: account.username });
  });
}

// --- Practitioners -----------------------------------------------------------------------------

function renderPractitionerForm() {
  const registered = new Set(ctx.practitioners.map((p) => p.user_id));
  const doctors = accounts.filter((a) => a.role === "doctor" && a.is_active && !registered.has(a.id));
  fillSelect(
    $("practitioner-user"),
    doctors.map((a) => ({ value: a.id, label: `${a.display_name}（${a.username}）` })),
    { placeholder: doctors.length ? null : "prac.no_doctor_accounts" },
  );
  const chosen = accounts.find((a) => a.id === $("practitioner-user").value);
  if (chosen?.department_id) $("practitioner-department").value = chosen.department_id;
  $("practitioner-form").querySelector("[type=submit]").disabled = !doctors.length;
}

export function renderPractitioners() {
  $("practitioner-empty").hidden = ctx.practitioners.length > 0;
  $("practitioner-list").replaceChildren(
    ...ctx.practitioners.map((p) => {
      const row = h(
        "li",
        { class: "row", dataset: { userId: p.user_id, verification: p.verification } },
        h(
          "div",
          { class: "row-main" },
          h("div", { class: "row-title", text: `${p.display_name} · ${t(`title.${p.title}`)}` }),
          h("div", {
            class: "row-meta",
            text: [
              departmentName(p.department_id),
              p.specialty,
              t("prac.years_n", { n: p.years_of_practice }),
              `${t("prac.licence")} ${p.licence_number}`,
            ]
              .filter(Boolean)
              .join(" · "),
          }),
          h("div", {
            class: "row-status",
            dataset: { verification: p.verification },
            text: t(`verification.${p.verification}`) + (p.online ? ` · ${t("prac.online")}` : ""),
          }),
        ),
      );
      if (p.verification === "pending") {
        const verify = (approve) => (e) =>
          busy(e.currentTarget, async () => {
            await api("POST", `/practitioners/${p.user_id}/verify`, { approve });
            await loadPractitioners();
            renderPractitioners();
            notify(approve ? "prac.verified" : "prac.rejected", { name: p.display_name });
          });
        row.append(
          h(
            "div",
            { class: "actions row-actions" },
            button("prac.verify", verify(true), { kind: "btn-primary" }),
            button("prac.reject", verify(false), { kind: "btn-danger" }),
          ),
        );
      }
      return row;
    }),
  );
}

async function createPractitioner(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const values = formValues(form);
  if (!values.user_id || !values.department_id || !values.licence_number || !values.specialty) {
    return showError({ code: "fields_missing_form" });
  }
  await busy(form.querySelector("[type=submit]"), async () => {
    const record = await api("POST", "/practitioners", {
      ...values,
      years_of_practice: Number(values.years_of_practice || 0),
    });
    await loadPractitioners();
    renderPractitioners();
    form.reset();
    renderPractitionerForm();
    notify("prac.created", { name: record.display_name });
  });
}

export function initPractitionerList() {
  ctx.refreshers.set("practitioners", async () => {
    await loadPractitioners();
    renderPractitioners();
    if (ctx.me.role === "admin") await refreshAccounts();
  });
  ctx.renderers.add(renderPractitioners);
}

export function initAdmin() {
  $("institution-form").addEventListener("submit", createInstitution);
  $("department-form").addEventListener("submit", createDepartment);
  $("account-form").addEventListener("submit", createAccount);
  $("account-role").addEventListener("change", renderAccountScope);
  $("account-institution").addEventListener("change", renderAccountScope);
  $("practitioner-form").addEventListener("submit", createPractitioner);
  $("practitioner-user").addEventListener("change", renderPractitionerForm);
  ctx.refreshers.set("organisation", async () => {
    await loadOrganisation();
    renderOrganisation();
  });
  ctx.refreshers.set("accounts", async () => {
    await loadOrganisation();
    renderOrganisation();
    await refreshAccounts();
  });
  initPractitionerList();
  ctx.renderers.add(renderOrganisation);
  ctx.renderers.add(renderAccounts);
  ctx.renderers.add(renderPractitionerForm);
  renderOrganisation();
}
