// The image and ECG viewer page: /viewer?visit=<id>#token=<join token> (join-link.js) for a
// visit's room, /viewer?room=<room id>#token=<join token> for any room (a consultation's MDT
// room: each institution reads its own holding of a study, the server names the shared view in
// each one's UIDs), opened from the room page's "影像与心电图" link; or
// /viewer?study=<Study Instance UID> with the signed-in session alone (no room, no review): an
// exam of a remote diagnosis request opened from /consult (R14, R19). The server decides what
// the session may read (the requesting doctors the original, the invited experts the
// de-identified copy); every retrieval is audited there.
//
// It lists the room's studies (QIDO-RS with the room's join token: that visit's studies only),
// opens a series in the Cornerstone3D viewport (viewer-image.js) or an ECG on its calibrated
// grid (viewer-ecg.js), and takes part in the room's review (viewer-review.js): a doctor shares
// what they look at and everyone follows. It is its own page so that the room can embed it later
// (an iframe or the same modules); it uses the room's socket protocol, through the room's own
// signaling client (signaling.js), not its media.
//
// For tests, `window.__viewer` exposes the mode, the subject, the rendered views and figures.

import { getSession } from "./api.js";
import { DicomwebClient, TAG, dicomDate, value } from "./dicomweb.js";
import { addStrings, applyI18n, hasKey, initLanguageToggle, onLanguageChange, t } from "./i18n.js";
import { takeJoinToken } from "./join-link.js";
import { GAINS, MEDIAN_LABEL, RHYTHM_LABEL, SPEEDS, EcgViewer, calibrate } from "./viewer-ecg.js";
import { ReviewSync } from "./viewer-review.js";
import { SignalingClient } from "./signaling.js";
import { Uploader } from "./viewer-upload.js";
import { STRINGS } from "./viewer-strings.js";

addStrings(STRINGS);

const ECG_CLASSES = new Set(["1.2.840.10008.5.1.4.1.1.9.1.1", "1.2.840.10008.5.1.4.1.1.9.1.2", "1.2.840.10008.5.1.4.1.1.9.1.3"]);
const params = new URLSearchParams(window.location.search);
const visitId = params.get("visit");
const roomId = params.get("room");
const inRoom = Boolean(visitId || roomId);
const studyParam = inRoom ? null : params.get("study");
const UID = /^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/;
const token = inRoom ? takeJoinToken() : getSession()?.token ?? null;
const $ = (id) => document.getElementById(id);

const page = {
  mode: "idle", // idle | presenting | following
  subject: null, // {kind, study, series, instance}
  loaded: null, // key of what the viewport shows
  renders: [], // [{seq, at, index}] each applied remote view once drawn (tests, latency)
  errors: [],
  ready: false,
  me: null,
  pendingSeq: null,
  saved: null, // the last review_save ack (SR and presentation state UIDs)
};
page.prefetched = () => Boolean(image?.prefetched());
page.timings = () => image?.timings ?? null;
page.rendering = () => imageModule?.rendering ?? null; // "gpu" or "cpu"
page.view = () => image?.getView() ?? null;
window.__viewer = page;

const client = new DicomwebClient(token);
let image = null; // ImageViewer, once Cornerstone3D is loaded
let imageModule = null;
let ecg = null;
let review = null;
let uploader = null;

const NOT_IMAGES = new Set(["SR", "PR", "KO"]);

function showError(code) {
  page.errors.push(code);
  const el = $("error");
  el.textContent = hasKey(`error.${code}`) ? t(`error.${code}`) : `${t("error.prefix")}: ${code}`;
  el.hidden = false;
}

// --- studies ----------------------------------------------------------------------------------

