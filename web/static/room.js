// Consult room: local preview, one tile per remote participant, mute and leave.
//
// Speaks the protocol in docs/signaling.md over socket.io. Two peer connections per session
// (LiveKit style): "publish", where this page offers its camera and microphone, and "subscribe",
// where the server offers everyone else's tracks and this page answers. A session is one
// socket.io connection; after a drop socket.io reconnects by itself and a fresh session joins,
// publishes and subscribes again on new peer connections.
//
// When the media path dies but the socket lives (`media_lost` from the server, a peer connection
// that failed, or new connections that do not come up in time), only the media is rebuilt: new
// peer connections on the same socket and the same join, no reload. A server too busy to take
// us (`server_busy`) is retried with a countdown.
//
// For tests, `window.__tc` exposes the state, the participants and the current peer connections.

import { io } from "/vendor/socket.io/socket.io.esm.min.js";
import { applyI18n, hasKey, initLanguageToggle, onLanguageChange, t } from "./i18n.js";
import { ChatPanel } from "./chat.js";

const ACK_TIMEOUT_MS = 10_000;
// Wait this long for ICE gathering before sending an offer or answer, so that the candidates
// travel inside the SDP; candidates found later are forwarded with `ice_candidate`.
const ICE_GATHER_TIMEOUT_MS = 2_000;
// Camera video goes out as simulcast, lowest layer first (the server reads the order of
// a=simulcast as low to high): each subscriber gets the best layer its network carries, and a
// poor network costs that subscriber resolution, not the picture. Chromium sends at most two
// layers below 960x540 (it drops the highest ones), so a VGA camera gets two.
function simulcastEncodings(track) {
  const height = track.getSettings?.().height ?? 0;
  if (height >= 540) {
    return [
      { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 },
      { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 },
      { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
    ];
  }
  if (height >= 240) {
    return [
      { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 250_000 },
      { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 600_000 },
    ];
  }
  return null; // too small to split
}
// New peer connections after a lost path must be up within this long (per attempt, growing),
// else they are thrown away and made again: one that started while the path was still dead
// may otherwise sit in ICE checks for half a minute after the path is back.
const MEDIA_CONNECT_TIMEOUT_MS = [2_000, 2_000, 3_000, 4_500, 6_000, 8_000];
// The first connections of a join get longer.
const FIRST_CONNECT_TIMEOUT_MS = 12_000;
// Retries of a join refused with `server_busy` (ms, then +0-1 s of jitter so pages spread).
const BUSY_RETRY_MS = [3_000, 5_000, 8_000, 12_000, 15_000];
// Connection quality from getStats, per tile, every QUALITY_INTERVAL_MS.
const QUALITY_INTERVAL_MS = 1_000;
const POOR_LOSS = 0.05; // fraction of packets lost over the last interval
const POOR_RTT_S = 0.4;
const POOR_FPS = 10;

// Hook for ICE servers (STUN/TURN). Empty until the server provides them: when the join ack
// carries `ice_servers` (RTCIceServer[]), peer connections made after it use that list.
const DEFAULT_ICE_SERVERS = [];
let iceServers = DEFAULT_ICE_SERVERS;

function peerConnectionConfig() {
  return { iceServers, bundlePolicy: "max-bundle", rtcpMuxPolicy: "require" };
}

/** Wall-clock milliseconds with sub-millisecond precision, comparable across pages. */
function now() {
  return performance.timeOrigin + performance.now();
}

// ---------------------------------------------------------------------------------------------
// Page state, mirrored into window.__tc for tests.

const STATES = [
  "init",
  "requesting_media",
  "connecting",
  "joining",
  "joined",
  "reconnecting",
  "media_reconnecting",
  "busy",
  "leaving",
  "left",
  "closed",
  "replaced",
  "room_left",
  "error",
];

const tc = {
  state: "init",
  participants: [],
  self: null,
  pcs: { publish: null, subscribe: null },
  errors: [],
  mediaError: null,
  timings: { joined: null, firstFrame: {} },
  mediaRestarts: [], // {reason, at}
  mediaBack: [], // times at which rebuilt connections came up
  quality: {}, // participant id (or "self") -> {level, loss, rtt, fps}
  busy: null, // {attempt, retryAt} while a join waits for a busy server
  callStartedAt: null,
};
window.__tc = tc;

const el = {
  status: document.getElementById("status"),
  error: document.getElementById("error"),
  mediaError: document.getElementById("media-error"),
  tiles: document.getElementById("tiles"),
  remoteEmpty: document.getElementById("remote-empty"),
  localVideo: document.getElementById("local-video"),
  localPlaceholder: document.getElementById("local-placeholder"),
  localName: document.getElementById("local-name"),
  localFlags: document.getElementById("local-flags"),
  micButton: document.getElementById("mic-button"),
  camButton: document.getElementById("cam-button"),
  leaveButton: document.getElementById("leave-button"),
  leftPanel: document.getElementById("left-panel"),
  leftMessage: document.getElementById("left-message"),
  rejoin: document.getElementById("rejoin"),
  enableSound: document.getElementById("enable-sound"),
  langToggle: document.getElementById("lang-toggle"),
  recordingBadge: document.getElementById("recording-badge"),
  callTimer: document.getElementById("call-timer"),
  localQuality: document.getElementById("local-quality"),
};

let localStream = null;
const muted = { audio: false, video: false };
let lastError = null; // {code, message} shown in the error line until the next successful join
let socket = null;
let session = null;
let ended = false; // left or closed: no more reconnects
const tiles = new Map(); // participant id -> RemoteTile
const pausedVideo = new Set(); // participant ids whose video the server paused for our network
let busyTimer = null;
let busyAttempt = 0;

function setState(next) {
  if (!STATES.includes(next)) throw new Error(`unknown state ${next}`);
  if (tc.state === next) return;
  console.info(`[tc] state ${tc.state} -> ${next}`);
  tc.state = next;
  renderStatus();
  renderControls();
}

// ---------------------------------------------------------------------------------------------
// Errors

class SignalError extends Error {
  constructor(code, message, event = null) {
    super(`${event ?? "signal"}: ${code}: ${message}`);
    this.code = code;
    this.serverMessage = message;
  }
}

/** Thrown by `Session.check()` when a session was replaced while a step awaited. */
class SessionClosed extends Error {}

function errorText(code) {
  // every code of the table (/errors.js) has its text; never a raw code or English-only text
  return hasKey(`error.${code}`) ? t(`error.${code}`) : t("error.unknown");
}

function reportError(err) {
  if (err instanceof SessionClosed) return;
  const code = err instanceof SignalError ? err.code : "unknown";
  const message = err instanceof SignalError ? err.serverMessage : String(err?.message ?? err);
  console.warn("[tc] error", code, message, err);
  lastError = { code, message };
  tc.errors.push({ code, message, at: now() });
  renderError();
}

function clearError() {
  lastError = null;
  renderError();
}

// ---------------------------------------------------------------------------------------------
// Signaling requests

/** Emit `event` and wait for its ack; resolve with the ack on `ok`, throw SignalError otherwise.
 * Refuses to emit while disconnected: socket.io would buffer the event and deliver it on the
 * next connection, where it belongs to no session. */
async function request(event, payload) {
  if (!socket?.connected) throw new SignalError("timeout", "not connected", event);
  let reply;
  try {
    reply = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload);
  } catch {
    throw new SignalError("timeout", `no ack for ${event}`, event);
  }
  if (!reply || reply.ok !== true) {
    const error = reply?.error ?? {};
    throw new SignalError(error.code ?? "unknown", error.message ?? "", event);
  }
  return reply;
}

