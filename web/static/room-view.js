// The consult room as a view that a page mounts: the patient's room page (room.js) mounts it
// alone, the doctor's queue (queue.js) beside the queue, with the visit's summary and actions.
//
// Speaks the protocol of docs/signaling.md through the signaling client (signaling.js); the
// peer connections of one join are a MediaSession (media-session.js). After a socket drop
// socket.io reconnects by itself (or the signaling client moves to another network provider's
// URL, docs/providers.md) and a fresh session joins, publishes and subscribes again.
// When the media path dies but the socket lives (`media_lost`, a failed peer connection, or new
// connections not up in time), only the media is rebuilt: new peer connections on the same
// socket and join, no reload. A server too busy to take us (`server_busy`) is retried with a
// countdown.
//
// The camera opens only after the server accepted the link (the join ack): a bad or expired link
// never turns it on.
//
// For tests, `window.__tc` is the mounted view's state: participants, peer connections, timings.

import { getSession } from "./api.js";
import { DoctorsOnly } from "./doctors-only.js";
import { addStrings, applyI18n, getLanguage, hasKey, onLanguageChange, t } from "./i18n.js";
import { ROOM_STRINGS } from "./room-strings.js";
import { SessionClosed, SignalError, SignalingClient, now, openUpdates } from "./signaling.js";
import { MediaSession } from "./media-session.js";
import { LocalMedia } from "./local-media.js";
import { TileGrid, renderFlags, renderQuality, roleLabel, roomRole } from "./tiles.js";
import { QualityMeter } from "./call-quality.js";
import { ChatPanel } from "./chat.js";
import { markup } from "./room-markup.js";

addStrings(ROOM_STRINGS);

// New peer connections after a lost path must be up within this long (per attempt, growing),
// else they are thrown away and made again: one that started while the path was still dead
// may otherwise sit in ICE checks for half a minute after the path is back.
const MEDIA_CONNECT_TIMEOUT_MS = [2_000, 2_000, 3_000, 4_500, 6_000, 8_000];
// The first connections of a join get longer.
const FIRST_CONNECT_TIMEOUT_MS = 12_000;
// Retries of a join refused with `server_busy` (ms, then +0-1 s of jitter so pages spread).
const BUSY_RETRY_MS = [3_000, 5_000, 8_000, 12_000, 15_000];
const BUSY_CODES = new Set(["server_busy", "media_unavailable"]);
const QUALITY_INTERVAL_MS = 1_000;

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

export class RoomView {
  /**
   * Mount a room into `root` (emptied) and join it.
   * `options`: `visitId`, `token` (the room link's), `textOnly` (R1: no camera or microphone),
   * `embedded` (inside another page: its own status and error ids, no navigation on leaving),
   * `onRoomLeft(reason)` (the visit left the room: sent back, ended, referred ...),
   * `onClosed(state)` (embedded: this page left the room itself, or was replaced or closed).
   */
  constructor(root, { visitId, roomId = null, token, textOnly = false, embedded = false, onRoomLeft = null, onClosed = null }) {
    this.root = root;
    this.visitId = visitId;
    // A visit's room is named by the visit; any other room (a consultation's) by its room id.
    this.roomId = roomId;
    this.token = token;
    this.textOnly = textOnly;
    this.embedded = embedded;
    this.onRoomLeft = onRoomLeft;
    this.onClosed = onClosed;
    this.ids = embedded ? { status: "room-status", error: "room-error" } : { status: "status", error: "error" };
    this.tc = {
      state: "init",
      participants: [],
      self: null,
      pcs: { publish: null, standby: null, subscribe: null },
      errors: [],
      mediaError: null,
      timings: { joined: null, firstFrame: {} },
      mediaRestarts: [], // {reason, at}
      resumes: [], // times at which a new socket carried on with the media (no rebuild)
      mediaBack: [], // times at which rebuilt connections came up
      quality: {}, // participant id (or "self") -> {level, loss, rtt, fps}
      busy: null, // {attempt, retryAt} while a join waits for a busy server
      subject: null, // what the room belongs to: {type: "visit" | "consultation", id} (join ack)
      patientSide: [], // a consultation room's patient's side: [{id, room_role, stepped_out}]
      callStartedAt: null,
      selfView: true,
    };
    this.tc.simulateDrop = () => this.client?.simulateDrop();
    // two providers: the publish connection per provider, the one the camera is on, its moves
    this.tc.lanes = () =>
      this.session && {
        active: this.session.activeLane,
        switches: [...this.session.laneSwitches],
        heardMsAgo: this.session.lanes.map((l) => Math.round(performance.now() - l.heardAt)),
        // heard from the server: a change of its counts after a first non-zero read
        heard: this.session.lanes.map((l) => l.heard),
        states: this.session.lanes.map((l) => l.pc.connectionState),
        // the path whose connection the page's own signal was last read from (call-quality.js)
        measured: this.session.lanes.find((l) => l.pc === this.meter.outboundPc)?.path ?? null,
      };
    // the signaling URL in use, the providers' URLs and the failovers made (signaling.js)
    this.tc.signaling = () =>
      this.client && { url: this.client.url, urls: [...this.client.urls], failovers: [...this.client.failovers] };
    window.__tc = this.tc;
    this.local = new LocalMedia();
    this.lastError = null;
    this.client = null;
    this.session = null;
    this.ended = false;
    this.busyTimer = null;
    this.busyAttempt = 0;
    this.iceServers = [];
    this.resumeKey = null; // the last join ack's: a new socket carries on with its media
    this.mediaPaths = 1;
    this.chat = null;
    this.meter = new QualityMeter(this.tc.quality);
    this.build();
  }

