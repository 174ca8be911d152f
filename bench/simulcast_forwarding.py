"""What simulcast costs the SFU: three layers received, one forwarded per subscriber.

    .venv/bin/python bench/simulcast_forwarding.py [--subscribers 4] [--seconds 10] [--rounds 2]

One process, peers on 127.0.0.1. A synthetic publisher feeds the Producer VP8-shaped packets
(never decoded) at 30 fps: three layers of 1, 2 and 4 packets of 1000 bytes a frame (about 240,
480 and 960 kbit/s), or the top layer alone as a single stream. Subscribers are aiortc peers whose
receivers only count packets; each reports a high REMB, so each takes the top layer. The figure is
the CPU time spent in the Producer's packet handler (receive, layer bookkeeping, estimator,
forwarding: rewrite, SRTP, send) per forwarded packet, simulcast against single stream, rounds
alternated. Not a test: figures for the notes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtpPacket, pack_remb_fci

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from media import MediaWorker
from media import _aiortc_seam as seam
from media.room import RoomMedia
from media.simulcast import URI_REPAIRED_RID, URI_RID

RIDS = ("l", "m", "h")
PACKETS_PER_FRAME = (1, 2, 4)


def client_pc() -> RTCPeerConnection:
    return RTCPeerConnection(
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


def simulcast_offer(sdp: str) -> str:
    out: list[str] = []
    for line in sdp.splitlines():
        out.append(line)
        if line.startswith("a=mid:") and any(x.startswith("m=video") for x in out[-20:]):
            out += [f"a=extmap:10 {URI_RID}", f"a=extmap:11 {URI_REPAIRED_RID}"]
            out += [f"a=rid:{rid} send" for rid in RIDS]
            out.append("a=simulcast:send " + ";".join(RIDS))
    return "\r\n".join(out) + "\r\n"


async def run(
    simulcast: bool, subscribers: int, seconds: float
) -> tuple[float, int, int, float, int]:
    """(CPU seconds in the packet handler, packets in, packets forwarded, and of those CPU
    seconds and packets in, the top layer's)."""
    seam.restrict_host_addresses(["127.0.0.1"])
    worker = MediaWorker(ice_addresses=["127.0.0.1"])
    room = RoomMedia(worker.get_router("bench"), lambda *_: None)
    publisher = client_pc()
    publisher.addTransceiver(seam.IdleTrack("video"), direction="sendonly")
    await publisher.setLocalDescription(await publisher.createOffer())
    sdp = publisher.localDescription.sdp
    answer = await room.publish("pub", simulcast_offer(sdp) if simulcast else sdp)
    await publisher.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    producer = next(p for p in room.router.producers if p.kind == "video")
    peers = []
    for i in range(subscribers):
        pc = client_pc()
        await room.subscribe(f"sub{i}")
        offer = await room.create_offer(f"sub{i}")
        assert offer is not None
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        receiver = pc.getTransceivers()[0].receiver

        async def count(packet: RtpPacket, arrival_time_ms: int) -> None:
            return None

        receiver._handle_rtp_packet = count  # type: ignore[method-assign]
        await pc.setLocalDescription(await pc.createAnswer())
        await room.apply_answer(f"sub{i}", pc.localDescription.sdp)
        peers.append(pc)
    deadline = time.monotonic() + 15
    while not all(c.ready for c in room.router.consumers_of(producer)) or any(
        pc.connectionState != "connected" for pc in peers
    ):
        assert time.monotonic() < deadline, "subscribers did not connect"
        await asyncio.sleep(0.05)  # polling with a deadline

    # the top layer first in each frame: the per-frame work (the uplink estimator closes a
    # packet group on the first packet of the next frame) then falls on a top-layer packet in
    # both runs, and a lower-layer packet is charged only what it costs itself
    layers = (2, 1, 0) if simulcast else (2,)
    seq = [100, 20000, 40000]
    cpu = top_cpu = 0.0
    packets_in = top_in = 0
    frame = 0
    start = time.monotonic()
    measure_from = start + 2.0  # the first two seconds: layer choice and first keyframes
    sent_at_start = 0
    while time.monotonic() < measure_from + seconds:
        if frame % 10 == 0:
            for pc in peers:  # every subscriber can take everything
                receiver = pc.getTransceivers()[0].receiver
                ssrcs = [c._ssrc for c in room.router.consumers_of(producer)]
                fci = pack_remb_fci(50_000_000, ssrcs)
                await receiver._send_rtcp(
                    RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=1, media_ssrc=0, fci=fci)
                )
        measuring = time.monotonic() >= measure_from
        if measuring and not sent_at_start:
            sent_at_start = sum(c.packets_sent for c in room.router.consumers_of(producer)) or 1
        for layer in layers:
            for k in range(PACKETS_PER_FRAME[layer]):
                keyframe = frame % 60 == 0
                first = 0x90 if k == 0 else 0x80
                picture = (frame + layer * 10_000) & 0x7FFF
                head = bytes([first, 0xC0, 0x80 | picture >> 8, picture & 0xFF, frame & 0xFF])
                packet = RtpPacket(
                    payload_type=producer._payload_type,
                    sequence_number=seq[layer] & 0xFFFF,
                    timestamp=(frame * 3000) & 0xFFFFFFFF,
                    ssrc=1111 * (layer + 1),
                    marker=int(k == PACKETS_PER_FRAME[layer] - 1),
                    payload=head + bytes([0x00 if keyframe else 0x01]) + bytes(994),
                )
                packet.extensions.rtp_stream_id = RIDS[layer] if simulcast else None
                # as a browser sends it: the Producer estimates the uplink from it
                packet.extensions.abs_send_time = int(time.time() * (1 << 18)) & 0xFFFFFF
                seq[layer] += 1
                t0 = time.process_time()
                await producer._on_rtp(packet, int(time.monotonic() * 1000))
                if measuring:
                    spent = time.process_time() - t0
                    cpu += spent
                    packets_in += 1
                    if layer == 2:
                        top_cpu += spent
                        top_in += 1
        frame += 1
        await asyncio.sleep(max(0.0, start + frame / 30 - time.monotonic()))  # 30 fps pacing
    forwarded = sum(c.packets_sent for c in room.router.consumers_of(producer)) - sent_at_start
    layers_used = sorted({c.layer for c in room.router.consumers_of(producer)})
    assert layers_used == [2 if simulcast else 0], layers_used
    for pc in peers:
        await pc.close()
    await publisher.close()
    await room.close()
    await worker.close()
    return cpu, packets_in, forwarded, top_cpu, top_in