function waitForIceGathering(pc, timeoutMs = ICE_GATHER_TIMEOUT_MS) {
  // Nothing to gather when the description has no media section (e.g. an empty subscribe offer).
  if (pc.iceGatheringState === "complete" || pc.getTransceivers().every((tr) => tr.mid === null)) {
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", onChange);
      resolve();
    };
    const onChange = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", onChange);
  });
}

/** Forwards this side's late ICE candidates of one peer connection.
 *
 * Candidates gathered before the SDP is sent are inside it. Those found afterwards (gathering
 * took longer than ICE_GATHER_TIMEOUT_MS) are queued until the server has the description,
 * then sent with `ice_candidate`; `null` marks the end. */
class Trickle {
  constructor(target, pc) {
    this.target = target;
    this.phase = "gathering"; // gathering -> sent -> ready
    this.pending = [];
    pc.addEventListener("icecandidate", (event) => this.onCandidate(event.candidate));
  }

  onCandidate(candidate) {
    if (this.phase === "gathering") return;
    const payload = candidate
      ? {
          candidate: candidate.candidate,
          sdpMid: candidate.sdpMid,
          sdpMLineIndex: candidate.sdpMLineIndex,
        }
      : null;
    if (this.phase === "sent") this.pending.push(payload);
    else this.send(payload);
  }

  /** The local description is being sent now; later candidates must be forwarded. */
  markSent() {
    if (this.phase === "gathering") this.phase = "sent";
  }

  /** The server has our description: flush what was queued. */
  markReady() {
    if (this.phase !== "sent") return;
    this.phase = "ready";
    for (const payload of this.pending.splice(0)) this.send(payload);
  }

  send(candidate) {
    request("ice_candidate", { target: this.target, candidate }).catch(reportError);
  }
}

// ---------------------------------------------------------------------------------------------
// Session: one join on one socket.io connection, with its two peer connections.

class Session {
  constructor() {
    this.closed = false;
    this.publishPc = null;
    this.subscribePc = null;
    this.subscribeTrickle = null;
    this.tracks = new Map(); // subscribe mid -> {mid, participant_id, kind, active}
    this.offerChain = Promise.resolve(); // subscribe offers are applied one at a time
    this.joined = false; // the join this session's media belongs to was acknowledged
    this.attempt = 0; // how many media rebuilds in a row came before this one
    this.watchdog = null;
  }

