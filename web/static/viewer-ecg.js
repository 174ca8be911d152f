// The 12-lead ECG view: our /ecg JSON (leads in mV, the device's measurements and fiducial
// points) drawn on a calibrated grid, with calipers at one-sample resolution.
//
// Paper: 25 mm/s and 10 mm/mV by default (12.5 and 50 mm/s, 5 and 20 mm/mV selectable); 1 mm
// minor and 5 mm major lines; a 1 mV calibration pulse at the start of every row. A millimetre
// is `pxPerMm()` CSS pixels: 96/25.4 as CSS defines it, times the display calibration the user
// measured with a ruler (kept in localStorage), so a millimetre on screen is a millimetre.
// "Fit width" (a reader's own choice, not shared) draws the same paper smaller, as a printout
// held further away: the grid still counts 1000/speed ms and 1/gain mV a small square, only a
// millimetre on screen is no longer a millimetre.
// Layouts: 3x4 (I aVR V1 V4 / II aVL V2 V5 / III aVF V3 V6, time running on across the columns)
// plus a rhythm strip of lead II, and 12x1. Display filter 0.05-40 Hz with a 50 Hz notch,
// zero-phase (forward and backward biquads): it changes what is drawn, never the stored data.

/** How devices label a waveform group: the rhythm strips, and the median (average) beat. */
export const RHYTHM_LABEL = /rhythm|节律/i;
export const MEDIAN_LABEL = /median|average|代表/i;

export const SPEEDS = [12.5, 25, 50];
export const GAINS = [5, 10, 20];
export const LAYOUT_3X4 = [
  ["I", "aVR", "V1", "V4"],
  ["II", "aVL", "V2", "V5"],
  ["III", "aVF", "V3", "V6"],
];
export const LEADS_12 = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"];
const CALIBRATION_KEY = "teleconsult.ecg_mm_scale";
const MARGIN_MM = 10; // the calibration pulse and the lead name
const CALIPER_COLOURS = { RR: "#0b4f9c", PR: "#1b7f3b", QRS: "#8a3d00", QT: "#6a1b9a", free: "#111418" };

/** CSS pixels per millimetre on this screen (96/25.4 corrected by the user's calibration). */
export function pxPerMm() {
  let scale = 1;
  try {
    scale = Number(window.localStorage.getItem(CALIBRATION_KEY)) || 1;
  } catch {
    // no storage: the CSS millimetre
  }
  return (96 / 25.4) * scale;
}

/** Keep the calibration: a 100 mm bar measured as `measuredMm` with a ruler. */
export function calibrate(measuredMm) {
  const scale = (100 / measuredMm) * currentScale();
  if (!(scale > 0.3 && scale < 3)) throw new RangeError("calibration out of range");
  window.localStorage.setItem(CALIBRATION_KEY, String(scale));
}

function currentScale() {
  return pxPerMm() / (96 / 25.4);
}

// --- the display filter (RBJ biquads, run forward and backward) -------------------------------

function biquad(kind, f0, fs, q) {
  const w = (2 * Math.PI * f0) / fs;
  const cos = Math.cos(w);
  const alpha = Math.sin(w) / (2 * q);
  let b;
  if (kind === "lowpass") b = [(1 - cos) / 2, 1 - cos, (1 - cos) / 2];
  else if (kind === "highpass") b = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2];
  else b = [1, -2 * cos, 1]; // notch
  const a0 = 1 + alpha;
  return { b: b.map((x) => x / a0), a: [(-2 * cos) / a0, (1 - alpha) / a0] };
}

function runBiquad({ b, a }, x) {
  const y = new Float64Array(x.length);
  // start settled at the first value: a constant input gives the filter's DC gain times it
  const gain = (b[0] + b[1] + b[2]) / (1 + a[0] + a[1]);
  let x1 = x[0];
  let x2 = x[0];
  let y1 = x[0] * (Number.isFinite(gain) ? gain : 0);
  let y2 = y1;
  for (let n = 0; n < x.length; n++) {
    const v = b[0] * x[n] + b[1] * x1 + b[2] * x2 - a[0] * y1 - a[1] * y2;
    x2 = x1; x1 = x[n]; y2 = y1; y1 = v;
    y[n] = v;
  }
  return y;
}

function filtfilt(stage, x) {
  const forward = runBiquad(stage, x);
  forward.reverse();
  const back = runBiquad(stage, forward);
  return back.reverse();
}

/** 0.05-40 Hz and a 50 Hz notch, zero phase (display only). */
export function displayFilter(values, fs) {
  let x = Float64Array.from(values);
  const stages = [biquad("highpass", 0.05, fs, Math.SQRT1_2)];
  if (fs > 80) stages.push(biquad("lowpass", 40, fs, Math.SQRT1_2));
  if (fs > 100) stages.push(biquad("notch", 50, fs, 30));
  for (const stage of stages) x = filtfilt(stage, x);
  return x;
}