  build() {
    this.root.classList.add("room-view");
    this.root.innerHTML = markup(this.ids);
    const $ = (id) => this.root.querySelector(`#${id}`);
    this.el = {
      status: $(this.ids.status),
      error: $(this.ids.error),
      mediaError: $("media-error"),
      room: $("room"),
      stage: $("stage"),
      tiles: $("tiles"),
      remoteEmpty: $("remote-empty"),
      localTile: $("local-tile"),
      localVideo: $("local-video"),
      localPlaceholder: $("local-placeholder"),
      localName: $("local-name"),
      localFlags: $("local-flags"),
      localQuality: $("local-quality"),
      micButton: $("mic-button"),
      camButton: $("cam-button"),
      selfViewButton: $("selfview-button"),
      fullscreenButton: $("fullscreen-button"),
      leaveButton: $("leave-button"),
      controls: $("controls"),
      leftPanel: $("left-panel"),
      leftMessage: $("left-message"),
      rejoin: $("rejoin"),
      enableSound: $("enable-sound"),
      recordingBadge: $("recording-badge"),
      callTimer: $("call-timer"),
      visitSlot: $("room-visit-slot"),
      viewerLink: $("viewer-link"),
      chat: $("chat"),
    };
    this.doctorsOnly = new DoctorsOnly(
      {
        stepOut: $("step-out-button"),
        dialog: $("step-out-dialog"),
        confirm: $("step-out-confirm"),
        cancel: $("step-out-cancel"),
        banner: $("doctors-only"),
        bringBack: $("bring-back-button"),
      },
      { onStart: () => this.clearError(), onError: (err) => this.reportApiError(err) },
    );
    this.tiles = new TileGrid(this.el.tiles, {
      quality: (id) => this.tc.quality[id]?.level,
      onFirstFrame: (id) => {
        if (!(id in this.tc.timings.firstFrame)) this.tc.timings.firstFrame[id] = now();
      },
      onAudioBlocked: () => (this.el.enableSound.hidden = false),
    });
    this.root.classList.toggle("text-only", this.textOnly);
    this.el.micButton.addEventListener("click", () => this.setMuted("audio", !this.local.muted.audio));
    this.el.camButton.addEventListener("click", () => this.setMuted("video", !this.local.muted.video));
    this.el.selfViewButton.addEventListener("click", () => {
      this.tc.selfView = !this.tc.selfView;
      this.renderLocal();
      this.renderControls();
    });
    this.el.fullscreenButton.addEventListener("click", () => this.toggleFullscreen());
    this.el.fullscreenButton.hidden = !document.fullscreenEnabled;
    document.addEventListener("fullscreenchange", () => this.renderControls());
    this.el.leaveButton.addEventListener("click", () => this.leave());
    this.el.rejoin.addEventListener("click", () => window.location.reload());
    this.el.rejoin.hidden = this.embedded;
    this.el.enableSound.addEventListener("click", () => {
      this.tiles.unblockAudio();
      this.el.enableSound.hidden = true;
    });
    this.unlisten = onLanguageChange(() => this.renderAll());
    // no leave: a reload rejoins as the same participant on the same streams (the server
    // holds the media of a socket that closed without one; a closed tab's connections close
    // with it, which ends the hold within a second or two)
    this.onPageHide = () => this.client?.disconnect();
    window.addEventListener("pagehide", this.onPageHide);
  }

