// The signaling client: one socket.io connection speaking the protocol of docs/signaling.md.
//
// Shared by every page that talks to a room: the room (visits and consultations, room-view.js)
// and the image review (viewer.js, viewer-review.js). It knows nothing of tiles or page state:
// `request()` sends an event and waits for its ack, `on()` listens for the server's events, and
// the helpers below negotiate a peer connection's ICE (`waitForIceGathering`, `Trickle`). The two
// peer connections of one join live in media-session.js. The signed-in session's pushes
// (namespace /updates) come through `openUpdates()`: this module opens every socket the pages
// use (tests/web/test_client_structure.py).

import { io } from "/vendor/socket.io/socket.io.esm.min.js";

export const ACK_TIMEOUT_MS = 10_000;
// Wait this long for ICE gathering before sending an offer or answer, so that the candidates
// travel inside the SDP; candidates found later are forwarded with `ice_candidate`.
export const ICE_GATHER_TIMEOUT_MS = 2_000;

/** A refused request: `code` is a stable code of the error table (consult/error_table.py). */
export class SignalError extends Error {
  constructor(code, message, event = null) {
    super(`${event ?? "signal"}: ${code}: ${message}`);
    this.code = code;
    this.serverMessage = message;
  }
}

/** Thrown by a session's `check()` when it was replaced while a step awaited. */
export class SessionClosed extends Error {}

/** Wall-clock milliseconds with sub-millisecond precision, comparable across pages. */
export function now() {
  return performance.timeOrigin + performance.now();
}

// Signaling failover (docs/providers.md, issue 16 item 3): a socket that heard nothing (no
// ping, no event) for the server's ping interval plus this grace, or that has been down this long,
// is given up and the next provider's signaling URL is tried with the same join token. The
// server's takeover replaces the old socket's session; the page joins again as the same
// participant and the chat asks for what it missed. Both providers down: each round waits twice
// as long, up to FAILOVER_MAX_MS.
export const FAILOVER_GRACE_MS = 1_500;
export const FAILOVER_MAX_MS = 10_000;
// A socket given up while connected is closed this long after the next one connected.
const RETIRE_AFTER_MS = 5_000;
const WATCH_EVERY_MS = 250;
const WATCH_LATE_MS = 1_000;

/** `scheme://host[:port]` of a URL (relative to the page), or null. */
function originOf(url) {
  try {
    return new URL(url, window.location.href).origin;
  } catch {
    return null;
  }
}

/** The signed-in session's socket for pushed updates (namespace /updates, docs/signaling.md):
 * socket.io's own client, connected at once; updates.js and a room page asked out use it. */
export function openUpdates(sessionToken) {
  return io(`${window.location.origin}/updates`, {
    path: "/socket.io/",
    auth: { session: sessionToken },
    transports: ["websocket"],
  });
}

export class SignalingClient {
  /** `token`: the room link's join token (socket.io `auth`). Call `on()` for each server event,
   * then `connect()`. socket.io reconnects by itself after a network drop; with more than one
   * signaling URL (`configure()`, from the join ack) a silent or down socket moves to the next. */
  constructor({ token, url = window.location.origin }) {
    this.token = token;
    this.urls = [originOf(url) ?? url];
    this.index = 0;
    this.handlers = []; // [event, handler]: given to every socket this client opens
    this.pingMs = null; // the server's ping interval (join ack): silence is watched once known
    this.heardAt = Date.now();
    this.downSince = null;
    this.rounds = 0; // failovers since the last connection
    this.failovers = []; // for tests: {at, from, to, reason}
    this.retired = []; // sockets given up, closed a while after the next one connected
    this.closed = false;
    this.watchTimer = null;
    this.watchedAt = null;
    this.socket = this.open(this.urls[0]);
  }

  /** The signaling URL the socket uses now. */
  get url() {
    return this.urls[this.index];
  }

  /** From the join ack: every provider's signaling URL (`[{provider, url}]`) and the server's
   * ping interval. The URL in use stays current; the others follow in the server's order. */
  configure({ urls = [], pingMs = null } = {}) {
    const current = this.url;
    const listed = urls.map((u) => originOf(u?.url ?? u)).filter(Boolean);
    this.urls = [...new Set([current, ...listed])];
    this.index = 0;
    this.pingMs = Number.isFinite(pingMs) && pingMs > 0 ? pingMs : null;
  }