// --- calipers from the device's fiducial points ---------------------------------------------

function fiducialGroups(ecg) {
  const groups = new Map();
  for (const p of ecg.fiducials ?? []) {
    if (!p.samples?.length) continue;
    if (!groups.has(p.group)) groups.set(p.group, {});
    groups.get(p.group)[p.name] = p.samples[0];
  }
  return groups;
}

/** Calipers placed where the device put its fiducial points: PR, QRS and QT on the median beat
 * (or the first beat), RR between the two rhythm beats closest to the median RR. */
export function calipersFromFiducials(ecg) {
  const groups = fiducialGroups(ecg);
  const calipers = [];
  const median = ecg.groups.findIndex((g) => MEDIAN_LABEL.test(g.label));
  const beatGroup = median >= 0 ? median : 0;
  const complete = [...groups.entries()]
    .filter(([, f]) => "QRS Onset" in f && "QRS Offset" in f)
    .sort(([a], [b]) => a - b);
  const beat = complete.find(([, f]) => f["QRS Onset"] < ecg.groups[beatGroup].samples)?.[1];
  if (beat) {
    if ("P Onset" in beat) calipers.push({ kind: "PR", group: beatGroup, from: beat["P Onset"], to: beat["QRS Onset"] });
    calipers.push({ kind: "QRS", group: beatGroup, from: beat["QRS Onset"], to: beat["QRS Offset"] });
    if ("T Offset" in beat) calipers.push({ kind: "QT", group: beatGroup, from: beat["QRS Onset"], to: beat["T Offset"] });
  }
  const rhythm = ecg.groups.findIndex((g) => RHYTHM_LABEL.test(g.label));
  const onsets = complete
    .map(([, f]) => f["QRS Onset"])
    .filter((s) => rhythm >= 0 && s < ecg.groups[rhythm].samples)
    .sort((a, b) => a - b);
  const unique = onsets.filter((s, i) => i === 0 || s !== onsets[i - 1]);
  if (unique.length >= 3 && rhythm >= 0) {
    const gaps = unique.slice(1).map((s, i) => s - unique[i]);
    const sorted = [...gaps].sort((a, b) => a - b);
    const mid = sorted[Math.floor(sorted.length / 2)];
    let best = 0;
    gaps.forEach((g, i) => {
      if (Math.abs(g - mid) < Math.abs(gaps[best] - mid)) best = i;
    });
    calipers.push({ kind: "RR", group: rhythm, from: unique[best], to: unique[best + 1] });
  }
  return calipers;
}

/** Interval figures from calipers (ms at one-sample resolution), HR and QTc. */
export function caliperFigures(ecg, calipers) {
  const out = {};
  for (const c of calipers) {
    const fs = ecg.groups[c.group]?.sampling_frequency_hz;
    if (!fs) continue;
    out[c.kind === "free" ? `free_${c.from}` : c.kind] = (Math.abs(c.to - c.from) / fs) * 1000;
  }
  if (out.RR) out.HR = 60000 / out.RR;
  if (out.RR && out.QT) {
    const rr = out.RR / 1000;
    out.QTcB = out.QT / Math.sqrt(rr);
    out.QTcF = out.QT / Math.cbrt(rr);
  }
  return out;
}

// --- the view -------------------------------------------------------------------------------

export class EcgViewer {
  /** `container`: a scrollable block; `onChange()` after every local change of the view. */
  constructor(container, { onChange = () => {} } = {}) {
    this.container = container;
    this.onChange = onChange;
    this.canvas = document.createElement("canvas");
    this.canvas.className = "ecg-canvas";
    container.appendChild(this.canvas);
    this.ecg = null;
    this.filtered = new Map();
    this.state = { group: 0, offset_s: 0, speed: 25, gain: 10, layout: "3x4", filter: true, calipers: [] };
    this.interactive = true;
    this.placing = null; // a caliper kind waiting for two clicks
    this.dragging = null;
    this.applying = 0;
    this.fit = false; // this reader's: drawn to the strip's width (see setFit)
    this.px = pxPerMm(); // CSS pixels per paper millimetre as last drawn
    container.addEventListener("scroll", () => {
      const offset = container.scrollLeft / this.px / this.state.speed;
      if (Math.abs(offset - this.state.offset_s) > 1e-3) {
        this.state.offset_s = offset;
        if (!this.applying) this.onChange();
      }
    });
    this.canvas.addEventListener("pointerdown", (e) => this.pointerDown(e));
    this.canvas.addEventListener("pointermove", (e) => this.pointerMove(e));
    window.addEventListener("pointerup", () => {
      if (this.dragging) {
        this.dragging = null;
        this.onChange();
      }
    });
  }

