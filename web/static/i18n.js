// The one dictionary of every page, Simplified Chinese (default) and English. This module holds
// the words all pages share (title, language toggle, roles); each page adds its own with
// `addStrings()` (room-strings.js, portal-strings.js, console-strings.js, booking-strings.js).
//
// Static text in the HTML carries `data-i18n="key"` (text content), `data-i18n-aria="key"`
// (aria-label) or `data-i18n-title="key"` (title); `applyI18n()` fills them in. Text built in
// JavaScript calls `t(key, params)` and re-renders on `onLanguageChange()`.
// The choice is kept in localStorage so it survives a reload and a rejoin.
// Error texts ("error.<code>") come from the server's one table of error codes
// (consult/error_table.py, served as /errors.js): no page shows a raw code.

import { ERROR_STRINGS } from "/errors.js";

const STORAGE_KEY = "teleconsult.lang";
export const DEFAULT_LANG = "zh-CN";

const DICTIONARIES = {
  "zh-CN": {
    "app.title": "远程会诊",
    "lang.toggle": "English",
    "lang.toggle_aria": "English（切换到英文界面）",
    "role.doctor": "医生",
    "role.patient": "患者",
    "role.unknown": "参与者",
    "error.prefix": "错误",
    "role.guardian": "监护人",
    "role.companion": "陪同人",
    "role.interpreter": "翻译",
  },
  en: {
    "app.title": "Teleconsultation",
    "lang.toggle": "中文",
    "lang.toggle_aria": "中文 (switch to Chinese)",
    "role.doctor": "Doctor",
    "role.patient": "Patient",
    "role.unknown": "Participant",
    "error.prefix": "Error",
    "role.guardian": "Guardian",
    "role.companion": "Companion",
    "role.interpreter": "Interpreter",
  },
};

for (const [lang, strings] of Object.entries(ERROR_STRINGS)) Object.assign(DICTIONARIES[lang], strings);

export const LANGUAGES = Object.keys(DICTIONARIES);

/** Add the strings of another page (same shape as DICTIONARIES: language -> key -> text).
 * Call it before `applyI18n()`; keys already present are replaced. */
export function addStrings(dictionaries) {
  for (const [lang, strings] of Object.entries(dictionaries)) {
    if (lang in DICTIONARIES) Object.assign(DICTIONARIES[lang], strings);
  }
}

function readStoredLang() {
  try {
    const stored = window.localStorage.getItem(STORAGE_KEY);
    return stored && stored in DICTIONARIES ? stored : DEFAULT_LANG;
  } catch {
    // localStorage can be unavailable (privacy mode, sandboxed frame): keep the default.
    return DEFAULT_LANG;
  }
}

let currentLang = readStoredLang();
const listeners = new Set();

export function getLanguage() {
  return currentLang;
}

/** Translate `key`, replacing `{name}` placeholders from `params`. Unknown keys fall back to
 * the default language, then to the key itself, so a missing string is visible but harmless. */
export function t(key, params = {}) {
  const text = DICTIONARIES[currentLang][key] ?? DICTIONARIES[DEFAULT_LANG][key] ?? key;
  return text.replace(/\{(\w+)\}/g, (match, name) => (name in params ? String(params[name]) : match));
}

/** True when `key` exists, used to tell a known error code from an unknown one. */
export function hasKey(key) {
  return key in DICTIONARIES[DEFAULT_LANG];
}

/** Fill every element under `root` that carries data-i18n / data-i18n-aria / data-i18n-title. */
export function applyI18n(root = document) {
  document.documentElement.lang = currentLang;
  for (const el of root.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n);
  }
  for (const el of root.querySelectorAll("[data-i18n-aria]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nAria));
  }
  for (const el of root.querySelectorAll("[data-i18n-title]")) {
    el.setAttribute("title", t(el.dataset.i18nTitle));
  }
}

export function setLanguage(lang) {
  if (!(lang in DICTIONARIES) || lang === currentLang) return;
  currentLang = lang;
  try {
    window.localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // Not persisted; the switch still applies to this page.
  }
  applyI18n();
  for (const listener of listeners) listener(lang);
}

/** Call `listener(lang)` after every language switch (to re-render dynamic text). */
export function onLanguageChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** Wire a button that flips between Chinese and English. Its own label comes from
 * `lang.toggle` (the name of the *other* language, written in that language). */
export function initLanguageToggle(button) {
  button.dataset.i18n = "lang.toggle";
  button.dataset.i18nAria = "lang.toggle_aria";
  button.addEventListener("click", () => {
    setLanguage(currentLang === "zh-CN" ? "en" : "zh-CN");
  });
  applyI18n();
}