async function listStudies() {
  const list = $("studies");
  list.textContent = "";
  const studies = studyParam
    ? await client.json(`/studies?StudyInstanceUID=${encodeURIComponent(studyParam)}`)
    : await client.studies();
  $("studies-status").hidden = studies.length > 0;
  if (!studies.length) $("studies-status").textContent = t("viewer.no_studies");
  for (const study of studies) {
    const studyUid = value(study, TAG.studyUid);
    const head = document.createElement("li");
    head.className = "study-head";
    head.textContent = [dicomDate(value(study, TAG.studyDate)), value(study, TAG.studyDescription)].filter(Boolean).join(" ") || studyUid.slice(-12);
    list.appendChild(head);
    const series = await client.series(studyUid);
    for (const s of series) {
      const seriesUid = value(s, TAG.seriesUid);
      const modality = value(s, TAG.modality) ?? "";
      // saved measurements (SR) and presentation states (PR) are not images to open here
      if (NOT_IMAGES.has(modality)) continue;
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "btn series-item";
      button.dataset.series = seriesUid;
      if (modality === "ECG") {
        const instances = await client.instances(studyUid, seriesUid);
        for (const [i, inst] of instances.entries()) {
          const b = button.cloneNode();
          b.dataset.instance = value(inst, TAG.instanceUid);
          b.dataset.kind = "ecg";
          b.dataset.label = "viewer.ecg_item";
          b.dataset.number = String(i + 1);
          b.addEventListener("click", () => pick({ kind: "ecg", study: studyUid, series: seriesUid, instance: b.dataset.instance }));
          const li = document.createElement("li");
          li.appendChild(b);
          list.appendChild(li);
        }
        continue;
      }
      button.dataset.kind = "image";
      button.dataset.label = "viewer.series";
      button.dataset.modality = modality;
      button.dataset.number = String(value(s, TAG.seriesNumber) ?? "");
      button.dataset.count = String(value(s, TAG.seriesInstances) ?? "");
      button.addEventListener("click", () => pick({ kind: "image", study: studyUid, series: seriesUid }));
      item.appendChild(button);
      list.appendChild(item);
    }
  }
  labelSeries();
}

function labelSeries() {
  for (const b of document.querySelectorAll(".series-item")) {
    b.textContent = t(b.dataset.label, { modality: b.dataset.modality, number: b.dataset.number, count: b.dataset.count });
  }
}

/** The local user picks something: open it; a presenter shares it at once. */
async function pick(subject) {
  if (page.mode === "following") return;
  await open(subject);
  if (page.mode === "presenting") await shareCurrent();
  renderReview();
}

async function open(subject) {
  const key = subject.kind === "ecg" ? `ecg/${subject.instance}` : `image/${subject.series}`;
  page.subject = subject;
  $("pick").hidden = true;
  if (page.loaded === key) return;
  page.loaded = null;
  if (subject.kind === "ecg") {
    $("image-panel").hidden = true;
    $("ecg-panel").hidden = false;
    const data = await client.ecg(subject.study, subject.series, subject.instance);
    ensureEcg().load(data);
    fillEcgControls();
  } else {
    $("ecg-panel").hidden = true;
    $("image-panel").hidden = false;
    const viewer = await ensureImage();
    await viewer.loadSeries(client, subject.study, subject.series);
  }
  page.loaded = key;
  updateOverlays();
}

// --- the image viewport ------------------------------------------------------------------------

let imageStarting = null;

function ensureImage() {
  imageStarting ??= startImage();
  return imageStarting;
}