  /** The link to this room's images and ECGs (viewer.js, review together), for those who may
   * present there: a visit's doctor, a consultation's inviter and invited experts. It opens
   * the viewer in a new tab with this room's join token in the fragment (never the query: it
   * stays out of logs and Referer headers); the server decides what each may read. */
  renderViewerLink() {
    const link = this.el.viewerLink;
    const role = this.tc.self?.room_role;
    const show = !this.ended && Boolean(this.token) && ["doctor", "inviter", "invitee"].includes(role);
    link.hidden = !show;
    if (!show) {
      link.removeAttribute("href");
      return;
    }
    const where = this.roomId ? `room=${encodeURIComponent(this.roomId)}` : `visit=${encodeURIComponent(this.visitId)}`;
    link.href = `/viewer?${where}#token=${encodeURIComponent(this.token)}`;
  }

  /** Put `node` (the visit's summary and actions) at the top of the side panel. */
  setVisitPanel(node) {
    this.el.visitSlot.replaceChildren(...(node ? [node] : []));
    this.el.visitSlot.hidden = !node;
  }

  // --- state ---------------------------------------------------------------------------------

  setState(next) {
    if (!STATES.includes(next)) throw new Error(`unknown state ${next}`);
    if (this.tc.state === next) return;
    console.info(`[tc] state ${this.tc.state} -> ${next}`);
    this.tc.state = next;
    this.renderStatus();
    this.renderControls();
  }

  reportError(err) {
    if (err instanceof SessionClosed) return;
    const code = err instanceof SignalError ? err.code : "unknown";
    const message = err instanceof SignalError ? err.serverMessage : String(err?.message ?? err);
    console.warn("[tc] error", code, message, err);
    this.lastError = { code, message };
    this.tc.errors.push({ code, message, at: now() });
    this.renderError();
  }

  /** A refusal of the REST API (ApiError): its stable code's text, as a signaling error's. */
  reportApiError(err) {
    console.warn("[tc] api error", err.status, err.code);
    this.lastError = { code: err.code, message: err.serverMessage };
    this.tc.errors.push({ code: err.code, message: err.serverMessage, at: now() });
    this.renderError();
  }

  clearError() {
    this.lastError = null;
    this.renderError();
  }

  request(event, payload) {
    if (!this.client) return Promise.reject(new SignalError("timeout", "not connected", event));
    return this.client.request(event, payload);
  }

  // --- start ---------------------------------------------------------------------------------

  async start() {
    this.renderAll();
    this.qualityTimer = setInterval(
      () => this.measureQuality().catch((err) => console.warn("[tc] stats", err)),
      QUALITY_INTERVAL_MS,
    );
    this.clockTimer = setInterval(() => {
      this.renderTimer();
      if (this.tc.state === "busy") this.renderStatus();
    }, 1000);
    if (!(this.visitId || this.roomId) || !this.token) {
      this.reportError(new SignalError("link_invalid", "missing visit or token in the URL"));
      this.setState("error");
      return;
    }
    this.chat = new ChatPanel(this.el.chat, {
      request: (event, payload) => this.request(event, payload),
      token: this.token,
      textOnly: this.textOnly,
    });
    this.setState("connecting");
    this.connect();
  }