  /** Rebuild the media if these connections are not all up within `ms`. */
  armWatchdog(ms) {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      if (this.closed || session !== this || this.mediaConnected()) return;
      console.info("[tc] connections not up in", ms, "ms");
      restartMedia("timeout", true);
    }, ms);
  }

  /** Every connection under negotiation is connected. One with no description yet (a subscribe
   * connection with nothing to receive, a page without camera or microphone) waits for nothing. */
  mediaConnected() {
    return [this.publishPc, this.subscribePc]
      .filter((pc) => pc && (pc.localDescription || pc.remoteDescription))
      .every((pc) => pc.connectionState === "connected");
  }

  /** Call after every await: a replaced session must not touch the page or the server. */
  check() {
    if (this.closed) throw new SessionClosed();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.watchdog);
    for (const pc of [this.publishPc, this.subscribePc]) pc?.close();
    if (tc.pcs.publish === this.publishPc) tc.pcs.publish = null;
    if (tc.pcs.subscribe === this.subscribePc) tc.pcs.subscribe = null;
    this.publishPc = null;
    this.subscribePc = null;
    this.tracks.clear();
    syncRemoteMedia();
  }

  watchConnection(pc, name) {
    pc.addEventListener("connectionstatechange", () => {
      console.info(`[tc] ${name} connection ${pc.connectionState}`);
      if (this.closed || session !== this) return;
      if (pc.connectionState === "failed") {
        // Our side saw the path die first: the server closes its side too, then we rebuild.
        restartMedia(`${name}_failed`, true);
      } else if (pc.connectionState === "connected" && this.mediaConnected()) {
        // The watchdog stays armed: it checks again when it fires (a subscribe connection may
        // only now be starting its negotiation).
        if (tc.state === "media_reconnecting") {
          tc.mediaBack.push(now());
          setState("joined");
        }
      }
    });
  }

  async publish() {
    if (!localStream || localStream.getTracks().length === 0) return; // receive only
    this.check();
    const pc = new RTCPeerConnection(peerConnectionConfig());
    this.publishPc = pc;
    tc.pcs.publish = pc;
    this.watchConnection(pc, "publish");
    const trickle = new Trickle("publish", pc);
    for (const track of localStream.getTracks()) {
      const init = { direction: "sendonly", streams: [localStream] };
      const encodings = track.kind === "video" ? simulcastEncodings(track) : null;
      if (encodings) {
        try {
          pc.addTransceiver(track, { ...init, sendEncodings: encodings });
          continue;
        } catch (err) {
          console.info("[tc] simulcast refused, one layer:", err?.message); // fall back
        }
      }
      pc.addTransceiver(track, init);
    }
    await pc.setLocalDescription(await pc.createOffer());
    this.check();
    await waitForIceGathering(pc);
    this.check();
    trickle.markSent();
    const reply = await request("publish", { type: "offer", sdp: pc.localDescription.sdp });
    this.check();
    await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
    this.check();
    trickle.markReady();
  }

  async subscribe() {
    this.check();
    const pc = new RTCPeerConnection(peerConnectionConfig());
    this.subscribePc = pc;
    tc.pcs.subscribe = pc;
    this.watchConnection(pc, "subscribe");
    this.subscribeTrickle = new Trickle("subscribe", pc);
    pc.addEventListener("track", () => syncRemoteMedia());
    const reply = await request("subscribe", {});
    this.check();
    // `offer` is null while there is nothing to receive; offers then come as `subscribe_offer`.
    if (reply.offer) await this.enqueueOffer(reply.offer);
  }

  enqueueOffer(offer) {
    const step = this.offerChain.then(() => this.applyOffer(offer));
    this.offerChain = step.catch(() => {}); // one failed offer must not block the next
    return step;
  }

  async applyOffer(offer) {
    this.check();
    const pc = this.subscribePc;
    if (!pc) throw new SignalError("invalid_state", "subscribe offer before subscribe");
    // The map must be in place before setRemoteDescription: `track` events fire inside it.
    this.tracks = new Map((offer.tracks ?? []).map((track) => [track.mid, track]));
    await pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
    this.check();
    await pc.setLocalDescription(await pc.createAnswer());
    this.check();
    await waitForIceGathering(pc);
    this.check();
    syncRemoteMedia();
    this.subscribeTrickle.markSent();
    try {
      await request("subscribe_answer", {
        revision: offer.revision,
        type: "answer",
        sdp: pc.localDescription.sdp,
      });
    } catch (err) {
      // A newer offer is already on its way and will replace this one.
      if (err instanceof SignalError && err.code === "stale_answer") {
        console.info("[tc] stale subscribe answer, revision", offer.revision);
        return;
      }
      throw err;
    }
    this.check();
    this.subscribeTrickle.markReady();
  }
}

async function startSession() {
  clearTimeout(busyTimer);
  busyTimer = null;
  session?.close();
  // a new subscribe connection: nothing is paused for it yet
  pausedVideo.clear();
  for (const tile of tiles.values()) tile.videoPaused = false;
  const s = new Session();
  session = s;
  setState("joining");
  try {
    // A visit's room is named by the visit; any other room (a consultation's) by its room id.
    const reply = await request("join", visitId ? { visit: visitId } : { room: roomId });
    s.check();
    s.joined = true;
    busyAttempt = 0;
    tc.busy = null;
    if (tc.callStartedAt === null) tc.callStartedAt = Date.now();
    renderTimer();
    // ICE servers hook: the server may hand out STUN/TURN servers with the join ack.
    const offered = reply.ice_servers ?? reply.iceServers;
    iceServers = Array.isArray(offered) ? offered : DEFAULT_ICE_SERVERS;
    tc.self = reply.participant;
    tc.recording = reply.recording === true;
    el.recordingBadge.hidden = !tc.recording; // R22: everyone in the room knows it is recorded
    tc.timings = { joined: now(), firstFrame: {} };
    clearError();
    setState("joined");
    updateParticipants(reply.participants ?? []);
    chat?.onJoined(reply.participant);
    s.armWatchdog(FIRST_CONNECT_TIMEOUT_MS);
    await startMedia(s);
  } catch (err) {
    if (err instanceof SignalError && BUSY_CODES.has(err.code) && !ended && session === s) {
      scheduleBusyRetry(err);
      return;
    }
    reportError(err);
    if (!(err instanceof SessionClosed) && tc.state === "joining") setState("error");
  }
}