async function startImage() {
  imageModule = await import("./viewer-image.js");
  await imageModule.startCornerstone(token);
  image = new imageModule.ImageViewer($("viewport"), {
    onChange: (kind) => {
      updateOverlays();
      if (kind === "annotations") {
        renderMeasurements();
        review?.sendAnnotations(image.getAnnotations());
      } else {
        review?.sendView(image.getView());
      }
    },
    onPointer: (world) => review?.sendView({ pointer: world }),
  });
  await image.open();
  const { core, tools } = await import("/vendor/viewer/cornerstone.js");
  // the figures are computed when an annotation is drawn (on a follower, after it arrived)
  let listQueued = false;
  $("viewport").addEventListener(tools.Enums.Events.ANNOTATION_RENDERED, () => {
    if (listQueued) return;
    listQueued = true;
    window.requestAnimationFrame(() => {
      listQueued = false;
      renderMeasurements();
    });
  });
  $("viewport").addEventListener(core.Enums.Events.IMAGE_RENDERED, () => {
    if (page.pendingSeq !== null) {
      page.renders.push({ seq: page.pendingSeq, at: performance.timeOrigin + performance.now(), index: image.index });
      page.pendingSeq = null;
    }
    updateOverlays();
  });
  for (const b of document.querySelectorAll("[data-tool]")) {
    b.addEventListener("click", () => {
      image.setTool(b.dataset.tool);
      for (const o of document.querySelectorAll("[data-tool]")) o.setAttribute("aria-pressed", String(o === b));
    });
  }
  $("preset").addEventListener("change", (e) => {
    image.setPreset(e.target.value);
    e.target.value = "";
  });
  $("invert").addEventListener("click", () => image.invert());
  $("reset").addEventListener("click", () => image.reset());
  $("cine").addEventListener("click", () => {
    const playing = image.toggleCine();
    $("cine").textContent = t(playing ? "tool.cine_stop" : "tool.cine");
  });
  return image;
}

function updateOverlays() {
  if (!image || !image.count) return;
  $("slice-info").textContent = t("viewer.slice", { index: image.index + 1, count: image.count });
  const wl = image.windowLevel();
  $("wl-info").textContent = wl ? t("viewer.wl", { width: Math.round(wl.width), center: Math.round(wl.center) }) : "";
}

function renderMeasurements() {
  const list = $("measure-list");
  list.textContent = "";
  const items = image ? image.measurementTexts() : [];
  if (!items.length) {
    const li = document.createElement("li");
    li.className = "muted";
    li.textContent = t("measure.none");
    list.appendChild(li);
    return;
  }
  for (const { tool, stats } of items) {
    const li = document.createElement("li");
    const parts = [];
    if (stats.length !== undefined) parts.push(`${stats.length.toFixed(1)} ${stats.unit ?? "mm"}`);
    if (stats.angle !== undefined) parts.push(`${stats.angle.toFixed(1)}°`);
    if (stats.mean !== undefined) parts.push(`${stats.mean.toFixed(1)} ${stats.modalityUnit ?? ""} ± ${Number(stats.stdDev ?? 0).toFixed(1)}`);
    if (stats.value !== undefined) parts.push(`${Number(stats.value).toFixed(0)} ${stats.modalityUnit ?? ""}`);
    if (stats.area !== undefined) parts.push(`${stats.area.toFixed(1)} ${stats.areaUnit ?? "mm²"}`);
    li.textContent = `${t(`tool.${toolKey(tool)}`)}: ${parts.join(", ")}`;
    list.appendChild(li);
  }
}

function toolKey(toolName) {
  return { Length: "length", Angle: "angle", RectangleROI: "rectangle", EllipticalROI: "ellipse", Probe: "probe" }[toolName] ?? "length";
}

// --- the ECG -----------------------------------------------------------------------------------