  connect() {
    const client = new SignalingClient({ token: this.token });
    this.client = client;
    client.on("connect", () => {
      if (this.ended) return;
      console.info("[tc] socket connected", client.id);
      this.startSession();
    });
    client.on("disconnect", (reason) => {
      console.info("[tc] socket disconnected:", reason);
      const deliberate = reason === "io client disconnect" || reason === "io server disconnect";
      // A network fault (or the move to another provider's signaling URL): the media goes on
      // by itself meanwhile; the next join asks to carry on with it (`resume`).
      if (deliberate || this.ended || !this.session?.mediaAlive()) {
        this.session?.close();
        this.session = null;
      }
      if (this.ended || reason === "io client disconnect") return;
      if (reason === "io server disconnect") {
        // The server sent us away on purpose; socket.io does not retry this on its own.
        this.finish("closed");
        return;
      }
      this.setState("reconnecting");
    });
    client.on("connect_error", (err) => {
      const data = err?.data;
      if (data?.code) {
        // Refused by the server (token or visit): socket.io does not retry; neither do we.
        this.reportError(new SignalError(data.code, data.message ?? "", "connect"));
        this.setState("error");
      } else {
        console.warn("[tc] connect_error", err?.message);
        this.reportError(new SignalError("connect_failed", err?.message ?? ""));
      }
    });
    client.on("participants", (payload) => {
      this.tc.patientSide = payload?.patient_side ?? [];
      this.updateParticipants(payload?.participants ?? []);
    });
    client.on("chat_message", (message) => this.chat?.onMessage(message));
    client.on("video_paused", (payload) => {
      const id = payload?.participant;
      if (typeof id === "string") this.tiles.setVideoPaused(id, Boolean(payload.paused));
    });
    client.on("subscribe_offer", (offer) => {
      this.session?.enqueueOffer(offer).catch((err) => this.reportError(err));
    });
    // The visit left the room (sent back, ended, referred, cancelled) or this account's access
    // was revoked: the server took us out and disconnects us. Go where the reason leads.
    client.on("room_left", (payload) => this.roomLeft(payload?.reason ?? "ended"));
    client.on("media_lost", (payload) => {
      // The server closed our connections: their path went silent or failed. Make new ones.
      console.info("[tc] media lost:", payload?.transport, payload?.reason, payload?.silent_ms);
      this.restartMedia(`lost_${payload?.reason ?? "unknown"}`, false);
    });
    client.on("room_closed", (payload) => {
      console.info("[tc] room closed:", payload?.reason);
      this.session?.close();
      this.session = null;
      if (payload?.reason === "media_worker_failed" && !this.ended) {
        // The process carrying the room's media died; the socket is still up: join again, and
        // the server opens the room on a live worker.
        this.setState("reconnecting");
        this.startSession();
        return;
      }
      // "replaced": the same participant opened the visit in another window, which took over.
      this.finish(payload?.reason === "replaced" ? "replaced" : "closed");
    });
    client.connect();
  }

  roomLeft(reason) {
    console.info("[tc] room left:", reason);
    this.tc.leftReason = reason;
    this.el.leftMessage.dataset.reason = reason;
    this.finish("room_left", `room_left.${reason}`);
    if (this.embedded) {
      this.onRoomLeft?.(reason);
      return;
    }
    if (reason === "revoked") {
      window.location.assign("/signin?expired=1");
    } else if (
      reason === "stepped_out" &&
      this.tc.self?.role === "patient" &&
      getSession()?.token
    ) {
      // The signed-in patient asked out of a consultation for a part among clinicians: its
      // waiting room says so, and offers the way back in once the inviter lets it.
      window.location.assign(`/waiting?${new URLSearchParams({ left: reason })}`);
    } else if (reason === "stepped_out") {
      // Asked out (a guardian, a companion, or a page with no session): wait here, and come
      // back in when the inviter lets us (pushed to the signed-in person's pages; "rejoin" too).
      this.awaitStepIn();
    } else if (["patient", "guardian"].includes(this.tc.self?.role) && this.visitId) {
      // the patient's side (a child's guardian too) waits in its waiting room, told why
      const query = new URLSearchParams({ visit: this.visitId, left: reason });
      window.location.assign(`/waiting?${query}`);
    } else if (this.tc.self?.role === "doctor") {
      window.location.assign("/queue");
    }
  }

