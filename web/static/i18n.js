// Strings of the consult room in Simplified Chinese (default) and English. Other pages add
// their own with `addStrings()` (web/static/portal-strings.js).
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
    "lang.toggle_aria": "切换到英文界面",

    "role.doctor": "医生",
    "role.patient": "患者",
    "role.unknown": "参与者",
    "tile.you": "我",
    "room.recording": "录制中",
    "tile.you_with_role": "我（{role}）",
    "tile.audio_muted": "已静音",
    "tile.video_muted": "摄像头已关闭",
    "tile.waiting_video": "正在连接视频…",
    "tile.video_paused_network": "对方网络不佳，视频已暂停",
    "tile.aria": "{name}，{role}",
    "tile.video_aria": "{name}的视频",
    "local.video_aria": "我的摄像头画面",
    "local.no_camera": "没有摄像头画面",

    "remote.empty": "正在等待对方进入会诊…",

    "button.mic_mute": "关闭麦克风",
    "button.mic_unmute": "打开麦克风",
    "button.cam_mute": "关闭摄像头",
    "button.cam_unmute": "打开摄像头",
    "button.leave": "离开会诊",
    "button.leave_aria": "离开会诊，结束通话",
    "button.rejoin": "重新进入",
    "button.enable_sound": "点击这里开启声音",
    "controls.aria": "通话控制",

    "state.init": "正在准备…",
    "state.requesting_media": "请在浏览器弹窗中允许使用摄像头和麦克风",
    "state.connecting": "正在连接服务器…",
    "state.joining": "正在进入会诊…",
    "state.joined": "已进入会诊",
    "state.reconnecting": "网络中断，正在重新连接…",
    "state.leaving": "正在离开…",
    "state.left": "您已离开会诊",
    "state.closed": "会诊已结束",
    "state.replaced": "已在其他窗口进入",
    "state.room_left": "已离开诊室",
    "state.error": "出错了",

    "left.message": "您已离开会诊。可以关闭此页面。",
    "closed.message": "会诊已结束。可以关闭此页面。",
    "replaced.message": "您已在其他窗口或设备进入本次会诊，此页面已断开。",
    "room_left.sent_back": "医生已请您回到候诊室，正在返回…",
    "room_left.ended": "医生已结束本次就诊。",
    "room_left.referred": "医生已建议您到线下医院就诊，正在返回查看转诊信息…",
    "room_left.cancelled": "本次就诊已取消。",
    "room_left.revoked": "您的登录已失效（已退出、修改密码或账号停用），请重新登录。",

    "media.denied": "没有获得摄像头和麦克风的使用权限。对方将看不到、也听不到您，但您仍可以看到和听到对方。请在浏览器地址栏旁允许使用后重新进入。",
    "media.not_found": "没有找到摄像头或麦克风。您仍可以看到和听到对方。",
    "media.busy": "摄像头或麦克风正被其他程序占用。请关闭其他程序后重新进入。您仍可以看到和听到对方。",
    "media.insecure": "此页面不是安全连接（https），浏览器不允许使用摄像头和麦克风。您仍可以看到和听到对方。",
    "media.failed": "无法打开摄像头或麦克风。您仍可以看到和听到对方。",
    "media.no_camera": "没有找到可用的摄像头，对方只能听到您的声音。",
    "media.no_microphone": "没有找到可用的麦克风，对方只能看到您的画面。",

    "error.prefix": "错误",

    "state.media_reconnecting": "网络不稳定，正在恢复音视频…",
    "state.busy": "服务器繁忙，{seconds} 秒后自动重试…",
    "tile.reconnecting": "重新连接中…",
    "quality.good": "信号良好",
    "quality.poor": "信号较差",
    "quality.lost": "信号中断",
    "quality.aria": "网络质量：{quality}",
    "timer.label": "通话时长",
    "timer.aria": "通话时长 {time}",
  },
  en: {
    "app.title": "Teleconsultation",
    "lang.toggle": "中文",
    "lang.toggle_aria": "Switch to Chinese",

    "role.doctor": "Doctor",
    "role.patient": "Patient",
    "role.unknown": "Participant",
    "tile.you": "You",
    "room.recording": "Recording",
    "tile.you_with_role": "You ({role})",
    "tile.audio_muted": "Muted",
    "tile.video_muted": "Camera off",
    "tile.waiting_video": "Connecting video…",
    "tile.video_paused_network": "Poor network, video paused",
    "tile.aria": "{name}, {role}",
    "tile.video_aria": "Video of {name}",
    "local.video_aria": "My camera",
    "local.no_camera": "No camera picture",

    "remote.empty": "Waiting for the other side to join…",

    "button.mic_mute": "Mute microphone",
    "button.mic_unmute": "Unmute microphone",
    "button.cam_mute": "Turn camera off",
    "button.cam_unmute": "Turn camera on",
    "button.leave": "Leave",
    "button.leave_aria": "Leave the consultation and end the call",
    "button.rejoin": "Join again",
    "button.enable_sound": "Click here to turn on sound",
    "controls.aria": "Call controls",

    "state.init": "Getting ready…",
    "state.requesting_media": "Please allow camera and microphone in the browser prompt",
    "state.connecting": "Connecting to the server…",
    "state.joining": "Joining the consultation…",
    "state.joined": "In the consultation",
    "state.reconnecting": "Connection lost, reconnecting…",
    "state.leaving": "Leaving…",
    "state.left": "You have left the consultation",
    "state.closed": "The consultation has ended",
    "state.replaced": "Joined from another window",
    "state.room_left": "Left the room",
    "state.error": "Something went wrong",

    "left.message": "You have left the consultation. You can close this page.",
    "closed.message": "The consultation has ended. You can close this page.",
    "replaced.message": "You joined this consultation from another window or device; this page is disconnected.",
    "room_left.sent_back": "The doctor sent you back to the waiting room; returning…",
    "room_left.ended": "The doctor ended the visit.",
    "room_left.referred": "The doctor referred you to an offline visit; returning to see the referral…",
    "room_left.cancelled": "The visit was cancelled.",
    "room_left.revoked": "Your sign-in ended (signed out, password changed or account deactivated); please sign in again.",

    "media.denied": "Camera and microphone permission was not given. The others cannot see or hear you, but you can still see and hear them. Allow access next to the address bar and join again.",
    "media.not_found": "No camera or microphone was found. You can still see and hear the others.",
    "media.busy": "The camera or microphone is used by another program. Close it and join again. You can still see and hear the others.",
    "media.insecure": "This page is not on a secure (https) connection, so the browser does not allow the camera and microphone. You can still see and hear the others.",
    "media.failed": "The camera or microphone could not be opened. You can still see and hear the others.",
    "media.no_camera": "No usable camera was found; the others can only hear you.",
    "media.no_microphone": "No usable microphone was found; the others can only see you.",

    "error.prefix": "Error",

    "state.media_reconnecting": "Unstable network, restoring audio and video…",
    "state.busy": "The server is busy; retrying in {seconds} s…",
    "tile.reconnecting": "Reconnecting…",
    "quality.good": "Good signal",
    "quality.poor": "Poor signal",
    "quality.lost": "Signal lost",
    "quality.aria": "Network quality: {quality}",
    "timer.label": "Call time",
    "timer.aria": "Call time {time}",
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