  open(url) {
    const socket = io(url, {
      path: "/socket.io/",
      auth: { token: this.token },
      transports: ["websocket"],
      autoConnect: false,
      // Its own connection: a page may hold another socket to the same origin (the queue's
      // /updates), and a shared one would tie this room's reconnects to it.
      forceNew: true,
    });
    const mine = () => socket === this.socket && !this.closed;
    const heard = () => {
      if (mine()) this.heardAt = Date.now();
    };
    socket.io.on("ping", heard);
    socket.onAny(heard);
    socket.on("connect", () => {
      if (!mine()) return;
      heard();
      this.downSince = null;
      this.rounds = 0;
    });
    socket.on("disconnect", (reason) => {
      // sent away by the server, or closed by us: not a network fault, nothing to fail over
      if (!mine() || reason === "io server disconnect" || reason === "io client disconnect") return;
      this.downSince ??= Date.now();
    });
    socket.on("connect_error", (err) => {
      if (!mine()) return;
      // refused by the server (token, visit): the same answer on every URL
      if (err?.data?.code) this.downSince = null;
      else this.downSince ??= Date.now();
    });
    for (const [event, handler] of this.handlers) socket.on(event, handler);
    return socket;
  }

  get connected() {
    return Boolean(this.socket?.connected);
  }

  get id() {
    return this.socket.id;
  }

  on(event, handler) {
    this.handlers.push([event, handler]);
    this.socket.on(event, handler);
    return this;
  }

  connect() {
    this.closed = false;
    this.socket.connect();
    clearInterval(this.watchTimer);
    this.watchTimer = setInterval(() => this.watch(), WATCH_EVERY_MS);
  }

  /** Close the socket. `leaving`: the participant is done with the room: say `leave` first,
   * so that the server ends its media at once instead of holding it for a resume, as it does
   * for a socket that closes without one (docs/providers.md). */
  disconnect({ leaving = false } = {}) {
    if (leaving && this.socket.connected) this.socket.emit("leave", {});
    this.closed = true;
    clearInterval(this.watchTimer);
    this.socket.disconnect();
    for (const old of [...this.retired]) this.closeRetired(old);
  }

  closeRetired(old) {
    this.retired = this.retired.filter((s) => s !== old);
    old.disconnect();
  }

  /** Move to the next URL when the socket is silent or has been down too long. */
  watch() {
    const t = Date.now();
    const late = t - (this.watchedAt ?? t) > WATCH_LATE_MS;
    this.watchedAt = t;
    // A pass the page was too late for (a frozen or throttled tab) judges nothing: the pings
    // that came meanwhile may still be queued behind it.
    if (this.closed || this.urls.length < 2 || late) return;
    const grace = Math.min(FAILOVER_GRACE_MS * 2 ** Math.max(0, this.rounds - this.urls.length + 1), FAILOVER_MAX_MS);
    if (this.socket.connected) {
      if (this.pingMs !== null && t - this.heardAt > this.pingMs + FAILOVER_GRACE_MS) this.failover("silent");
    } else if (this.downSince !== null && t - this.downSince > grace) {
      this.failover("down");
    }
  }

  /** Give up the current socket (its events no longer reach the page) and connect to the next
   * URL with the same token. The page hears `disconnect` ("provider_failover") if it was up. */
  failover(reason) {
    const old = this.socket;
    const wasConnected = old.connected;
    const from = this.url;
    this.index = (this.index + 1) % this.urls.length;
    this.rounds += 1;
    this.failovers.push({ at: now(), from, to: this.url, reason });
    console.info("[tc] signaling failover:", reason, from, "->", this.url);
    this.socket = this.open(this.url);
    this.downSince = Date.now();
    this.heardAt = Date.now();
    old.off(); // its own listeners also check that it is still the current socket
    if (wasConnected) {
      // Closed only once the new socket had time to join: a close that reached the server
      // first (the old path only slow, not cut) would end the media the join carries on with.
      old.io.reconnection(false);
      this.retired.push(old);
      this.socket.once("connect", () => setTimeout(() => this.closeRetired(old), RETIRE_AFTER_MS));
    } else {
      old.disconnect();
    }
    if (wasConnected) {
      for (const [event, handler] of this.handlers) if (event === "disconnect") handler("provider_failover");
    }
    this.socket.connect();
  }

  /** Test hook: drop the connection as a network fault would; socket.io reconnects by itself. */
  simulateDrop() {
    this.socket.io.engine?.close();
  }

  /** Emit `event` and wait for its ack; resolve with the ack on `ok`, throw SignalError
   * otherwise. Refuses to emit while disconnected: socket.io would buffer the event and deliver
   * it on the next connection, where it belongs to no session. */
  async request(event, payload) {
    if (!this.connected) throw new SignalError("timeout", "not connected", event);
    let reply;
    try {
      reply = await this.socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload);
    } catch {
      throw new SignalError("timeout", `no ack for ${event}`, event);
    }
    if (!reply || reply.ok !== true) {
      const error = reply?.error ?? {};
      throw new SignalError(error.code ?? "unknown", error.message ?? "", event);
    }
    return reply;
  }
}

export function waitForIceGathering(pc, timeoutMs = ICE_GATHER_TIMEOUT_MS) {
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
 * then sent with `ice_candidate`; `null` marks the end. `send(payload)` delivers one. */
export class Trickle {
  constructor(target, pc, send) {
    this.target = target;
    this.sendPayload = send;
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
    this.sendPayload({ target: this.target, candidate });
  }
}
