// The signaling client: one socket.io connection speaking the protocol of docs/signaling.md.
//
// Shared by every page that talks to a room (the consult room today; consultations and image
// review later). It knows nothing of tiles or page state: `request()` sends an event and waits for
// its ack, `on()` listens for the server's events, and the helpers below negotiate a peer
// connection's ICE (`waitForIceGathering`, `Trickle`). The two peer connections of one join live in
// media-session.js.

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

export class SignalingClient {
  /** `token`: the room link's join token (socket.io `auth`). Call `on()` for each server event,
   * then `connect()`. socket.io reconnects by itself after a network drop. */
  constructor({ token, url = window.location.origin }) {
    this.socket = io(url, {
      path: "/socket.io/",
      auth: { token },
      transports: ["websocket"],
      autoConnect: false,
      // Its own connection: a page may hold another socket to the same origin (the queue's
      // /updates), and a shared one would tie this room's reconnects to it.
      forceNew: true,
    });
  }

  get connected() {
    return Boolean(this.socket?.connected);
  }

  get id() {
    return this.socket.id;
  }

  on(event, handler) {
    this.socket.on(event, handler);
    return this;
  }

  connect() {
    this.socket.connect();
  }

  disconnect() {
    this.socket.disconnect();
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