/** Publish and subscribe on the session's new peer connections. */
async function startMedia(s) {
  const results = await Promise.allSettled([s.publish(), s.subscribe()]);
  for (const result of results) {
    if (result.status === "rejected") reportError(result.reason);
  }
  s.check();
  // The server starts everyone unmuted: tell it about mutes that survived a reconnect.
  for (const kind of ["audio", "video"]) {
    if (muted[kind] && hasLocalTrack(kind)) await request("mute", { kind, muted: true });
  }
}

/** The media path died (the server said `media_lost`, a connection failed, or new ones did not
 * come up in time): new peer connections on the same socket and join. `tellServer`: the server
 * does not know yet, and closes its side first (`restart_media`). */
async function restartMedia(reason, tellServer) {
  const old = session;
  if (ended || !old || !old.joined || !socket?.connected) return;
  console.info("[tc] media restart:", reason);
  tc.mediaRestarts.push({ reason, at: now() });
  old.close();
  const s = new Session();
  s.joined = true;
  s.attempt = reason === "timeout" ? old.attempt + 1 : 0;
  session = s;
  setState("media_reconnecting");
  qualityWhileReconnecting();
  try {
    if (tellServer) {
      await request("restart_media", {});
      s.check();
    }
    s.armWatchdog(MEDIA_CONNECT_TIMEOUT_MS[Math.min(s.attempt, MEDIA_CONNECT_TIMEOUT_MS.length - 1)]);
    await startMedia(s);
  } catch (err) {
    if (err instanceof SessionClosed) return;
    console.warn("[tc] media restart failed", err);
    // The watchdog tries again; a dead socket is handled by socket.io's own reconnect.
    if (!s.closed) s.armWatchdog(MEDIA_CONNECT_TIMEOUT_MS[0]);
  }
}

const BUSY_CODES = new Set(["server_busy", "media_unavailable"]);

/** The server is too busy to take us: say so and join again after a growing pause. */
function scheduleBusyRetry(err) {
  session?.close();
  session = null;
  const delay = BUSY_RETRY_MS[Math.min(busyAttempt, BUSY_RETRY_MS.length - 1)] + Math.random() * 1000;
  busyAttempt += 1;
  tc.busy = { attempt: busyAttempt, code: err.code, retryAt: Date.now() + delay };
  tc.errors.push({ code: err.code, message: err.serverMessage, at: now() });
  console.info("[tc] server busy; retry in", Math.round(delay), "ms");
  setState("busy");
  renderStatus();
  clearTimeout(busyTimer);
  busyTimer = setTimeout(() => {
    busyTimer = null;
    if (!ended && socket?.connected) startSession();
  }, delay);
}

// ---------------------------------------------------------------------------------------------
// Remote tiles

class RemoteTile {
  constructor(participant) {
    this.participant = participant;
    this.audioTrack = null;
    this.videoTrack = null;
    this.hasFrame = false;
    this.videoPaused = pausedVideo.has(participant.id); // for this page's poor network

    this.root = document.createElement("article");
    this.root.className = "tile tile-remote";
    this.media = document.createElement("div");
    this.media.className = "tile-media";
    this.video = document.createElement("video");
    this.video.autoplay = true;
    this.video.muted = true; // sound plays from the <audio> element; muted video always autoplays
    this.video.playsInline = true;
    this.placeholder = document.createElement("div");
    this.placeholder.className = "tile-placeholder";
    this.audio = document.createElement("audio");
    this.audio.autoplay = true;
    this.reconnecting = document.createElement("div");
    this.reconnecting.className = "tile-reconnecting";
    this.reconnecting.setAttribute("role", "status");
    this.media.append(this.video, this.placeholder, this.reconnecting, this.audio);

    const label = document.createElement("div");
    label.className = "tile-label";
    const who = document.createElement("span");
    this.nameEl = document.createElement("span");
    this.nameEl.className = "tile-name";
    this.roleEl = document.createElement("span");
    this.roleEl.className = "tile-role";
    who.append(this.nameEl, this.roleEl);
    this.flags = document.createElement("span");
    this.flags.className = "tile-flags";
    this.quality = makeQuality();
    label.append(who, this.quality, this.flags);

    this.root.append(this.media, label);
    el.tiles.append(this.root);
    this.render();
  }

  get id() {
    return this.participant.id;
  }

  update(participant) {
    this.participant = participant;
    this.render();
  }

  setMedia({ audio, video }) {
    if (video !== this.videoTrack) {
      this.videoTrack = video;
      this.hasFrame = false;
      this.video.srcObject = video ? new MediaStream([video]) : null;
      if (video) {
        this.watchFirstFrame(this.video.srcObject);
        this.video.play().catch(() => {}); // muted: only fails when the element is torn down
      }
      this.render();
    }
    if (audio !== this.audioTrack) {
      this.audioTrack = audio;
      this.audio.srcObject = audio ? new MediaStream([audio]) : null;
      if (audio) playAudio(this.audio);
    }
  }

  watchFirstFrame(stream) {
    const mark = () => {
      if (this.video.srcObject !== stream || this.hasFrame) return;
      this.hasFrame = true;
      if (!(this.id in tc.timings.firstFrame)) tc.timings.firstFrame[this.id] = now();
      console.info("[tc] first frame from", this.id);
      this.render();
    };
    this.video.addEventListener("loadeddata", mark, { once: true });
    if ("requestVideoFrameCallback" in this.video) this.video.requestVideoFrameCallback(mark);
  }

