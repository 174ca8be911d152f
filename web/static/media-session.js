// One join's media: two peer connections on one signaling connection (LiveKit style).
//
// "publish": this page offers its camera and microphone; "subscribe": the server offers
// everyone else's tracks and this page answers. When the server has an address on each of two
// network providers (join ack `media_paths` 2), the page publishes on two connections, one per
// provider ("publish" on path 0, "standby" on path 1): the microphone goes on both, the camera
// on one; when the one carrying the camera hears nothing from the server (its probes every
// 200 ms, its RTCP) for LANE_DEAD_MS while the other does, the camera moves to the other
// (`replaceTrack`, no renegotiation) and the server moves the streams after it
// (docs/providers.md, "Hot standby"). A MediaSession is thrown away whole when the
// socket drops or the media path dies; the page then makes a new one (same socket or a new one).
// Reusable by any page that joins a room (consult room, consultations, image review).

import { SessionClosed, SignalError, Trickle, waitForIceGathering } from "./signaling.js";

/** Silence on the publish connection carrying the camera after which it is given up (the
 * server's own 400 ms). The server sends on it every 50 ms while the camera's packets arrive
 * (transport-cc feedback) and probes it every 200 ms; a stall of the server or of this page
 * silences both connections, which moves nothing (the other must have been heard within half
 * of this). 350 ms moved a camera with no cut once at load 21 on 2 cores. */
export const LANE_DEAD_MS = 400;
/** A connection never heard since it was made is given up only after this long (its server
 * side starts probing when it connects). */
const LANE_FIRST_HEARD_MS = 2000;
/** How often the publish connections' statistics are read (two providers only). */
const LANE_CHECK_MS = 100;
/** A failed per-provider connection is built again this long after (and again while it fails). */
const LANE_REBUILD_MS = 2000;