  awaitStepIn() {
    const session = getSession();
    if (!session?.token || !this.roomId) return;
    const updates = openUpdates(session.token);
    updates.on("room_changed", (change) => {
      if (change?.room !== this.roomId || change?.state !== "admitted") return;
      updates.close();
      window.location.reload();
    });
  }

  newSession() {
    const s = new MediaSession(this.client, {
      iceServers: () => this.iceServers,
      mediaPaths: () => this.mediaPaths,
      localStream: () => this.local.stream,
      onPeerConnection: (name, pc, old) => {
        if (pc) this.tc.pcs[name] = pc;
        else if (this.tc.pcs[name] === old) this.tc.pcs[name] = null;
      },
      onTracks: () => this.syncRemoteMedia(),
      onFailed: (name) => {
        if (this.session === s) this.restartMedia(`${name}_failed`, true);
      },
      onConnected: () => {
        if (this.session === s && this.tc.state === "media_reconnecting") {
          this.tc.mediaBack.push(now());
          this.setState("joined");
        }
      },
      onWatchdog: () => {
        if (this.session === s) this.restartMedia("timeout", true);
      },
      onError: (err) => this.reportError(err),
    });
    return s;
  }

  async startSession() {
    clearTimeout(this.busyTimer);
    this.busyTimer = null;
    // The media of the previous join, still up after its socket dropped: carried on if the
    // server still has it (`resume`), else rebuilt.
    const kept = this.session?.mediaAlive() && this.resumeKey ? this.session : null;
    if (!kept) {
      this.session?.close();
      this.tiles.clearPaused();
    }
    let s = kept ?? this.newSession();
    this.session = s;
    this.setState("joining");
    try {
      const where = this.visitId ? { visit: this.visitId } : { room: this.roomId };
      const reply = await this.request("join", kept ? { ...where, resume: this.resumeKey } : where);
      s.check();
      this.resumeKey = reply.resume_key ?? null;
      if (kept && reply.resumed === true) {
        this.resumed(reply);
        return;
      }
      if (kept) {
        // the server closed that media meanwhile: new connections on this join
        console.info("[tc] resume refused: media rebuilt");
        kept.close();
        this.tiles.clearPaused();
        s = this.newSession();
        this.session = s;
      }
      s.joined = true;
      this.busyAttempt = 0;
      this.tc.busy = null;
      if (this.tc.callStartedAt === null) this.tc.callStartedAt = Date.now();
      this.renderTimer();
      // ICE servers hook: the server may hand out STUN/TURN servers with the join ack.
      const offered = reply.ice_servers ?? reply.iceServers;
      this.iceServers = Array.isArray(offered) ? offered : [];
      this.tc.iceServers = this.iceServers; // for tests: what this join handed out (TURN)
      this.mediaPaths = Number.isInteger(reply.media_paths) ? reply.media_paths : 1;
      this.tc.self = reply.participant;
      this.tc.subject = reply.subject ?? null;
      this.tc.patientSide = reply.patient_side ?? [];
      // Signaling failover: every provider's URL; a silent socket moves to the next (signaling.js)
      this.client.configure({ urls: reply.signaling_urls ?? [], pingMs: reply.signaling_ping_ms });
      this.tc.recording = reply.recording === true;
      this.el.recordingBadge.hidden = !this.tc.recording; // R22: everyone knows it is recorded
      this.tc.timings = { joined: now(), firstFrame: {} };
      this.clearError();
      // The roster of the ack first: `participants` events that come while the camera opens
      // are newer and must not be overwritten by it.
      this.updateParticipants(reply.participants ?? []);
      // The link is good: only now ask for camera and microphone (once per page). Receiving
      // starts at once; publishing once the camera is open.
      const media = !this.textOnly && !this.mediaRequested ? this.openLocalMedia(s) : null;
      this.chat?.onJoined(reply.participant, reply.room);
      s.armWatchdog(FIRST_CONNECT_TIMEOUT_MS);
      const started = this.startMedia(s, media);
      started.catch(() => {}); // awaited below; not "unhandled" while the camera opens
      if (media) await media;
      this.setState("joined");
      this.renderStatus();
      await started;
    } catch (err) {
      if (err instanceof SignalError && BUSY_CODES.has(err.code) && !this.ended && this.session === s) {
        this.scheduleBusyRetry(err);
        return;
      }
      this.reportError(err);
      if (!(err instanceof SessionClosed) && this.tc.state === "joining") this.setState("error");
    }
  }