async def main(args: argparse.Namespace) -> None:
    print(f"{args.subscribers} subscribers on the top layer, {args.seconds:g} s per run")
    totals: dict[bool, list[float]] = {True: [0.0] * 5, False: [0.0] * 5}
    for _ in range(args.rounds):
        for simulcast in (False, True):
            figures = await run(simulcast, args.subscribers, args.seconds)
            cpu, packets_in, forwarded = figures[:3]
            for i, v in enumerate(figures):
                totals[simulcast][i] += v
            name = "simulcast (3 layers in)" if simulcast else "single stream (top layer)"
            print(
                f"  {name}: {packets_in} packets in, {forwarded} forwarded, "
                f"{1e6 * cpu / max(1, forwarded):.1f} us CPU per forwarded packet"
            )
    single, multi = totals[False], totals[True]
    per_single = single[0] / max(1, single[2])
    per_multi = multi[0] / max(1, multi[2])
    print(
        f"per forwarded packet: single {1e6 * per_single:.1f} us, simulcast "
        f"{1e6 * per_multi:.1f} us ({100 * (per_multi / per_single - 1):+.0f}%); the lower "
        f"layers' {multi[1] - single[1]} extra packets in cost "
        f"{1e6 * (multi[0] - single[0]) / max(1, multi[1] - single[1]):.1f} us each"
    )
    # the packets of the layer actually sent, and the others, apart
    top_single = single[3] / max(1, single[4])
    top_multi = multi[3] / max(1, multi[4])
    lower = (multi[0] - multi[3]) / max(1, multi[1] - multi[4])
    print(
        f"a top-layer packet in, forwarded to {args.subscribers}: single {1e6 * top_single:.1f}"
        f" us, simulcast {1e6 * top_multi:.1f} us ({100 * (top_multi / top_single - 1):+.0f}%);"
        f" a lower-layer packet in, forwarded to none: {1e6 * lower:.1f} us"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(main(parser.parse_args()))