function ensureEcg() {
  if (ecg) return ecg;
  ecg = new EcgViewer($("ecg-scroll"), {
    onChange: () => {
      renderFigures();
      review?.sendView({ ecg: ecg.getView() });
    },
  });
  // a calibrated strip (25 mm/s: 10 s is 25 cm of paper) is often wider than the window: say
  // so, or the leads past its right edge go unseen
  const strip = $("ecg-scroll");
  let stripWidth = strip.clientWidth;
  const showMore = () => {
    if (ecg.fit && strip.clientWidth !== stripWidth) ecg.draw(); // fitted to the new width
    stripWidth = strip.clientWidth;
    $("ecg-more").hidden = strip.scrollWidth <= strip.clientWidth + 1;
    showScale();
  };
  const resized = new ResizeObserver(showMore);
  resized.observe(strip);
  resized.observe(ecg.canvas);
  $("ecg-fit").addEventListener("change", (e) => {
    ecg.setFit(e.target.checked);
    showScale();
  });
  const speed = $("ecg-speed");
  for (const v of SPEEDS) speed.add(new Option(t("ecg.speed_value", { value: v }), String(v)));
  const gain = $("ecg-gain");
  for (const v of GAINS) gain.add(new Option(t("ecg.gain_value", { value: v }), String(v)));
  speed.addEventListener("change", () => ecg.setOption("speed", Number(speed.value)));
  gain.addEventListener("change", () => ecg.setOption("gain", Number(gain.value)));
  $("ecg-layout").addEventListener("change", (e) => ecg.setOption("layout", e.target.value));
  $("ecg-filter").addEventListener("change", (e) => {
    ecg.filtered.clear();
    ecg.setOption("filter", e.target.checked);
  });
  $("ecg-group").addEventListener("change", (e) => ecg.setGroup(Number(e.target.value)));
  for (const b of document.querySelectorAll("[data-caliper]")) {
    b.addEventListener("click", () => {
      ecg.placeCaliper(b.dataset.caliper);
      $("ecg-hint").hidden = false;
    });
  }
  $("ruler-apply").addEventListener("click", () => {
    const mm = Number($("ruler-mm").value);
    try {
      if (!(mm >= 30 && mm <= 300)) throw new RangeError();
      calibrate(mm);
      ecg.draw();
      $("ruler-mm").value = "100";
    } catch {
      const el = $("error");
      el.textContent = t("ecg.calibrate_bad");
      el.hidden = false;
    }
  });
  return ecg;
}

const ECG_GROUP_KEYS = [
  [RHYTHM_LABEL, "ecg.group_rhythm"],
  [MEDIAN_LABEL, "ecg.group_median"],
];

function fillEcgControls() {
  const group = $("ecg-group");
  group.textContent = "";
  ecg.ecg.groups.forEach((g, i) => {
    const option = new Option(g.label || String(i + 1), String(i));
    // the waveform kinds a device labels in its own words (RHYTHM, MEDIAN) are named in the
    // page's language; any other label stays the device's
    const key = ECG_GROUP_KEYS.find(([pattern]) => pattern.test(g.label ?? ""))?.[1];
    if (key) {
      option.dataset.i18n = key;
      option.textContent = t(key);
      option.title = g.label;
    }
    group.add(option);
  });
  syncEcgControls();
  const device = $("ecg-device");
  device.textContent = "";
  for (const m of ecg.ecg.measurements) {
    const row = device.insertRow();
    const name = row.insertCell();
    // the measurements SCP-ECG names are ours to name in the page's language (data-i18n
    // follows the language toggle); any other keeps the device's own words
    const key = `ecg.code.${m.code}`;
    if (m.code && hasKey(key)) {
      name.dataset.i18n = key;
      name.textContent = t(key);
      name.title = m.name;
    } else {
      name.textContent = m.name;
    }
    const value = row.insertCell();
    if (m.unit === "ms" && Number(m.value) === 0) {
      // no heart has a 0 ms interval: devices store 0 for one they did not measure
      value.dataset.i18n = "ecg.device_zero";
      value.textContent = t("ecg.device_zero");
      value.dataset.i18nTitle = "ecg.device_zero_title";
      value.title = t("ecg.device_zero_title");
    } else {
      value.textContent = m.unit === "deg" ? `${m.value}°` : `${m.value} ${m.unit}`;
    }
  }
  const statements = $("ecg-statements");
  statements.textContent = "";
  for (const s of ecg.ecg.statements) {
    const li = document.createElement("li");
    li.textContent = s;
    statements.appendChild(li);
  }
  renderFigures();
}

/** Say so when the paper is drawn smaller than calibrated ("fit width"), with what a small
 * square still stands for. */
function showScale() {
  const note = $("ecg-scaled");
  const scale = ecg?.ecg ? ecg.scale : 1;
  note.hidden = scale > 0.995;
  if (note.hidden) return;
  const { speed, gain } = ecg.state;
  note.textContent = t("ecg.scaled", {
    percent: Math.round(scale * 100),
    ms: Math.round(1000 / speed),
    mv: 1 / gain,
  });
}

function syncEcgControls() {
  if (!ecg?.ecg) return;
  $("ecg-speed").value = String(ecg.state.speed);
  $("ecg-gain").value = String(ecg.state.gain);
  $("ecg-layout").value = ecg.state.layout;
  $("ecg-group").value = String(ecg.state.group);
  $("ecg-filter").checked = ecg.state.filter;
}