  render() {
    const p = this.participant;
    const role = t(`role.${p.role}`) === `role.${p.role}` ? t("role.unknown") : t(`role.${p.role}`);
    this.root.dataset.participantId = p.id;
    this.root.dataset.role = p.role;
    this.root.setAttribute("aria-label", t("tile.aria", { name: p.name, role }));
    this.video.dataset.participantId = p.id;
    this.video.dataset.role = p.role;
    this.video.setAttribute("aria-label", t("tile.video_aria", { name: p.name }));
    this.nameEl.textContent = p.name;
    this.roleEl.textContent = role;
    renderFlags(this.flags, p.audio_muted, p.video_muted);
    const reconnecting = p.state === "reconnecting";
    this.root.dataset.state = p.state ?? "connected";
    this.reconnecting.hidden = !reconnecting;
    this.reconnecting.textContent = reconnecting ? t("tile.reconnecting") : "";
    renderQuality(this.quality, reconnecting ? "lost" : tc.quality[p.id]?.level);
    let placeholder = null;
    if (p.video_muted) placeholder = t("tile.video_muted");
    else if (this.videoPaused) placeholder = t("tile.video_paused_network");
    else if (!this.hasFrame) placeholder = t("tile.waiting_video");
    this.root.dataset.videoPaused = this.videoPaused ? "true" : "false";
    this.placeholder.hidden = placeholder === null;
    this.placeholder.textContent = placeholder ?? "";
  }

  remove() {
    this.video.srcObject = null;
    this.audio.srcObject = null;
    this.root.remove();
  }
}

function makeQuality() {
  const quality = document.createElement("span");
  quality.className = "quality";
  quality.hidden = true;
  const bars = document.createElement("span");
  bars.className = "quality-bars";
  bars.setAttribute("aria-hidden", "true");
  for (let i = 0; i < 3; i += 1) bars.append(document.createElement("i"));
  const text = document.createElement("span");
  text.className = "quality-text";
  quality.append(bars, text);
  return quality;
}

/** Show `level` ("good" | "poor" | "lost"; undefined: not measured yet) in a quality element. */
function renderQuality(container, level) {
  container.hidden = !level;
  if (!level) return;
  container.dataset.quality = level;
  container.querySelector(".quality-text").textContent = t(`quality.${level}`);
  container.setAttribute("aria-label", t("quality.aria", { quality: t(`quality.${level}`) }));
  container.title = t(`quality.${level}`);
}

function renderFlags(container, audioMuted, videoMuted) {
  const flags = [];
  if (audioMuted) flags.push(["audio", t("tile.audio_muted")]);
  if (videoMuted) flags.push(["video", t("tile.video_muted")]);
  container.replaceChildren(
    ...flags.map(([kind, text]) => {
      const flag = document.createElement("span");
      flag.className = `flag flag-${kind}`;
      flag.dataset.flag = kind;
      flag.textContent = text;
      return flag;
    }),
  );
}

const blockedAudio = new Set();

function playAudio(audio) {
  audio.play().catch((err) => {
    // Autoplay policy: sound may need one click on the page first.
    if (err?.name === "NotAllowedError") {
      blockedAudio.add(audio);
      el.enableSound.hidden = false;
    }
  });
}

el.enableSound.addEventListener("click", () => {
  for (const audio of blockedAudio) audio.play().catch(() => {});
  blockedAudio.clear();
  el.enableSound.hidden = true;
});

function updateParticipants(list) {
  tc.participants = list;
  if (!tc.self) return; // before our own join ack we cannot tell ourselves apart
  const me = list.find((p) => p.id === tc.self.id);
  if (me) tc.self = me;
  const remote = list.filter((p) => p.id !== tc.self.id);
  const ids = new Set(remote.map((p) => p.id));
  for (const [id, tile] of tiles) {
    if (!ids.has(id)) {
      tile.remove();
      tiles.delete(id);
    }
  }
  for (const participant of remote) {
    const tile = tiles.get(participant.id);
    if (tile) tile.update(participant);
    else tiles.set(participant.id, new RemoteTile(participant));
  }
  el.remoteEmpty.hidden = tiles.size > 0 || ended;
  syncRemoteMedia();
  renderLocal();
}

/** Give every tile the tracks the subscribe connection carries for it (by transceiver mid and
 * the offer's track list). Idempotent: called after offers, track events and roster changes. */
function syncRemoteMedia() {
  const wanted = new Map();
  const pc = session?.subscribePc;
  if (pc && !session.closed) {
    for (const transceiver of pc.getTransceivers()) {
      const info = transceiver.mid === null ? undefined : session.tracks.get(transceiver.mid);
      if (!info || !info.active || transceiver.currentDirection === "stopped") continue;
      const entry = wanted.get(info.participant_id) ?? { audio: null, video: null };
      entry[info.kind] = transceiver.receiver.track;
      wanted.set(info.participant_id, entry);
    }
  }
  for (const tile of tiles.values()) tile.setMedia(wanted.get(tile.id) ?? { audio: null, video: null });
}

// ---------------------------------------------------------------------------------------------
// Local media and controls

function hasLocalTrack(kind) {
  return Boolean(localStream?.getTracks().some((track) => track.kind === kind));
}

