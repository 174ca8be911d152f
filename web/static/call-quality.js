// Connection quality from getStats of a media session's peer connections: good / poor / lost for
// this page's own sending and for each remote participant's media.

const POOR_LOSS = 0.05; // fraction of packets lost over the last interval
const POOR_RTT_S = 0.4;
const POOR_FPS = 10;

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

export class QualityMeter {
  /** `levels`: the object to fill (participant id or "self" -> {level, ...}). */
  constructor(levels) {
    this.levels = levels;
    this.lastInbound = new Map(); // inbound-rtp id -> {packetsReceived, packetsLost, framesDecoded, at}
    this.lastOutbound = null;
    this.outboundPc = null; // the publish connection `lastOutbound` counts
  }

  /** Our own media is being rebuilt: our signal is lost, the others' unknown until it is back. */
  reset() {
    for (const key of Object.keys(this.levels)) delete this.levels[key];
    this.levels.self = { level: "lost" };
    this.lastInbound = new Map();
    this.lastOutbound = null;
    this.outboundPc = null;
  }

  /** One sample of `session` (a MediaSession) for the remote `tiles` (a TileGrid). */
  async measure(session, tiles) {
    const at = performance.now();
    if (session.subscribePc && session.subscribePc.connectionState !== "new") {
      const stats = await session.subscribePc.getStats();
      if (session.closed) return;
      this.measureInbound(stats, tiles, at);
    }
    // Two providers: the connection the camera is on now, not the first one (which may be the
    // dead provider's after a failover).
    const publishPc = session.activePublishPc();
    if (publishPc && publishPc.connectionState !== "new") {
      const stats = await publishPc.getStats();
      if (session.closed) return;
      if (publishPc !== this.outboundPc) {
        this.outboundPc = publishPc; // its counters are its own: no delta across connections
        this.lastOutbound = null;
      }
      this.measureOutbound(stats, publishPc.connectionState);
    }
  }

  measureInbound(stats, tiles, at) {
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
        const prev = this.lastInbound.get(r.id);
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
      this.levels[p.id] = { level, packets, lost, rtt, fps };
    }
    this.lastInbound = seen;
  }

  measureOutbound(stats, connectionState) {
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
    const sent = this.lastOutbound === null || packets < this.lastOutbound ? null : packets - this.lastOutbound;
    this.lastOutbound = packets;
    let level = fraction > POOR_LOSS || (rtt !== null && rtt > POOR_RTT_S) ? "poor" : "good";
    if (connectionState !== "connected" || sent === 0) level = "lost";
    this.levels.self = { level, loss: fraction, rtt };
  }
}
