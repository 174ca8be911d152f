// The staff console (/console): administrators set up institutions, departments, accounts and
// practitioners; operators and nurses register patients, record prior diagnoses, keep doctors'
// schedules and book visits; a doctor reads one patient's record (/console?patient=ID); operators
// and administrators see the network providers' health.
// Every change goes through the REST API (docs/api.md); the API decides who may do what.

import { addStrings, onLanguageChange, t } from "./i18n.js";
import { CONSOLE_STRINGS } from "./console-strings.js";
import { api, requireSession } from "./api.js";
import { initPage, portal, setState, showError, watchIdle } from "./portal.js";
import { h } from "./console-dom.js";
import { initAdmin, initPractitionerList } from "./console-admin.js";
import { initPatients, openRecord } from "./console-patients.js";
import { initSchedule } from "./console-schedule.js";
import { initNetwork } from "./console-network.js";

addStrings(CONSOLE_STRINGS);

const TABS = [
  { id: "organisation", roles: ["admin"] },
  { id: "accounts", roles: ["admin"] },
  { id: "practitioners", roles: ["admin", "operator"] },
  { id: "patients", roles: ["operator", "nurse"] },
  { id: "schedule", roles: ["operator"] },
  { id: "bookings", roles: ["operator", "nurse"] },
  { id: "record", roles: ["doctor"] },
  { id: "network", roles: ["admin", "operator"] },
];

/** What the console's parts share: who is signed in, the organisation, the doctors. */
export const ctx = {
  me: null,
  institutions: [],
  departments: new Map(), // institution id -> [department]
  practitioners: [],
  refreshers: new Map(), // tab id -> async function that reloads it
  renderers: new Set(), // re-render dynamic text after a language switch
};
portal.console = ctx;

const info = document.getElementById("info");
let infoKey = null;
let infoParams = {};

/** Show a success notice (remade in the new language after a toggle); `null` hides it. */
export function notify(key, params = {}) {
  infoKey = key;
  infoParams = params;
  info.textContent = key ? t(key, params) : "";
  info.hidden = !key;
  if (key) info.scrollIntoView({ block: "nearest" });
}

/** Every department of the institutions known, as {value, label} for a select. */
export function departmentOptions(filter = () => true) {
  const items = [];
  for (const institution of ctx.institutions) {
    for (const department of ctx.departments.get(institution.id) ?? []) {
      if (!filter(department)) continue;
      items.push({ value: department.id, label: `${institution.name} · ${department.name}` });
    }
  }
  return items;
}

export function departmentName(id) {
  for (const list of ctx.departments.values()) {
    const found = list.find((d) => d.id === id);
    if (found) return found.name;
  }
  return "";
}

export async function loadOrganisation() {
  const { institutions } = await api("GET", "/institutions");
  ctx.institutions = institutions;
  await Promise.all(
    institutions.map(async (institution) => {
      const { departments } = await api("GET", `/institutions/${institution.id}/departments`);
      ctx.departments.set(institution.id, departments);
    }),
  );
}

export async function loadPractitioners() {
  const verifiedOnly = ctx.me.role === "nurse";
  const { practitioners } = await api("GET", `/practitioners?verified_only=${verifiedOnly}`);
  const mine = ctx.me.role === "operator" ? new Set(ctx.me.department_ids) : null;
  ctx.practitioners = mine ? practitioners.filter((p) => mine.has(p.department_id)) : practitioners;
}

function tabsFor(role) {
  return TABS.filter((tab) => tab.roles.includes(role));
}

async function showTab(id) {
  for (const section of document.querySelectorAll(".console-tab")) {
    section.hidden = section.id !== `tab-${id}`;
  }
  for (const link of document.querySelectorAll("#console-nav button")) {
    if (link.dataset.tab === id) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  portal.tab = id;
  const refresh = ctx.refreshers.get(id);
  if (refresh) {
    try {
      await refresh();
    } catch (err) {
      showError(err);
    }
  }
  setState(`tab:${id}`);
}

function buildNav(tabs) {
  const nav = document.getElementById("console-nav");
  nav.replaceChildren(
    ...tabs.map((tab) =>
      h("button", {
        type: "button",
        class: "btn nav-tab",
        dataset: { tab: tab.id, i18n: `console.tab.${tab.id}` },
        text: t(`console.tab.${tab.id}`),
        onclick: () => {
          notify(null);
          showError(null);
          showTab(tab.id);
        },
      }),
    ),
  );
  nav.hidden = tabs.length < 2;
}

async function main() {
  initPage();
  const session = requireSession(["admin", "operator", "nurse", "doctor"]);
  if (!session) return;
  watchIdle();
  ctx.me = session.me;
  onLanguageChange(() => {
    if (infoKey) notify(infoKey, infoParams);
    for (const render of ctx.renderers) render();
  });
  for (const form of document.querySelectorAll("[data-roles]:not(.console-tab)")) {
    form.hidden = !form.dataset.roles.split(" ").includes(ctx.me.role);
  }
  const tabs = tabsFor(ctx.me.role);
  try {
    if (ctx.me.role !== "doctor") {
      await loadOrganisation();
      await loadPractitioners();
    }
  } catch (err) {
    showError(err);
  }
  if (ctx.me.role === "admin") initAdmin();
  if (ctx.me.role === "operator") initPractitionerList();
  if (ctx.me.role === "operator" || ctx.me.role === "nurse") {
    initPatients();
    initSchedule();
  }
  if (ctx.me.role === "admin" || ctx.me.role === "operator") initNetwork();
  // The tabs appear once their parts are wired, so a click never beats the page's own start.
  buildNav(tabs);
  const params = new URLSearchParams(window.location.search);
  if (ctx.me.role === "doctor") {
    await showTab("record");
    await openRecord(params.get("patient"));
  } else {
    const wanted = params.get("tab");
    await showTab(tabs.some((tab) => tab.id === wanted) ? wanted : tabs[0].id);
  }
}

main();