async function getMedia(constraints) {
  return navigator.mediaDevices.getUserMedia(constraints);
}

/** Ask for camera and microphone; fall back to one of them; on failure return null and leave
 * a message: the page still joins to see and hear the others. */
async function openLocalMedia() {
  if (!navigator.mediaDevices?.getUserMedia) {
    tc.mediaError = window.isSecureContext ? "failed" : "insecure";
    return null;
  }
  const video = { width: { ideal: 640 }, height: { ideal: 480 } };
  try {
    return await getMedia({ audio: true, video });
  } catch (err) {
    console.warn("[tc] getUserMedia failed", err?.name, err?.message);
    if (err?.name === "NotAllowedError" || err?.name === "SecurityError") {
      tc.mediaError = "denied";
      return null;
    }
    // One device may be missing or busy while the other works.
    try {
      const stream = await getMedia({ audio: true });
      tc.mediaError = "no_camera";
      return stream;
    } catch {
      // fall through
    }
    try {
      const stream = await getMedia({ video });
      tc.mediaError = "no_microphone";
      return stream;
    } catch {
      // fall through
    }
    if (err?.name === "NotFoundError" || err?.name === "OverconstrainedError") {
      tc.mediaError = "not_found";
    } else if (err?.name === "NotReadableError" || err?.name === "AbortError") {
      tc.mediaError = "busy";
    } else {
      tc.mediaError = "failed";
    }
    return null;
  }
}

function setMuted(kind, value) {
  if (!hasLocalTrack(kind) || ended) return;
  muted[kind] = value;
  for (const track of localStream.getTracks()) {
    if (track.kind === kind) track.enabled = !value;
  }
  renderControls();
  renderLocal();
  if (tc.state === "joined") request("mute", { kind, muted: value }).catch(reportError);
}

async function leave() {
  if (ended) return;
  setState("leaving");
  if (session && socket?.connected) {
    try {
      await request("leave", {});
    } catch (err) {
      console.warn("[tc] leave", err); // we go anyway; the server also cleans up on disconnect
    }
  }
  finish("left");
}

/** Left or room closed: close everything and stop reconnecting. */
function finish(state, messageKey = `${state}.message`) {
  if (ended) return;
  ended = true;
  clearTimeout(busyTimer);
  clearInterval(qualityTimer);
  clearInterval(clockTimer);
  session?.close();
  session = null;
  socket?.disconnect();
  for (const tile of tiles.values()) tile.remove();
  tiles.clear();
  for (const track of localStream?.getTracks() ?? []) track.stop();
  el.localVideo.srcObject = null;
  el.leftMessage.dataset.i18n = messageKey;
  applyI18n(el.leftPanel);
  el.leftPanel.hidden = false;
  el.remoteEmpty.hidden = true;
  el.enableSound.hidden = true;
  document.getElementById("room").hidden = true;
  document.getElementById("controls").hidden = true;
  setState(state);
  el.rejoin.focus();
}

// ---------------------------------------------------------------------------------------------
// Rendering of the fixed parts

function renderStatus() {
  el.status.dataset.state = tc.state;
  // Not in the room yet: "waiting for the other side" would be the wrong thing to say.
  el.remoteEmpty.hidden = tiles.size > 0 || ended || !["joined", "media_reconnecting"].includes(tc.state);
  if (tc.state === "busy" && tc.busy) {
    const seconds = Math.max(0, Math.ceil((tc.busy.retryAt - Date.now()) / 1000));
    el.status.textContent = t("state.busy", { seconds });
  } else {
    el.status.textContent = t(`state.${tc.state}`);
  }
}

/** The call timer: time since this page first joined (a reconnect does not reset it). */
function renderTimer() {
  if (tc.callStartedAt === null || ended) {
    el.callTimer.hidden = true;
    return;
  }
  const total = Math.max(0, Math.floor((Date.now() - tc.callStartedAt) / 1000));
  const h = Math.floor(total / 3600);
  const mm = String(Math.floor((total % 3600) / 60)).padStart(2, "0");
  const ss = String(total % 60).padStart(2, "0");
  const time = h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
  el.callTimer.hidden = false;
  el.callTimer.querySelector(".call-timer-time").textContent = time;
  el.callTimer.setAttribute("aria-label", t("timer.aria", { time }));
}

function renderAllTiles() {
  for (const tile of tiles.values()) tile.render();
}

// ---------------------------------------------------------------------------------------------
// Connection quality, from getStats of the current peer connections

let qualityTimer = null;
let clockTimer = null;
let lastInbound = new Map(); // inbound-rtp id -> {packetsReceived, packetsLost, framesDecoded, at}
let lastOutbound = null;

function selectedRtt(stats) {
  let rtt = null;
  stats.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) {
      const pair = stats.get(s.selectedCandidatePairId);
      if (pair && typeof pair.currentRoundTripTime === "number") rtt = pair.currentRoundTripTime;
    }
  });
  return rtt;
}

/** good / poor / lost from what arrived over the last interval. `expectsPackets`: the sender is
 * not muted, so silence means a dead path rather than a muted microphone. */
function judge({ packets, lost, rtt, fps, expectsPackets, expectsVideo }) {
  if (expectsPackets && packets === 0) return "lost";
  const loss = packets + lost > 0 ? lost / (packets + lost) : 0;
  if (loss > POOR_LOSS || (rtt !== null && rtt > POOR_RTT_S)) return "poor";
  if (expectsVideo && fps !== null && fps < POOR_FPS) return "poor";
  return "good";
}