function renderFigures() {
  $("ecg-hint").hidden = !ecg?.placing;
  const table = $("ecg-figures");
  table.textContent = "";
  const f = ecg.figures();
  const rows = [
    ["RR", f.RR, "ms"],
    [t("ecg.hr"), f.HR, "/min"],
    ["PR", f.PR, "ms"],
    ["QRS", f.QRS, "ms"],
    ["QT", f.QT, "ms"],
    [t("ecg.qtcb"), f.QTcB, "ms"],
    [t("ecg.qtcf"), f.QTcF, "ms"],
  ];
  for (const [name, v, unit] of rows) {
    if (v === undefined) continue;
    const row = table.insertRow();
    row.insertCell().textContent = name;
    row.insertCell().textContent = `${Math.round(v)} ${unit}`;
  }
  page.figures = f;
  showScale(); // a change of speed or gain changes what a small square stands for
}

// --- review together ---------------------------------------------------------------------------

function nameOf(id) {
  return review?.state?.members.find((m) => m.id === id)?.name ?? t("role.unknown");
}

function renderReview() {
  const state = review?.state;
  const status = $("review-status");
  status.dataset.mode = page.mode;
  status.textContent =
    page.mode === "presenting"
      ? t("review.presenting")
      : page.mode === "following"
        ? t("review.following", { name: nameOf(state.presenter) })
        : t("review.idle");
  // who may present: the server says (a visit's doctor; a consultation's inviter and invitees)
  const presents = (m) => m.presents ?? m.role === "doctor";
  const isDoctor = review?.state?.members.some((m) => m.id === page.me && presents(m));
  $("review-share").hidden = !(isDoctor && page.mode !== "following" && page.subject && page.mode !== "presenting");
  $("review-stop").hidden = page.mode !== "presenting";
  $("review-save").hidden = page.mode !== "presenting" || !page.subject;
  // the doctor of a visit's room uploads into the visit (a consultation's exams come from /consult)
  uploader?.show(Boolean(visitId && isDoctor));
  const others = (state?.members ?? []).filter((m) => m.id !== page.me && presents(m));
  $("review-handover-box").hidden = page.mode !== "presenting" || others.length === 0;
  const select = $("review-handover");
  select.textContent = "";
  for (const m of others) select.add(new Option(m.name, m.id));
  // a follower's view is the presenter's; what only changes how this screen draws it
  // (.local: "fit width") stays the reader's own
  const shared = ".toolbar .btn, .toolbar select, .toolbar input:not(.local), .series-item";
  for (const b of document.querySelectorAll(shared)) {
    b.disabled = page.mode === "following";
  }
}

/** The presenter stores the measurements into the study (DICOM SR + presentation state). */
async function saveMeasurements() {
  const button = $("review-save");
  button.disabled = true;
  $("review-saved").hidden = true;
  try {
    const payload =
      page.subject?.kind === "ecg" ? { calipers: ecg.getView()?.calipers ?? [] } : { annotations: image.getAnnotations() };
    const ack = await review.call("review_save", payload);
    page.saved = ack.saved;
    const key = page.subject?.kind === "ecg" ? "review.saved_ecg" : "review.saved";
    $("review-saved").textContent = t(key, { count: ack.saved.measurements });
    $("review-saved").hidden = false;
  } catch (err) {
    showError(err.code ?? "internal_error");
  } finally {
    button.disabled = false;
  }
}

async function shareCurrent() {
  const state = await review.share(page.subject);
  applyState(state);
  if (page.subject.kind === "ecg") review.sendView({ ecg: ecg.getView() });
  else {
    review.sendView(image.getView());
    review.sendAnnotations(image.getAnnotations());
  }
}

