// Sign-in with password and TOTP; TOTP enrolment for a staff account that has none yet.

import { onLanguageChange, t } from "./i18n.js";
import { api, ApiError, getSession, homeFor, saveSession } from "./api.js";
import { busy, initPage, portal, setState, showError, signOutAndLeave } from "./portal.js";

const el = {
  form: document.getElementById("signin-form"),
  username: document.getElementById("username"),
  password: document.getElementById("password"),
  totp: document.getElementById("totp"),
  submit: document.getElementById("signin-button"),
  enrol: document.getElementById("enrol"),
  enrolStart: document.getElementById("enrol-start"),
  enrolStartActions: document.getElementById("enrol-start-actions"),
  enrolSecretBox: document.getElementById("enrol-secret-box"),
  secret: document.getElementById("totp-secret"),
  uri: document.getElementById("otpauth-uri"),
  qr: document.getElementById("totp-qr"),
  enrolForm: document.getElementById("enrol-form"),
  enrolCode: document.getElementById("enrol-code"),
  enrolConfirm: document.getElementById("enrol-confirm"),
  signedIn: document.getElementById("signed-in"),
  signedInText: document.getElementById("signed-in-text"),
  signOut: document.getElementById("sign-out"),
  info: document.getElementById("info"),
};

const params = new URLSearchParams(window.location.search);

/** Where to go after signing in: a local path from ?next=, else the role's page. */
function destination(role) {
  const next = params.get("next");
  if (next && next.startsWith("/") && !next.startsWith("//") && !next.startsWith("/signin")) {
    return next;
  }
  return homeFor(role);
}

function show(section) {
  el.form.hidden = section !== "form";
  el.enrol.hidden = section !== "enrol";
  el.signedIn.hidden = section !== "signed_in";
  setState(section);
}

let infoKey = null; // the notice on show, remade in the new language after a toggle

function info(key) {
  infoKey = key;
  el.info.textContent = key ? t(key) : "";
  el.info.hidden = !key;
}

/** Draw the otpauth:// URI as a QR code (qrcode-generator from node_modules, an ES module).
 * Without the library the key and the link stay as text, so enrolment still works. */
async function drawQr(uri) {
  el.qr.replaceChildren();
  try {
    const { default: qrcode } = await import("/vendor/qrcode/qrcode.mjs");
    const code = qrcode(0, "M"); // type 0: the smallest that holds the URI
    code.addData(uri);
    code.make();
    const img = document.createElement("img");
    img.src = code.createDataURL(6, 4); // 6 px a module, the 4-module quiet zone
    img.alt = t("enrol.qr_aria");
    img.id = "totp-qr-image";
    el.qr.append(img);
    portal.qr = "shown";
  } catch (err) {
    console.warn("[portal] QR code library unavailable", err);
    portal.qr = "unavailable";
    el.qr.hidden = true;
  }
}

function renderSignedIn() {
  const me = getSession()?.me;
  if (!me) return;
  el.signedInText.textContent = t("signedin.text", { role: t(`role.${me.role}`) });
}

function finish(me) {
  const target = destination(me.role);
  if (target.startsWith("/signin")) {
    renderSignedIn();
    show("signed_in");
    return;
  }
  setState("leaving");
  window.location.assign(target);
}

async function signIn(event) {
  event.preventDefault();
  info(null);
  const body = { username: el.username.value.trim(), password: el.password.value };
  const code = el.totp.value.trim();
  if (code) body.totp_code = code;
  if (!body.username || !body.password) {
    showError(new ApiError(0, "fields_missing", ""));
    return;
  }
  await busy(el.submit, async () => {
    try {
      const result = await api("POST", "/session", body);
      saveSession({
        token: result.token,
        me: result.me,
        expires_at: result.expires_at,
        idle_timeout_s: result.idle_timeout_s,
      });
      el.password.value = "";
      el.totp.value = "";
      if (result.totp_enrolment_required) {
        show("enrol");
        el.enrolStart.focus();
        return;
      }
      finish(result.me);
    } catch (err) {
      if (err instanceof ApiError && err.code === "totp_required") el.totp.focus();
      throw err;
    }
  });
}

async function startEnrolment() {
  await busy(el.enrolStart, async () => {
    const enrolment = await api("POST", "/me/totp");
    el.secret.textContent = enrolment.secret;
    el.uri.textContent = enrolment.otpauth_uri;
    await drawQr(enrolment.otpauth_uri);
    el.enrolStartActions.hidden = true;
    el.enrolSecretBox.hidden = false;
    el.enrolCode.focus();
  });
}

async function confirmEnrolment(event) {
  event.preventDefault();
  await busy(el.enrolConfirm, async () => {
    const me = await api("POST", "/me/totp/confirm", { code: el.enrolCode.value.trim() });
    const session = getSession();
    saveSession({ ...session, me });
    info("enrol.done");
    finish(me);
  });
}

function main() {
  initPage();
  el.form.addEventListener("submit", signIn);
  el.enrolStart.addEventListener("click", startEnrolment);
  el.enrolForm.addEventListener("submit", confirmEnrolment);
  el.signOut.addEventListener("click", () => signOutAndLeave());
  onLanguageChange(() => {
    renderSignedIn();
    info(infoKey);
  });
  const session = getSession();
  if (session?.token && params.has("signed_in")) {
    renderSignedIn();
    show("signed_in");
  } else {
    show("form");
    if (params.has("expired")) info("signin.expired");
    el.username.focus();
  }
  showError(null);
}

main();