/** Our own media is being rebuilt: our signal is lost, the others' is unknown until it is back. */
function qualityWhileReconnecting() {
  tc.quality = { self: { level: "lost" } };
  lastInbound = new Map();
  lastOutbound = null;
  renderQuality(el.localQuality, "lost");
  renderAllTiles();
}

async function measureQuality() {
  const s = session;
  if (!s || s.closed || ended) return;
  if (tc.state === "media_reconnecting") {
    qualityWhileReconnecting();
    return;
  }
  const at = performance.now();
  // Remote tiles: what arrives for each on the subscribe connection.
  if (s.subscribePc && s.subscribePc.connectionState !== "new") {
    const stats = await s.subscribePc.getStats();
    if (s.closed) return;
    const rtt = selectedRtt(stats);
    const byTrack = new Map();
    const seen = new Map();
    stats.forEach((r) => {
      if (r.type === "inbound-rtp") byTrack.set(r.trackIdentifier, r);
    });
    for (const tile of tiles.values()) {
      const p = tile.participant;
      let packets = 0;
      let lost = 0;
      let fps = null;
      let measured = false; // a previous sample of at least one of its streams to compare with
      for (const track of [tile.audioTrack, tile.videoTrack]) {
        const r = track ? byTrack.get(track.id) : undefined;
        if (!r) continue;
        const prev = lastInbound.get(r.id);
        seen.set(r.id, {
          packetsReceived: r.packetsReceived ?? 0,
          packetsLost: r.packetsLost ?? 0,
          framesDecoded: r.framesDecoded ?? 0,
          at,
        });
        if (!prev) continue;
        measured = true;
        packets += (r.packetsReceived ?? 0) - prev.packetsReceived;
        lost += Math.max(0, (r.packetsLost ?? 0) - prev.packetsLost);
        if (r.kind === "video") fps = (((r.framesDecoded ?? 0) - prev.framesDecoded) * 1000) / (at - prev.at);
      }
      if (!measured) continue;
      const expectsVideo = !p.video_muted && tile.videoTrack !== null;
      const expectsPackets = (!p.audio_muted && tile.audioTrack !== null) || expectsVideo;
      const level = judge({ packets, lost, rtt, fps, expectsPackets, expectsVideo });
      tc.quality[p.id] = { level, packets, lost, rtt, fps };
    }
    lastInbound = seen;
  }
  // This page's own sending: the server's reports on the publish connection.
  if (s.publishPc && s.publishPc.connectionState !== "new") {
    const stats = await s.publishPc.getStats();
    if (s.closed) return;
    let packets = 0;
    let fraction = 0;
    let rtt = selectedRtt(stats);
    stats.forEach((r) => {
      if (r.type === "outbound-rtp") packets += r.packetsSent ?? 0;
      if (r.type === "remote-inbound-rtp") {
        fraction = Math.max(fraction, r.fractionLost ?? 0);
        if (typeof r.roundTripTime === "number") rtt = Math.max(rtt ?? 0, r.roundTripTime);
      }
    });
    const sent = lastOutbound === null || packets < lastOutbound ? null : packets - lastOutbound;
    lastOutbound = packets;
    let level = fraction > POOR_LOSS || (rtt !== null && rtt > POOR_RTT_S) ? "poor" : "good";
    if (s.publishPc.connectionState !== "connected" || sent === 0) level = "lost";
    tc.quality.self = { level, loss: fraction, rtt };
  }
  renderQuality(el.localQuality, tc.quality.self?.level);
  renderAllTiles();
}

function renderError() {
  el.error.hidden = lastError === null;
  if (lastError) {
    const text = errorText(lastError.code);
    el.error.textContent = `${t("error.prefix")}：${text}`;
    el.error.dataset.code = lastError.code;
  }
}

function renderMediaError() {
  el.mediaError.hidden = tc.mediaError === null;
  if (tc.mediaError) el.mediaError.textContent = t(`media.${tc.mediaError}`);
}

function renderControls() {
  const active = !ended;
  for (const [button, kind, muteKey, unmuteKey] of [
    [el.micButton, "audio", "button.mic_mute", "button.mic_unmute"],
    [el.camButton, "video", "button.cam_mute", "button.cam_unmute"],
  ]) {
    button.disabled = !active || !hasLocalTrack(kind);
    button.dataset.muted = String(muted[kind]);
    button.querySelector(".btn-text").textContent = t(muted[kind] ? unmuteKey : muteKey);
  }
  el.leaveButton.disabled = !active || tc.state === "leaving";
}

function renderLocal() {
  const role = tc.self ? t(`role.${tc.self.role}`) : null;
  el.localName.textContent = role ? t("tile.you_with_role", { role }) : t("tile.you");
  if (tc.self) document.getElementById("local-tile").dataset.role = tc.self.role;
  renderFlags(el.localFlags, muted.audio && hasLocalTrack("audio"), muted.video || !hasLocalTrack("video"));
  el.localPlaceholder.hidden = hasLocalTrack("video") && !muted.video;
}

function renderAll() {
  applyI18n();
  renderStatus();
  renderTimer();
  renderQuality(el.localQuality, tc.quality.self?.level);
  renderError();
  renderMediaError();
  renderControls();
  renderLocal();
  for (const tile of tiles.values()) tile.render();
}

// ---------------------------------------------------------------------------------------------
// Start

