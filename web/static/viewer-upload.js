// Upload of DICOM files and folders from the viewer into the room's visit (STOW-RS,
// docs/imaging.md): the doctor of a visit's room picks files or a whole folder; each file goes
// as its own STOW-RS request (multipart/related; type="application/dicom") whose body the
// browser streams from the disk (a Blob of the part's header, the file and the closing
// boundary: never read into memory), so each file has its own progress bar and the total one
// counts files done. A refusal shows the error table's text for the server's code (a failed
// instance's code comes in the answer's FailedSOPSequence, TextValue (0040,A160); a refused
// request's in its {"error": {code}}). An HL7 aECG document (a .xml file) goes to the visit's
// aECG route instead and is stored as a DICOM ECG (consult/imaging/aecg.py).

import { DICOMWEB } from "./dicomweb.js";
import { hasKey, t } from "./i18n.js";

const PARALLEL = 3;
const FAILED = "00081198"; // FailedSOPSequence
const STORED = "00081199"; // ReferencedSOPSequence
const WARNING = "00081196"; // WarningReason
const TEXT = "0040A160"; // TextValue: our stable code of a refused instance
const SKIPPED = new Set(["DICOMDIR", ".DS_Store", "Thumbs.db"]);

function first(item, tag) {
  return item?.[tag]?.Value?.[0];
}

/** The outcome of one STOW-RS answer: {state: stored|duplicate|refused, code}. */
export function outcome(status, body) {
  if (status === 200 || status === 202 || status === 409) {
    const failed = body?.[FAILED]?.Value ?? [];
    if (failed.length) return { state: "refused", code: first(failed[0], TEXT) ?? "dicom_invalid" };
    const stored = body?.[STORED]?.Value ?? [];
    if (stored.length) return { state: first(stored[0], WARNING) ? "duplicate" : "stored", code: null };
  }
  return { state: "refused", code: body?.error?.code ?? (status ? "internal_error" : "network_error") };
}

/** The outcome of the aECG route's answer. */
export function aecgOutcome(status, body) {
  if (status === 201) return { state: "stored", code: null };
  if (status === 200) return { state: "duplicate", code: null };
  return { state: "refused", code: body?.error?.code ?? (status ? "internal_error" : "network_error") };
}

/** POST one file as a STOW-RS request (an aECG .xml file to the aECG route);
 * `onProgress(fraction)` while it is sent. */
export function stowFile(bearer, visitId, file, onProgress) {
  const visit = `${DICOMWEB}/visits/${encodeURIComponent(visitId)}`;
  const aecg = /\.xml$/i.test(file.name);
  const boundary = `tc-${crypto.randomUUID()}`;
  const body = aecg
    ? file
    : new Blob([`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`, file, `\r\n--${boundary}--\r\n`]);
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", aecg ? `${visit}/aecg` : `${visit}/studies`);
    xhr.setRequestHeader(
      "Content-Type",
      aecg ? "application/xml" : `multipart/related; type="application/dicom"; boundary=${boundary}`,
    );
    xhr.setRequestHeader("Accept", aecg ? "application/json" : "application/dicom+json");
    xhr.setRequestHeader("Authorization", `Bearer ${bearer}`);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) onProgress(e.loaded / e.total);
    };
    xhr.onload = () => {
      let parsed = null;
      try {
        parsed = JSON.parse(xhr.responseText);
      } catch {
        parsed = null;
      }
      resolve((aecg ? aecgOutcome : outcome)(xhr.status, parsed));
    };
    xhr.onerror = () => resolve({ state: "refused", code: "network_error" });
    xhr.send(body);
  });
}

export class Uploader {
  /** `el`: {section, files, folder, total, summary, list}; `onDone(results)` after a batch. */
  constructor(el, { bearer, visitId, onDone = () => {} }) {
    this.el = el;
    this.bearer = bearer;
    this.visitId = visitId;
    this.onDone = onDone;
    this.rows = []; // {file, state, code, fraction, li, bar, text}
    this.busy = false;
    this.results = [];
    for (const input of [el.files, el.folder]) {
      input.addEventListener("change", () => {
        const files = [...input.files].filter((f) => !SKIPPED.has(f.name) && !f.name.startsWith("."));
        input.value = "";
        this.upload(files);
      });
    }
  }

  show(allowed) {
    this.el.section.hidden = !allowed;
  }

  async upload(files) {
    if (this.busy || files.length === 0) return;
    this.busy = true;
    this.el.list.textContent = "";
    this.rows = files.map((file) => this.row(file));
    this.el.total.max = files.length;
    this.el.total.value = 0;
    this.el.total.hidden = false;
    this.render();
    let next = 0;
    const worker = async () => {
      while (next < this.rows.length) {
        const row = this.rows[next++];
        row.state = "sending";
        this.renderRow(row);
        const result = await stowFile(this.bearer, this.visitId, row.file, (f) => {
          row.fraction = f;
          this.renderRow(row);
        });
        Object.assign(row, result, { fraction: 1 });
        this.renderRow(row);
        this.render();
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, this.rows.length) }, worker));
    this.busy = false;
    this.results = this.rows.map((r) => ({ name: r.file.name, state: r.state, code: r.code }));
    this.render();
    this.onDone(this.results);
  }

  row(file) {
    const li = document.createElement("li");
    li.className = "upload-item";
    const name = document.createElement("span");
    name.className = "upload-name";
    name.textContent = file.webkitRelativePath || file.name;
    const bar = document.createElement("progress");
    bar.setAttribute("aria-label", name.textContent);
    bar.max = 1;
    bar.value = 0;
    const text = document.createElement("span");
    text.className = "upload-state";
    li.append(name, bar, text);
    this.el.list.appendChild(li);
    const row = { file, state: "waiting", code: null, fraction: 0, li, bar, text };
    this.renderRow(row);
    return row;
  }

  renderRow(row) {
    row.bar.value = row.fraction;
    row.li.dataset.state = row.state;
    if (row.state === "refused") {
      row.text.textContent = hasKey(`error.${row.code}`) ? t(`error.${row.code}`) : `${t("error.prefix")}: ${row.code}`;
    } else if (row.state === "sending") {
      row.text.textContent = t("upload.sending", { percent: Math.round(row.fraction * 100) });
    } else {
      row.text.textContent = t(`upload.${row.state}`);
    }
  }

  /** The total bar and the summary line (also on a language change). */
  render() {
    const done = this.rows.filter((r) => ["stored", "duplicate", "refused"].includes(r.state));
    this.el.total.value = done.length;
    const count = (state) => this.rows.filter((r) => r.state === state).length;
    this.el.summary.textContent = this.rows.length
      ? this.busy
        ? t("upload.progress", { done: done.length, total: this.rows.length })
        : t("upload.summary", { stored: count("stored"), duplicate: count("duplicate"), refused: count("refused") })
      : "";
    for (const row of this.rows) this.renderRow(row);
  }
}
