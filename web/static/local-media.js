// This page's own camera and microphone: open them (with the devices chosen in the waiting room's
// device check), fall back to one of them, mute and unmute, stop. Also the device lists and the
// chosen devices, kept in localStorage so the room opens what the check showed.

const DEVICES_KEY = "teleconsult.devices";
const VIDEO = { width: { ideal: 640 }, height: { ideal: 480 } };

/** {camera, microphone, speaker} device ids chosen in the device check (each may be absent). */
export function preferredDevices() {
  try {
    const stored = JSON.parse(window.localStorage.getItem(DEVICES_KEY) ?? "{}");
    return stored && typeof stored === "object" ? stored : {};
  } catch {
    return {};
  }
}

export function savePreferredDevices(devices) {
  try {
    window.localStorage.setItem(DEVICES_KEY, JSON.stringify({ ...preferredDevices(), ...devices }));
  } catch {
    // not kept; the room then opens the default devices
  }
}

/** {camera: [], microphone: [], speaker: []} of {id, label}; labels are empty before permission. */
export async function listDevices() {
  const out = { camera: [], microphone: [], speaker: [] };
  if (!navigator.mediaDevices?.enumerateDevices) return out;
  const kinds = { videoinput: "camera", audioinput: "microphone", audiooutput: "speaker" };
  for (const device of await navigator.mediaDevices.enumerateDevices()) {
    const kind = kinds[device.kind];
    if (kind && device.deviceId) out[kind].push({ id: device.deviceId, label: device.label });
  }
  return out;
}

/** Constraints for the chosen devices; `ideal`, so a device unplugged since falls back. */
export function constraints({ audio = true, video = true } = {}, devices = preferredDevices()) {
  const pick = (base, id) => (id ? { ...(base === true ? {} : base), deviceId: { ideal: id } } : base);
  return {
    audio: audio ? pick(true, devices.microphone) : false,
    video: video ? pick(VIDEO, devices.camera) : false,
  };
}

/** Route an <audio>/<video> element's sound to the chosen speaker, where the browser can. */
export async function useSpeaker(element, id = preferredDevices().speaker) {
  if (!id || typeof element.setSinkId !== "function") return;
  try {
    await element.setSinkId(id);
  } catch (err) {
    console.info("[tc] speaker not set:", err?.name);
  }
}

export class LocalMedia {
  constructor() {
    this.stream = null;
    this.muted = { audio: false, video: false };
    /** Why camera or microphone are missing: null or a key of `media.*` in the strings. */
    this.error = null;
  }

  hasTrack(kind) {
    return Boolean(this.stream?.getTracks().some((track) => track.kind === kind));
  }

  /** Ask for camera and microphone; fall back to one of them; on failure keep no stream and
   * leave `error`: the page still joins to see and hear the others. */
  async open() {
    this.stream = await this.acquire();
    return this.stream;
  }

  async acquire() {
    if (!navigator.mediaDevices?.getUserMedia) {
      this.error = window.isSecureContext ? "failed" : "insecure";
      return null;
    }
    const get = (c) => navigator.mediaDevices.getUserMedia(c);
    try {
      return await get(constraints());
    } catch (err) {
      console.warn("[tc] getUserMedia failed", err?.name, err?.message);
      if (err?.name === "NotAllowedError" || err?.name === "SecurityError") {
        this.error = "denied";
        return null;
      }
      // One device may be missing or busy while the other works.
      try {
        const stream = await get(constraints({ video: false }));
        this.error = "no_camera";
        return stream;
      } catch {
        // fall through
      }
      try {
        const stream = await get(constraints({ audio: false }));
        this.error = "no_microphone";
        return stream;
      } catch {
        // fall through
      }
      if (err?.name === "NotFoundError" || err?.name === "OverconstrainedError") {
        this.error = "not_found";
      } else if (err?.name === "NotReadableError" || err?.name === "AbortError") {
        this.error = "busy";
      } else {
        this.error = "failed";
      }
      return null;
    }
  }

  /** Mute or unmute `kind`; false when there is no such track. */
  setMuted(kind, value) {
    if (!this.hasTrack(kind)) return false;
    this.muted[kind] = value;
    for (const track of this.stream.getTracks()) {
      if (track.kind === kind) track.enabled = !value;
    }
    return true;
  }

  stop() {
    for (const track of this.stream?.getTracks() ?? []) track.stop();
  }
}