const params = new URLSearchParams(window.location.search);
const visitId = params.get("visit");
const roomId = params.get("room");
const token = params.get("token");
// A text-and-image visit (R1): no camera, no microphone, no getUserMedia at all.
const textOnly = params.get("mode") === "text";
let chat = null;

function connect() {
  socket = io(window.location.origin, {
    path: "/socket.io/",
    auth: { token },
    transports: ["websocket"],
    autoConnect: false,
  });

  socket.on("connect", () => {
    if (ended) return;
    console.info("[tc] socket connected", socket.id);
    startSession();
  });

  socket.on("disconnect", (reason) => {
    console.info("[tc] socket disconnected:", reason);
    session?.close();
    session = null;
    if (ended || reason === "io client disconnect") return;
    if (reason === "io server disconnect") {
      // The server sent us away on purpose; socket.io does not retry this on its own.
      finish("closed");
      return;
    }
    setState("reconnecting");
  });

  socket.on("connect_error", (err) => {
    const data = err?.data;
    if (data?.code) {
      // Refused by the server (token or visit): socket.io does not retry; neither do we.
      reportError(new SignalError(data.code, data.message ?? "", "connect"));
      setState("error");
    } else {
      console.warn("[tc] connect_error", err?.message);
      reportError(new SignalError("connect_failed", err?.message ?? ""));
    }
  });

  socket.on("participants", (payload) => updateParticipants(payload?.participants ?? []));
  socket.on("chat_message", (message) => chat?.onMessage(message));

  socket.on("video_paused", (payload) => {
    const id = payload?.participant;
    if (typeof id !== "string") return;
    if (payload.paused) pausedVideo.add(id);
    else pausedVideo.delete(id);
    const tile = tiles.get(id);
    if (tile) {
      tile.videoPaused = Boolean(payload.paused);
      tile.render();
    }
  });

  socket.on("subscribe_offer", (offer) => {
    const s = session;
    if (!s) return;
    s.enqueueOffer(offer).catch(reportError);
  });

  // The visit left the room (sent back, ended, referred, cancelled) or this account's access was
  // revoked: the server took us out and disconnects us. Go where the reason leads.
  socket.on("room_left", (payload) => {
    const reason = payload?.reason ?? "ended";
    console.info("[tc] room left:", reason);
    tc.leftReason = reason;
    el.leftMessage.dataset.reason = reason;
    finish("room_left", `room_left.${reason}`);
    const embedded = window.parent !== window;
    if (embedded) {
      // The doctor's queue page holds this room in a frame: it reads its queue again.
      window.parent.postMessage({ type: "room_left", reason, visit: visitId }, window.location.origin);
      return;
    }
    if (reason === "revoked") {
      window.location.assign("/signin?expired=1");
    } else if (tc.self?.role === "patient") {
      const query = new URLSearchParams({ visit: visitId, left: reason });
      window.location.assign(`/waiting?${query}`);
    } else if (tc.self?.role === "doctor") {
      window.location.assign("/queue");
    }
  });

  socket.on("media_lost", (payload) => {
    // The server closed our connections: their path went silent or failed. Make new ones.
    console.info("[tc] media lost:", payload?.transport, payload?.reason, payload?.silent_ms);
    restartMedia(`lost_${payload?.reason ?? "unknown"}`, false);
  });

  socket.on("room_closed", (payload) => {
    console.info("[tc] room closed:", payload?.reason);
    session?.close();
    session = null;
    if (payload?.reason === "media_worker_failed" && !ended) {
      // The process carrying the room's media died; the socket is still up: join again, and
      // the server opens the room on a live worker.
      setState("reconnecting");
      startSession();
      return;
    }
    // "replaced": the same participant opened the visit in another window, which took over.
    finish(payload?.reason === "replaced" ? "replaced" : "closed");
  });

  socket.connect();
}

// Test hook: drop the connection as a network fault would; socket.io then reconnects by itself.
tc.simulateDrop = () => socket?.io.engine?.close();

async function main() {
  initLanguageToggle(el.langToggle);
  onLanguageChange((lang) => {
    el.langToggle.lang = lang === "en" ? "zh-CN" : "en";
    renderAll();
  });
  el.langToggle.lang = document.documentElement.lang === "en" ? "zh-CN" : "en";
  el.micButton.addEventListener("click", () => setMuted("audio", !muted.audio));
  el.camButton.addEventListener("click", () => setMuted("video", !muted.video));
  el.leaveButton.addEventListener("click", () => leave());
  el.rejoin.addEventListener("click", () => window.location.reload());
  window.addEventListener("pagehide", () => socket?.disconnect());
  renderAll();
  qualityTimer = setInterval(() => measureQuality().catch((err) => console.warn("[tc] stats", err)), QUALITY_INTERVAL_MS);
  clockTimer = setInterval(() => {
    renderTimer();
    if (tc.state === "busy") renderStatus();
  }, 1000);

  if (!(visitId || roomId) || !token) {
    reportError(new SignalError("link_invalid", "missing visit or token in the URL"));
    setState("error");
    return;
  }

  chat = new ChatPanel(document.getElementById("chat"), { request, visitId, token, textOnly });
  document.body.classList.toggle("text-only", textOnly);
  setState("requesting_media");
  localStream = textOnly ? null : await openLocalMedia();
  el.localVideo.srcObject = localStream;
  renderMediaError();
  renderControls();
  renderLocal();
  setState("connecting");
  connect();
}

main();