  /** Joined again on a new socket with the media of the previous join carried on: only what
   * the ack says changes (the roster, the providers' URLs, the chat to catch up). */
  resumed(reply) {
    this.tc.resumes.push(now());
    console.info("[tc] resumed with the media kept");
    this.tc.self = reply.participant;
    this.tc.patientSide = reply.patient_side ?? [];
    // fresh TURN credentials for the connections made from now on (a provider's rebuilt one)
    if (Array.isArray(reply.ice_servers)) this.iceServers = this.tc.iceServers = reply.ice_servers;
    this.client.configure({ urls: reply.signaling_urls ?? [], pingMs: reply.signaling_ping_ms });
    this.clearError();
    this.updateParticipants(reply.participants ?? []);
    this.chat?.onJoined(reply.participant, reply.room);
    this.setState("joined");
    this.renderStatus();
  }

  async openLocalMedia(s) {
    this.mediaRequested = true;
    this.setState("requesting_media");
    await this.local.open();
    this.tc.mediaError = this.local.error;
    this.el.localVideo.srcObject = this.local.stream;
    this.renderMediaError();
    this.renderControls();
    this.renderLocal();
    s.check();
  }

  /** Publish and subscribe on the session's new peer connections. */
  async startMedia(s, beforePublish = null) {
    for (const err of await s.start(beforePublish)) this.reportError(err);
    s.check();
    // The server starts everyone unmuted: tell it about mutes that survived a reconnect.
    for (const kind of ["audio", "video"]) {
      if (this.local.muted[kind] && this.local.hasTrack(kind)) await this.request("mute", { kind, muted: true });
    }
  }

  /** The media path died (the server said `media_lost`, a connection failed, or new ones did not
   * come up in time): new peer connections on the same socket and join. `tellServer`: the server
   * does not know yet, and closes its side first (`restart_media`). */
  async restartMedia(reason, tellServer) {
    const old = this.session;
    if (this.ended || !old || !old.joined || !this.client?.connected) return;
    console.info("[tc] media restart:", reason);
    this.tc.mediaRestarts.push({ reason, at: now() });
    old.close();
    const s = this.newSession();
    s.joined = true;
    s.attempt = reason === "timeout" ? old.attempt + 1 : 0;
    this.session = s;
    this.setState("media_reconnecting");
    this.qualityWhileReconnecting();
    try {
      if (tellServer) {
        await this.request("restart_media", {});
        s.check();
      }
      s.armWatchdog(MEDIA_CONNECT_TIMEOUT_MS[Math.min(s.attempt, MEDIA_CONNECT_TIMEOUT_MS.length - 1)]);
      await this.startMedia(s);
    } catch (err) {
      if (err instanceof SessionClosed) return;
      console.warn("[tc] media restart failed", err);
      // The watchdog tries again; a dead socket is handled by socket.io's own reconnect.
      if (!s.closed) s.armWatchdog(MEDIA_CONNECT_TIMEOUT_MS[0]);
    }
  }

  /** The server is too busy to take us: say so and join again after a growing pause. */
  scheduleBusyRetry(err) {
    this.session?.close();
    this.session = null;
    const delay = BUSY_RETRY_MS[Math.min(this.busyAttempt, BUSY_RETRY_MS.length - 1)] + Math.random() * 1000;
    this.busyAttempt += 1;
    this.tc.busy = { attempt: this.busyAttempt, code: err.code, retryAt: Date.now() + delay };
    this.tc.errors.push({ code: err.code, message: err.serverMessage, at: now() });
    console.info("[tc] server busy; retry in", Math.round(delay), "ms");
    this.setState("busy");
    this.renderStatus();
    clearTimeout(this.busyTimer);
    this.busyTimer = setTimeout(() => {
      this.busyTimer = null;
      if (!this.ended && this.client?.connected) this.startSession();
    }, delay);
  }