/** A whole state: who presents what. Followers load the subject and land on the view. */
async function applyState(state) {
  const presenting = state.presenter && state.presenter === page.me;
  page.mode = presenting ? "presenting" : state.presenter ? "following" : "idle";
  image?.setInteractive(page.mode !== "following");
  if (ecg) ecg.interactive = page.mode !== "following";
  renderReview();
  // something is shared that this participant holds no copy of (its side of a consultation)
  if (state.unavailable && page.mode === "following") showError("review_unavailable");
  if (page.mode !== "following" || !state.subject) return;
  await open(state.subject);
  await applyRemoteView(state.view ?? {}, state.seq);
  if (state.subject.kind === "image") {
    image.setAnnotations(state.annotations ?? []);
    renderMeasurements();
  }
  renderReview();
}

async function applyRemoteView(view, seq) {
  if (!page.loaded) return;
  if (page.subject.kind === "ecg") {
    if (view.ecg) {
      ecg.applyView(view.ecg);
      syncEcgControls();
      renderFigures();
      page.renders.push({ seq, at: performance.timeOrigin + performance.now() });
    }
    return;
  }
  page.pendingSeq = seq;
  await image.applyView(view);
  updateOverlays();
}

function startUpload() {
  if (!visitId) return;
  uploader = new Uploader(
    {
      section: $("upload"),
      files: $("upload-files"),
      folder: $("upload-folder"),
      total: $("upload-total"),
      summary: $("upload-summary"),
      list: $("upload-list"),
    },
    {
      bearer: token,
      visitId,
      onDone: (results) => {
        page.uploaded = results;
        if (results.some((r) => r.state === "stored")) {
          listStudies().catch((err) => showError(err.code ?? "internal_error"));
        }
      },
    },
  );
}

function connect() {
  const client = new SignalingClient({ token });
  review = new ReviewSync(client, {
    onState: (state) => applyState(state).catch((err) => showError(err.code ?? "internal_error")),
    onView: (message) => {
      if (page.mode === "following") applyRemoteView(message.view, message.seq);
    },
    onAnnotations: (message) => {
      if (page.mode === "following" && page.subject?.kind === "image" && page.loaded) {
        image.setAnnotations(message.annotations);
        renderMeasurements();
      }
    },
    onError: (code) => showError(code),
  });
  client.on("connect", async () => {
    try {
      const ack = await review.call("review_join");
      review.state = ack.state;
      review.me = ack.you;
      page.me = ack.you;
      await applyState(ack.state);
      page.ready = true;
    } catch (err) {
      showError(err.code ?? "internal_error");
    }
  });
  client.on("disconnect", () => {
    $("review-status").textContent = t("review.offline");
  });
  client.on("connect_error", (err) => {
    if (err?.data?.code) showError(err.data.code);
  });
  client.connect();
  $("review-share").addEventListener("click", () => shareCurrent().catch((err) => showError(err.code)));
  $("review-stop").addEventListener("click", () =>
    review.stop().then(applyState).catch((err) => showError(err.code)),
  );
  $("review-save").addEventListener("click", saveMeasurements);
  $("review-handover-apply").addEventListener("click", () =>
    review.handover($("review-handover").value).then(applyState).catch((err) => showError(err.code)),
  );
}

// --- start -------------------------------------------------------------------------------------

applyI18n();
initLanguageToggle($("lang-toggle"));
onLanguageChange(() => {
  uploader?.render();
  labelSeries();
  renderReview();
  updateOverlays();
  if (ecg?.ecg) renderFigures();
  if (image) renderMeasurements();
});
if (studyParam && token && UID.test(studyParam)) {
  // one exam, with the session: no room, so no review; the first series (or ECG) opens
  $("review-bar").hidden = true;
  page.ready = true;
  listStudies()
    .then(() => document.querySelector(".series-item")?.click())
    .catch((err) => showError(err.code ?? "internal_error"));
  ensureImage().catch((err) => showError(err.code ?? "internal_error"));
} else if (!inRoom || !token) {
  showError("link_invalid");
} else {
  startUpload();
  renderReview();
  listStudies().catch((err) => showError(err.code ?? "internal_error"));
  connect();
  // Cornerstone3D (4.5 MB) and its decode worker load while the user picks a series
  ensureImage().catch((err) => showError(err.code ?? "internal_error"));
}