// Camera video goes out as simulcast, lowest layer first (the server reads the order of
// a=simulcast as low to high): each subscriber gets the best layer its network carries, and a
// poor network costs that subscriber resolution, not the picture. Chromium sends at most two
// layers below 960x540 (it drops the highest ones), so a VGA camera gets two. The lowest
// layer must fit a poor link with the audio beside it, in a call of three too, with room for
// retransmissions: 100 kbit/s of 320x240 (the encoder overshoots by ~10 %) plus two Opus
// streams with headers (~60 each) leaves a 300 kbit/s link ~50 to spare. At 150 the patient's
// 300 kbit/s link of a three-page call lost ~10 packets a second with only the doctor's video
// left (retransmissions took it to ~200), and its picture ran at 4-7 fps; at 180 it stopped.
export function simulcastEncodings(track) {
  const height = track.getSettings?.().height ?? 0;
  if (height >= 540) {
    return [
      { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 100_000 },
      { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 },
      { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
    ];
  }
  if (height >= 240) {
    return [
      { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 100_000 },
      { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 600_000 },
    ];
  }
  return null; // too small to split
}

/**
 * The peer connections of one join.
 *
 * `client`: a SignalingClient. `hooks`:
 * - `iceServers()`: the RTCIceServer list to use now (from the join ack);
 * - `localStream()`: the MediaStream to publish (null: receive only);
 * - `onPeerConnection(name, pc)`: a connection was made ("publish" | "subscribe") or closed (pc null);
 * - `onTracks()`: the subscribe connection's tracks changed (map them to tiles with `tracks`);
 * - `onFailed(name)`: a connection failed; `onConnected()`: every connection is up;
 * - `onWatchdog()`: the connections were not all up when the watchdog fired;
 * - `onError(err)`: a late candidate could not be sent.
 */
function laneName(path) {
  return path === 0 ? "publish" : "standby";
}

export class MediaSession {
  constructor(client, hooks) {
    this.client = client;
    this.hooks = hooks;
    this.closed = false;
    this.publishPc = null;
    this.subscribePc = null;
    this.subscribeTrickle = null;
    this.lanes = []; // two providers: [{path, pc, heardAt, count, video}] (path 0, path 1)
    this.activeLane = 0; // the lane the camera is on
    this.laneTimer = null;
    this.laneCheckSoon = null; // a read timed for when the camera's connection's silence is up
    this.laneSwitches = []; // {from, to, at, silentMs}: for the page's own diagnostics
    this.tracks = new Map(); // subscribe mid -> {mid, participant_id, kind, active}
    this.offerChain = Promise.resolve(); // subscribe offers are applied one at a time
    this.joined = false; // the join this session's media belongs to was acknowledged
    this.attempt = 0; // how many media rebuilds in a row came before this one
    this.watchdog = null;
  }

  request(event, payload) {
    return this.client.request(event, payload);
  }

  peerConnection() {
    return new RTCPeerConnection({
      iceServers: this.hooks.iceServers(),
      bundlePolicy: "max-bundle",
      rtcpMuxPolicy: "require",
    });
  }

  trickle(target, pc) {
    return new Trickle(target, pc, (payload) =>
      this.request("ice_candidate", payload).catch((err) => this.hooks.onError(err)),
    );
  }

  /** Call `onWatchdog` if these connections are not all up within `ms`. */
  armWatchdog(ms) {
    clearTimeout(this.watchdog);
    this.watchdog = setTimeout(() => {
      if (this.closed || this.mediaConnected()) return;
      console.info("[tc] connections not up in", ms, "ms");
      this.hooks.onWatchdog();
    }, ms);
  }

  /** Every connection under negotiation is connected. One with no description yet (a subscribe
   * connection with nothing to receive, a page without camera or microphone) waits for nothing. */
  mediaConnected() {
    const lanes = this.lanes.map((lane) => lane.pc).filter((pc) => pc && pc.remoteDescription);
    // publishing on two providers: one connected lane carries it
    const publishing = lanes.length ? lanes.some((pc) => pc.connectionState === "connected") : true;
    const pcs = lanes.length ? [this.subscribePc] : [this.publishPc, this.subscribePc];
    return (
      publishing &&
      pcs
        .filter((pc) => pc && (pc.localDescription || pc.remoteDescription))
        .every((pc) => pc.connectionState === "connected")
    );
  }

  /** The connections still carry media (none failed or closed; of two per-provider publish
   * connections one is enough): after a socket drop the page may resume with them. */
  mediaAlive() {
    if (this.closed || !this.joined) return false;
    const dead = (pc) => ["failed", "closed"].includes(pc.connectionState);
    const lanes = this.lanes.map((lane) => lane.pc);
    const publishing = lanes.length ? lanes.some((pc) => !dead(pc)) : !this.publishPc || !dead(this.publishPc);
    return publishing && (!this.subscribePc || !dead(this.subscribePc));
  }

  /** The publish connection that carries the camera now: with a connection per provider,
   * the one it was moved to (the other may be dead and rebuilding); else the only one. */
  activePublishPc() {
    const lane = this.lanes.find((l) => l.path === this.activeLane);
    return lane?.pc ?? this.publishPc;
  }

  /** Call after every await: a replaced session must not touch the page or the server. */
  check() {
    if (this.closed) throw new SessionClosed();
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.watchdog);
    clearInterval(this.laneTimer);
    clearTimeout(this.laneCheckSoon);
    for (const lane of this.lanes) {
      clearTimeout(lane.rebuild);
      if (lane.pc !== this.publishPc) {
        lane.pc.close();
        this.hooks.onPeerConnection(laneName(lane.path), null, lane.pc);
      }
    }
    this.lanes = [];
    for (const pc of [this.publishPc, this.subscribePc]) pc?.close();
    if (this.publishPc) this.hooks.onPeerConnection("publish", null, this.publishPc);
    if (this.subscribePc) this.hooks.onPeerConnection("subscribe", null, this.subscribePc);
    this.publishPc = null;
    this.subscribePc = null;
    this.tracks.clear();
    this.hooks.onTracks();
  }

  watchConnection(pc, name) {
    pc.addEventListener("connectionstatechange", () => {
      console.info(`[tc] ${name} connection ${pc.connectionState}`);
      if (this.closed) return;
      if (pc.connectionState === "failed") {
        // Our side saw the path die first: the server closes its side too, then we rebuild.
        this.hooks.onFailed(name);
      } else if (pc.connectionState === "connected" && this.mediaConnected()) {
        // The watchdog stays armed: it checks again when it fires (a subscribe connection may
        // only now be starting its negotiation).
        this.hooks.onConnected();
      }
    });
  }

  /** Subscribe now and publish once `beforePublish` settles (the camera opening); the errors of
   * either are returned (the other may still work). */
  async start(beforePublish = null) {
    const publishing = Promise.resolve(beforePublish).then(() => this.publish());
    const results = await Promise.allSettled([publishing, this.subscribe()]);
    return results.filter((r) => r.status === "rejected").map((r) => r.reason);
  }

  async publish() {
    const stream = this.hooks.localStream();
    if (!stream || stream.getTracks().length === 0) return; // receive only
    this.check();
    if ((this.hooks.mediaPaths?.() ?? 1) >= 2) {
      await Promise.all([this.publishLane(0, stream), this.publishLane(1, stream)]);
      this.laneTimer = setInterval(() => this.checkLanes().catch(() => {}), LANE_CHECK_MS);
      return;
    }
    const pc = this.peerConnection();
    this.publishPc = pc;
    this.hooks.onPeerConnection("publish", pc);
    this.watchConnection(pc, "publish");
    const trickle = this.trickle("publish", pc);
    for (const track of stream.getTracks()) {
      const init = { direction: "sendonly", streams: [stream] };
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
    const reply = await this.request("publish", { type: "offer", sdp: pc.localDescription.sdp });
    this.check();
    await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
    this.check();
    trickle.markReady();
  }

  // --- two providers: a publish connection on each (hot standby) ----------------------------

  /** Publish on provider `path`'s connection: the microphone always, the camera if this lane
   * is the active one (else its sender waits, negotiated, for `replaceTrack`). */
  async publishLane(path, stream) {
    this.check();
    const name = laneName(path);
    const pc = this.peerConnection();
    const lane = { path, pc, heardAt: 0, count: -1, heard: false, video: null, rebuild: null };
    const previous = this.lanes.findIndex((l) => l.path === path);
    if (previous >= 0) this.lanes[previous] = lane;
    else this.lanes.push(lane);
    if (path === 0) this.publishPc = pc;
    this.hooks.onPeerConnection(name, pc);
    pc.addEventListener("connectionstatechange", () => this.laneState(lane, stream));
    const trickle = this.trickle(name, pc);
    for (const track of stream.getTracks()) {
      const init = { direction: "sendonly", streams: [stream] };
      const encodings = track.kind === "video" ? simulcastEncodings(track) : null;
      const carry = track.kind === "audio" || path === this.activeLane;
      let transceiver = null;
      if (encodings) {
        try {
          transceiver = pc.addTransceiver(carry ? track : "video", {
            ...init,
            sendEncodings: encodings,
          });
        } catch (err) {
          console.info("[tc] simulcast refused, one layer:", err?.message); // fall back
        }
      }
      transceiver ??= pc.addTransceiver(carry ? track : track.kind, init);
      if (track.kind === "video") lane.video = { sender: transceiver.sender, track };
    }
    await pc.setLocalDescription(await pc.createOffer());
    this.check();
    await waitForIceGathering(pc);
    this.check();
    trickle.markSent();
    const reply = await this.request("publish", {
      type: "offer",
      sdp: pc.localDescription.sdp,
      path,
    });
    this.check();
    await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
    this.check();
    trickle.markReady();
  }

  laneState(lane, stream) {
    const state = lane.pc.connectionState;
    console.info(`[tc] ${laneName(lane.path)} connection ${state}`);
    if (this.closed || !this.lanes.includes(lane)) return;
    if (state === "connected" && this.mediaConnected()) this.hooks.onConnected();
    if (state !== "failed") return;
    const other = this.lanes.find((l) => l !== lane);
    if (!other || other.pc.connectionState !== "connected") {
      this.hooks.onFailed(laneName(lane.path)); // nothing left to publish on: rebuild all
      return;
    }
    // The other provider carries us: build this one again in the background, until its
    // provider is back; it is then the standby.
    if (this.activeLane === lane.path) this.moveCamera(other, 0);
    this.rebuildLane(lane, stream);
  }

  /** Build `lane`'s connection again in LANE_REBUILD_MS, and again while that fails (its
   * provider still down, or the signaling socket between two providers). */
  rebuildLane(lane, stream) {
    clearTimeout(lane.rebuild);
    lane.rebuild = setTimeout(() => {
      if (this.closed || !this.lanes.includes(lane)) return;
      lane.pc.close();
      this.hooks.onPeerConnection(laneName(lane.path), null, lane.pc);
      this.publishLane(lane.path, stream).catch((err) => {
        if (err instanceof SessionClosed || this.closed) return;
        console.info("[tc] lane rebuild failed:", err?.message);
        const made = this.lanes.find((l) => l.path === lane.path);
        if (made) this.rebuildLane(made, stream);
      });
    }, LANE_REBUILD_MS);
  }

  /** Something the server sent on each lane (probes, answers, RTCP): when the camera's lane
   * went silent and the other lane did not, the camera moves there. */
  async checkLanes() {
    if (this.closed || this.lanes.length < 2) return;
    const at = performance.now();
    // both lanes read at once: on a loaded machine one read takes tens of ms, and the second
    // waited for the first (a move came 0.4 s late at load 13)
    const open = this.lanes.filter((lane) => lane.pc.connectionState !== "closed");
    const counts = await Promise.all(
      open.map(async (lane) => {
        let count = 0;
        (await lane.pc.getStats()).forEach((s) => {
          if (s.type === "candidate-pair") {
            count += (s.requestsReceived || 0) + (s.responsesReceived || 0) + (s.bytesReceived || 0);
          }
        });
        return count;
      }),
    );
    open.forEach((lane, i) => {
      if (counts[i] !== lane.count) {
        lane.heard ||= lane.count > 0; // a change after a first non-zero read: the server's
        lane.count = counts[i];
        lane.heardAt = at;
      }
    });
    if (this.closed) return;
    const active = this.lanes.find((l) => l.path === this.activeLane);
    const other = this.lanes.find((l) => l.path !== this.activeLane);
    if (!active || !other || !other.heard) return;
    const silent = at - (active.heardAt || 0);
    const dead = active.heard ? LANE_DEAD_MS : LANE_FIRST_HEARD_MS;
    if (silent >= dead && at - other.heardAt < LANE_DEAD_MS / 2) {
      this.moveCamera(other, silent);
    } else if (silent < dead && dead - silent < LANE_CHECK_MS && !this.laneCheckSoon) {
      // read again when the silence reaches `dead`, not up to a period later
      this.laneCheckSoon = setTimeout(() => {
        this.laneCheckSoon = null;
        this.checkLanes().catch(() => {});
      }, dead - silent + 5);
    }
  }

  /** Put the camera on `lane`'s sender (no renegotiation: `replaceTrack`). */
  moveCamera(lane, silentMs) {
    const from = this.lanes.find((l) => l.path === this.activeLane);
    if (!from || from === lane || !lane.video) return;
    this.activeLane = lane.path;
    this.laneSwitches.push({ from: from.path, to: lane.path, at: Date.now(), silentMs });
    console.info(`[tc] camera moved to path ${lane.path} after ${Math.round(silentMs)} ms`);
    // the new one first: the server moves the streams on its first packets
    lane.video.sender.replaceTrack(lane.video.track).catch(() => {});
    from.video?.sender.replaceTrack(null).catch(() => {});
  }

  async subscribe() {
    this.check();
    const pc = this.peerConnection();
    this.subscribePc = pc;
    this.hooks.onPeerConnection("subscribe", pc);
    this.watchConnection(pc, "subscribe");
    this.subscribeTrickle = this.trickle("subscribe", pc);
    pc.addEventListener("track", () => this.hooks.onTracks());
    const reply = await this.request("subscribe", {});
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
    if (!pc) {
      // An offer meant for the connections this session replaces (the server queued it before
      // it heard of the restart): this session's subscribe reply carries the current offer.
      // Not an error to show anyone.
      console.info("[tc] subscribe offer before subscribe: left for the subscribe reply");
      return;
    }
    // The map must be in place before setRemoteDescription: `track` events fire inside it.
    this.tracks = new Map((offer.tracks ?? []).map((track) => [track.mid, track]));
    await pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
    this.check();
    await pc.setLocalDescription(await pc.createAnswer());
    this.check();
    await waitForIceGathering(pc);
    this.check();
    this.hooks.onTracks();
    this.subscribeTrickle.markSent();
    try {
      await this.request("subscribe_answer", {
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

  /** participant id -> {audio, video} receiver tracks, from the transceivers and the offer's
   * track list. */
  remoteTracks() {
    const wanted = new Map();
    const pc = this.subscribePc;
    if (!pc || this.closed) return wanted;
    for (const transceiver of pc.getTransceivers()) {
      const info = transceiver.mid === null ? undefined : this.tracks.get(transceiver.mid);
      if (!info || !info.active || transceiver.currentDirection === "stopped") continue;
      const entry = wanted.get(info.participant_id) ?? { audio: null, video: null };
      entry[info.kind] = transceiver.receiver.track;
      wanted.set(info.participant_id, entry);
    }
    return wanted;
  }
}