  updateParticipants(list) {
    this.tc.participants = list;
    if (!this.tc.self) return; // before our own join ack we cannot tell ourselves apart
    const me = list.find((p) => p.id === this.tc.self.id);
    if (me) this.tc.self = me;
    this.tiles.update(list.filter((p) => p.id !== this.tc.self.id));
    this.doctorsOnly.update({ self: this.tc.self, subject: this.tc.subject, side: this.tc.patientSide });
    this.renderViewerLink();
    this.el.stage.dataset.remotes = String(this.tiles.size);
    this.renderStatus();
    this.syncRemoteMedia();
    this.renderLocal();
  }

  /** Give every tile the tracks the subscribe connection carries for it. Idempotent: called
   * after offers, track events and roster changes. */
  syncRemoteMedia() {
    const s = this.session;
    this.tiles.setMedia(s && !s.closed ? s.remoteTracks() : new Map());
  }

  // --- controls ------------------------------------------------------------------------------

  setMuted(kind, value) {
    if (this.ended || !this.local.setMuted(kind, value)) return;
    this.renderControls();
    this.renderLocal();
    if (this.tc.state === "joined") this.request("mute", { kind, muted: value }).catch((err) => this.reportError(err));
  }

  async toggleFullscreen() {
    try {
      if (document.fullscreenElement) await document.exitFullscreen();
      else await this.el.room.requestFullscreen();
    } catch (err) {
      console.info("[tc] fullscreen refused:", err?.name);
    }
  }

  async leave() {
    if (this.ended) return;
    this.setState("leaving");
    if (this.session && this.client?.connected) {
      try {
        await this.request("leave", {});
      } catch (err) {
        console.warn("[tc] leave", err); // we go anyway; the server also cleans up on disconnect
      }
    }
    this.finish("left");
  }