  load(ecg) {
    this.ecg = ecg;
    this.filtered.clear();
    const rhythm = ecg.groups.findIndex((g) => RHYTHM_LABEL.test(g.label));
    this.state.group = rhythm >= 0 ? rhythm : 0;
    this.state.calipers = calipersFromFiducials(ecg);
    this.draw();
  }

  get group() {
    return this.ecg?.groups[this.state.group];
  }

  lead(name) {
    const group = this.group;
    const index = group.leads.findIndex((l) => l.name === name);
    if (index < 0) return null;
    if (!this.state.filter) return group.leads[index].values;
    const key = `${this.state.group}/${index}`;
    if (!this.filtered.has(key)) {
      this.filtered.set(key, displayFilter(group.leads[index].values, group.sampling_frequency_hz));
    }
    return this.filtered.get(key);
  }

  /** The rows to draw: [{leads: [[name, fromS, toS], ...]}]. */
  rows() {
    const group = this.group;
    const duration = group.duration_s;
    const names = new Set(group.leads.map((l) => l.name));
    const standard = LEADS_12.every((n) => names.has(n));
    if (this.state.layout === "3x4" && standard) {
      const column = duration / 4;
      const rows = LAYOUT_3X4.map((row) => row.map((name, c) => [name, c * column, (c + 1) * column]));
      rows.push([["II", 0, duration]]); // the rhythm strip
      return rows;
    }
    return group.leads.map((l) => [[l.name, 0, duration]]);
  }

  setOption(key, value) {
    this.state[key] = value;
    this.draw();
    this.onChange();
  }

  setGroup(index) {
    this.state.group = index;
    this.draw();
    this.onChange();
  }

  /** Draw the paper to the strip's width (smaller than calibrated), or at its true size. Not
   * part of the shared view: each reader's screen is its own. */
  setFit(on) {
    this.fit = Boolean(on);
    this.draw();
  }

  /** How large the paper is drawn against its calibrated size (1: a millimetre is one). */
  get scale() {
    return this.px / pxPerMm();
  }

  /** Start placing a caliper of `kind`: the next two clicks on the trace set its ends. */
  placeCaliper(kind) {
    this.placing = { kind, from: null };
  }

  xOfSample(sample) {
    const fs = this.group.sampling_frequency_hz;
    return (MARGIN_MM + (sample / fs) * this.state.speed) * this.px;
  }

  sampleOfX(x) {
    const fs = this.group.sampling_frequency_hz;
    const seconds = (x / this.px - MARGIN_MM) / this.state.speed;
    return Math.max(0, Math.min(this.group.samples - 1, Math.round(seconds * fs)));
  }

  pointerDown(event) {
    if (!this.interactive || !this.ecg) return;
    const x = event.offsetX;
    if (this.placing) {
      const sample = this.sampleOfX(x);
      if (this.placing.from === null) {
        this.placing.from = sample;
        return;
      }
      const { kind, from } = this.placing;
      this.placing = null;
      const calipers = this.state.calipers.filter((c) => kind === "free" || c.kind !== kind);
      calipers.push({ kind, group: this.state.group, from: Math.min(from, sample), to: Math.max(from, sample) });
      this.state.calipers = calipers.slice(-16);
      this.draw();
      this.onChange();
      return;
    }
    // grab the nearest caliper end within 6 px
    for (const [i, c] of this.state.calipers.entries()) {
      if (c.group !== this.state.group) continue;
      for (const end of ["from", "to"]) {
        if (Math.abs(this.xOfSample(c[end]) - x) <= 6) {
          this.dragging = { index: i, end };
          this.canvas.setPointerCapture(event.pointerId);
          return;
        }
      }
    }
  }

  pointerMove(event) {
    if (!this.dragging) return;
    const c = this.state.calipers[this.dragging.index];
    c[this.dragging.end] = this.sampleOfX(event.offsetX);
    this.draw();
  }

  getView() {
    if (!this.ecg) return null;
    return { ...this.state, calipers: this.state.calipers.map((c) => ({ ...c })) };
  }

  applyView(view) {
    if (!this.ecg) return;
    this.applying++;
    try {
      const filterChanged = view.filter !== undefined && view.filter !== this.state.filter;
      Object.assign(this.state, view, { calipers: (view.calipers ?? this.state.calipers).map((c) => ({ ...c })) });
      if (filterChanged) this.filtered.clear();
      this.draw();
      this.container.scrollLeft = this.state.offset_s * this.state.speed * this.px;
    } finally {
      this.applying--;
    }
  }