  /** Left or room closed: close everything and stop reconnecting. */
  finish(state, messageKey = `${state}.message`) {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.busyTimer);
    clearInterval(this.qualityTimer);
    clearInterval(this.clockTimer);
    this.session?.close();
    this.session = null;
    this.client?.disconnect({ leaving: true }); // whatever ended it, nothing is to be resumed
    this.tiles.clear();
    this.doctorsOnly.end();
    this.renderViewerLink();
    this.local.stop();
    this.el.localVideo.srcObject = null;
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    this.el.leftMessage.dataset.i18n = messageKey;
    applyI18n(this.el.leftPanel);
    this.el.leftPanel.hidden = false;
    this.el.remoteEmpty.hidden = true;
    this.el.enableSound.hidden = true;
    this.el.room.hidden = true;
    this.el.controls.hidden = true;
    this.setState(state);
    if (!this.embedded) this.el.rejoin.focus();
    // the host page decides what comes next (the queue offers "open video" again)
    else if (state !== "room_left" && this.onClosed) setTimeout(() => this.onClosed(state), 0);
  }

  /** Unmount (the doctor's queue closes the room): leave quietly and free everything. */
  destroy() {
    if (!this.ended) this.finish("left");
    this.unlisten?.();
    window.removeEventListener("pagehide", this.onPageHide);
    if (window.__tc === this.tc) window.__tc = undefined;
    this.root.replaceChildren();
  }

  // --- quality -------------------------------------------------------------------------------

  qualityWhileReconnecting() {
    this.meter.reset();
    renderQuality(this.el.localQuality, "lost");
    this.tiles.render();
  }

  async measureQuality() {
    const s = this.session;
    if (!s || s.closed || this.ended) return;
    if (this.tc.state === "media_reconnecting") {
      this.qualityWhileReconnecting();
      return;
    }
    await this.meter.measure(s, this.tiles);
    renderQuality(this.el.localQuality, this.tc.quality.self?.level);
    this.tiles.render();
  }

  // --- rendering -----------------------------------------------------------------------------

  renderStatus() {
    const el = this.el;
    el.status.dataset.state = this.tc.state;
    // Not in the room yet: "waiting for the other side" would be the wrong thing to say.
    el.remoteEmpty.hidden =
      this.tiles.size > 0 || this.ended || !["joined", "media_reconnecting"].includes(this.tc.state);
    if (this.tc.state === "busy" && this.tc.busy) {
      const seconds = Math.max(0, Math.ceil((this.tc.busy.retryAt - Date.now()) / 1000));
      el.status.textContent = t("state.busy", { seconds });
    } else {
      el.status.textContent = t(`state.${this.tc.state}`);
    }
  }

  /** The call timer: time since this page first joined (a reconnect does not reset it). */
  renderTimer() {
    const timer = this.el.callTimer;
    if (this.tc.callStartedAt === null || this.ended) {
      timer.hidden = true;
      return;
    }
    const total = Math.max(0, Math.floor((Date.now() - this.tc.callStartedAt) / 1000));
    const h = Math.floor(total / 3600);
    const mm = String(Math.floor((total % 3600) / 60)).padStart(2, "0");
    const ss = String(total % 60).padStart(2, "0");
    const time = h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
    timer.hidden = false;
    timer.querySelector(".call-timer-time").textContent = time;
    timer.setAttribute("aria-label", t("timer.aria", { time }));
  }

  renderError() {
    const el = this.el;
    el.error.hidden = this.lastError === null;
    if (this.lastError) {
      // every code of the table (/errors.js) has its text; never a raw code or English-only text
      const code = this.lastError.code;
      const text = hasKey(`error.${code}`) ? t(`error.${code}`) : t("error.unknown");
      const colon = getLanguage() === "en" ? ": " : "："; // a full-width colon only in Chinese
      el.error.textContent = `${t("error.prefix")}${colon}${text}`;
      el.error.dataset.code = code;
    }
  }

  renderMediaError() {
    this.el.mediaError.hidden = this.tc.mediaError === null;
    if (this.tc.mediaError) this.el.mediaError.textContent = t(`media.${this.tc.mediaError}`);
  }

  renderControls() {
    const el = this.el;
    const active = !this.ended;
    for (const [button, kind, muteKey, unmuteKey] of [
      [el.micButton, "audio", "button.mic_mute", "button.mic_unmute"],
      [el.camButton, "video", "button.cam_mute", "button.cam_unmute"],
    ]) {
      const muted = this.local.muted[kind];
      button.disabled = !active || !this.local.hasTrack(kind);
      button.dataset.muted = String(muted);
      button.setAttribute("aria-pressed", String(muted));
      button.querySelector(".btn-text").textContent = t(muted ? unmuteKey : muteKey);
    }
    el.selfViewButton.setAttribute("aria-pressed", String(this.tc.selfView));
    el.selfViewButton.querySelector(".btn-text").textContent = t(
      this.tc.selfView ? "button.selfview_hide" : "button.selfview_show",
    );
    const full = Boolean(document.fullscreenElement);
    el.fullscreenButton.setAttribute("aria-pressed", String(full));
    el.fullscreenButton.querySelector(".btn-text").textContent = t(full ? "button.fullscreen_exit" : "button.fullscreen");
    el.leaveButton.disabled = !active || this.tc.state === "leaving";
  }

  renderLocal() {
    const el = this.el;
    const self = this.tc.self;
    const role = self ? roleLabel(roomRole(self)) : null;
    el.localName.textContent = role ? t("tile.you_with_role", { role }) : t("tile.you");
    if (self) el.localTile.dataset.role = roomRole(self);
    const hasVideo = this.local.hasTrack("video");
    const camOff = hasVideo && this.local.muted.video;
    renderFlags(el.localFlags, this.local.muted.audio && this.local.hasTrack("audio"), camOff);
    // Camera off by choice says so (and how to turn it on); no camera at all says that instead.
    let placeholder = null;
    if (camOff) placeholder = "local.camera_off";
    else if (!hasVideo) placeholder = this.mediaRequested ? "local.no_camera" : "local.camera_waiting";
    el.localPlaceholder.hidden = placeholder === null;
    el.localPlaceholder.dataset.reason = placeholder ?? "";
    el.localPlaceholder.textContent = placeholder ? t(placeholder) : "";
    el.localTile.hidden = !this.tc.selfView;
  }

  renderAll() {
    applyI18n(this.root);
    this.renderStatus();
    this.renderTimer();
    renderQuality(this.el.localQuality, this.tc.quality.self?.level);
    this.renderError();
    this.renderMediaError();
    this.renderControls();
    this.renderLocal();
    this.tiles.render();
  }
}