  figures() {
    return this.ecg ? caliperFigures(this.ecg, this.state.calipers) : {};
  }

  draw() {
    if (!this.ecg) return;
    const { speed, gain } = this.state;
    const rows = this.rows();
    const rowMm = Math.max(15, 3 * gain);
    const widthMm = MARGIN_MM + this.group.duration_s * speed + 5;
    const calibrated = pxPerMm();
    const room = this.container.clientWidth;
    // a pixel to spare: a fractional width past the strip's would still scroll
    this.px = this.fit && room > 1 ? Math.min(calibrated, (room - 1) / widthMm) : calibrated;
    const mm = this.px;
    // labels 3 mm high on paper, never under 10 CSS pixels (a paper drawn to fit is smaller)
    const textMm = Math.max(3, 10 / mm);
    const font = `${textMm}px sans-serif`;
    const heightMm = rows.length * rowMm + 5;
    const ratio = window.devicePixelRatio || 1;
    const canvas = this.canvas;
    canvas.style.width = `${widthMm * mm}px`;
    canvas.style.height = `${heightMm * mm}px`;
    canvas.width = Math.round(widthMm * mm * ratio);
    canvas.height = Math.round(heightMm * mm * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio * mm, 0, 0, ratio * mm, 0, 0); // draw in millimetres
    ctx.fillStyle = "#fffafa";
    ctx.fillRect(0, 0, widthMm, heightMm);
    for (let x = 0; x <= widthMm; x += 1) {
      ctx.strokeStyle = x % 5 === 0 ? "#f0a0a0" : "#fadcdc";
      ctx.lineWidth = x % 5 === 0 ? 0.15 : 0.08;
      ctx.beginPath();
      ctx.moveTo(x, 0);
      ctx.lineTo(x, heightMm);
      ctx.stroke();
    }
    for (let y = 0; y <= heightMm; y += 1) {
      ctx.strokeStyle = y % 5 === 0 ? "#f0a0a0" : "#fadcdc";
      ctx.lineWidth = y % 5 === 0 ? 0.15 : 0.08;
      ctx.beginPath();
      ctx.moveTo(0, y);
      ctx.lineTo(widthMm, y);
      ctx.stroke();
    }
    const fs = this.group.sampling_frequency_hz;
    ctx.lineJoin = "round";
    rows.forEach((row, r) => {
      const baseline = r * rowMm + rowMm * 0.6;
      // 1 mV calibration pulse, 200 ms wide
      ctx.strokeStyle = "#111418";
      ctx.lineWidth = 0.25;
      ctx.beginPath();
      ctx.moveTo(1, baseline);
      ctx.lineTo(2, baseline);
      ctx.lineTo(2, baseline - gain);
      ctx.lineTo(2 + 0.2 * speed, baseline - gain);
      ctx.lineTo(2 + 0.2 * speed, baseline);
      ctx.lineTo(MARGIN_MM - 1, baseline);
      ctx.stroke();
      for (const [name, from, to] of row) {
        const values = this.lead(name);
        if (!values) continue;
        const start = Math.floor(from * fs);
        const end = Math.min(values.length, Math.ceil(to * fs));
        ctx.strokeStyle = "#111418";
        ctx.lineWidth = 0.22;
        ctx.beginPath();
        for (let n = start; n < end; n++) {
          const x = MARGIN_MM + (n / fs) * speed;
          const y = baseline - values[n] * gain;
          if (n === start) ctx.moveTo(x, y);
          else ctx.lineTo(x, y);
        }
        ctx.stroke();
        ctx.fillStyle = "#0b4f9c";
        ctx.font = font;
        ctx.fillText(name, MARGIN_MM + from * speed + 1, r * rowMm + 1 + textMm);
      }
    });
    for (const c of this.state.calipers) {
      if (c.group !== this.state.group) continue;
      const colour = CALIPER_COLOURS[c.kind] ?? "#111418";
      ctx.strokeStyle = colour;
      ctx.fillStyle = colour;
      ctx.lineWidth = 0.3;
      const x1 = MARGIN_MM + (c.from / fs) * speed;
      const x2 = MARGIN_MM + (c.to / fs) * speed;
      for (const x of [x1, x2]) {
        ctx.beginPath();
        ctx.moveTo(x, 0);
        ctx.lineTo(x, heightMm);
        ctx.stroke();
      }
      ctx.font = font;
      ctx.fillText(`${c.kind} ${Math.round((Math.abs(c.to - c.from) / fs) * 1000)} ms`, Math.min(x1, x2) + 0.5, heightMm - 1);
    }
  }
}
