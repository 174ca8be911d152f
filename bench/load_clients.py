"""The load generator's peers: publishers of pre-encoded media, subscribers that only count.

They talk to the server under test through its control channel (bench/sfu_server.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass, field

import aiohttp
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.rtcconfiguration import RTCBundlePolicy
from encoded_media import EncodedClip, EncodedTrack
from stream_counter import StreamCounter, count_receivers

from media import _aiortc_seam as seam
from media import _ice_seam as ice_seam
from media.arrival import timestamp_arrivals
from media.twcc import URI_TRANSPORT_CC, transport_cc_ids


def client_pc() -> RTCPeerConnection:
    """A peer that bundles every m-line, as browsers do, and never reaches for a STUN server.

    aiortc's default "balanced" policy leaves the second m-line of a kind on a transport that
    BUNDLE then discards, so it would receive nothing (e.g. the second publisher's audio).
    """
    return RTCPeerConnection(
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


#: Receive buffer asked for each subscriber's socket (Linux caps it at net.core.rmem_max, and
#: doubles it). One load-generator thread serves every subscriber, so when it is not scheduled
#: for a while (other processes on the machine) its sockets must hold the packets meanwhile:
#: 2 MiB is a few seconds of two 1 Mbps streams. A subscriber on its own machine needs no such
#: thing, and the server's sockets are left as they are.
SUBSCRIBER_RCVBUF = 2 * 1024 * 1024


def enlarge_receive_buffers(pc: RTCPeerConnection, size: int = SUBSCRIBER_RCVBUF) -> int:
    """Set SO_RCVBUF on the ICE sockets of ``pc`` (gathered already); returns how many.

    Uses aiortc's and aioice's private attributes (bench only): if they move, nothing is set.
    """
    done = set()
    for transceiver in pc.getTransceivers():
        with contextlib.suppress(AttributeError):
            connection = transceiver.receiver.transport.transport.iceGatherer._connection
            for protocol in connection._protocols:
                sock = protocol.transport.get_extra_info("socket")
                if sock is not None and sock.fileno() not in done:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
                    done.add(sock.fileno())
    return len(done)


class Control:
    """The server's control channel."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self._session = session
        self._url = url

    async def call(self, path: str, body: dict | None = None) -> dict:
        method = "GET" if body is None else "POST"
        async with self._session.request(method, self._url + path, json=body) as response:
            response.raise_for_status()
            return await response.json()  # type: ignore[no-any-return]


@dataclass
class Publisher:
    pc: RTCPeerConnection
    producer_ids: list[str] = field(default_factory=list)
    senders: dict[str, RTCRtpSender] = field(default_factory=dict)  # by producer id


@dataclass
class Subscriber:
    pc: RTCPeerConnection
    counters: list[StreamCounter] = field(default_factory=list)
    id: str = ""  # the server's subscription id
    producer_ids: list[str] = field(default_factory=list)  # per counter, "" if unknown


def accept_transport_cc(pc: RTCPeerConnection, offer_sdp: str) -> dict[str, int]:
    """Accept transport-cc where the server's offer (set on ``pc`` already) has it, as a browser
    does: the server then numbers every packet and runs its send-side estimator (part of the
    cost). Call before createAnswer; returns mid -> extension id."""
    cc_ids = transport_cc_ids(offer_sdp)
    for transceiver in pc.getTransceivers():
        if transceiver.mid in cc_ids:
            seam.add_header_extensions(transceiver, {URI_TRANSPORT_CC: cc_ids[transceiver.mid]})
            seam.add_codec_feedback(transceiver, "transport-cc")
    return cc_ids


def stop_remb(pc: RTCPeerConnection) -> int:
    """Stop ``pc``'s video receivers from sending REMB, as a browser's do once transport-cc
    is negotiated: libwebrtc feeds a packet that carries a transport-wide sequence number to
    the transport feedback and only the others to its receive-side estimator, so a Chrome
    subscriber on transport-cc sends no REMB. aiortc's receiver runs its estimator whatever
    was negotiated and sends a REMB every 200 ms at 1 Mbit/s, which the server would parse for
    nothing. Returns how many receivers; uses aiortc's private attribute (bench only)."""
    stopped = 0
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        if getattr(receiver, "_RTCRtpReceiver__remote_bitrate_estimator", None) is not None:
            receiver._RTCRtpReceiver__remote_bitrate_estimator = None  # type: ignore[attr-defined]
            stopped += 1
    return stopped


def stamp_arrivals(pc: RTCPeerConnection) -> None:
    """Report each packet's arrival in the transport-cc feedback as the kernel stamped it, as
    a browser's network thread does (media/arrival.py), not when this process's loop got to it:
    the load generator's own loop lag (tens of ms on a shared machine) read as queueing on the
    path, and the server's estimator then paused video to it on loopback (measured: up to a
    third of the window's packets held back in bench/sfu_forwarding.py, and bench/mdt_room.py
    before it stamped)."""
    for dtls in seam.dtls_transports(pc):
        for protocol in ice_seam.ice_connection(dtls)._protocols:
            timestamp_arrivals(protocol)


def send_transport_feedback(pc: RTCPeerConnection, cc_ids: dict[str, int]) -> None:
    """Send transport-cc feedback for what ``pc`` receives, with the kernel's arrival stamps
    (after setLocalDescription: the sockets exist then; idempotent, so a renegotiation may
    call it again)."""
    if cc_ids:
        seam.record_transport_feedback(
            pc.getTransceivers()[0].receiver, next(iter(cc_ids.values()))
        )
        stamp_arrivals(pc)
        stop_remb(pc)


async def start_publisher(control: Control, clips: list[EncodedClip]) -> Publisher:
    pc = client_pc()
    for clip in clips:
        pc.addTransceiver(EncodedTrack(clip), direction="sendonly")
    publisher = Publisher(pc)
    await pc.setLocalDescription(await pc.createOffer())
    reply = await control.call("/publish", {"sdp": pc.localDescription.sdp})
    await pc.setRemoteDescription(RTCSessionDescription(reply["answer"], "answer"))
    publisher.producer_ids = [p["id"] for p in reply["producers"]]
    transceivers = pc.getTransceivers()
    for i, producer in enumerate(reply["producers"]):
        # by mid when the engine says it, else in order (one Producer per m-line)
        mid = producer.get("mid")
        match = next((t for t in transceivers if mid is not None and t.mid == mid), None)
        if match is None and i < len(transceivers):
            match = transceivers[i]
        if match is not None:
            publisher.senders[producer["id"]] = match.sender
    return publisher


async def start_subscriber(
    control: Control, producer_ids: list[str], *, transport_cc: bool = True
) -> Subscriber:
    """A subscriber to ``producer_ids``; ``transport_cc=False``: it declines transport-cc, as
    a browser without it would (the server then steers by its REMB)."""
    reply = await control.call("/subscribe", {"producers": producer_ids})
    pc = client_pc()
    await pc.setRemoteDescription(RTCSessionDescription(reply["offer"], "offer"))
    cc_ids = accept_transport_cc(pc, reply["offer"]) if transport_cc else {}
    subscriber = Subscriber(pc, count_receivers(pc), id=reply["id"])
    mids: dict[str, str] = reply.get("mids", {})  # mid -> producer id, when the engine says
    subscriber.producer_ids = [mids.get(t.mid or "", "") for t in pc.getTransceivers()]
    await pc.setLocalDescription(await pc.createAnswer())  # gathers: the sockets exist now
    send_transport_feedback(pc, cc_ids)
    enlarge_receive_buffers(pc)
    await control.call("/answer", {"id": reply["id"], "sdp": pc.localDescription.sdp})
    return subscriber


async def stop_subscriber(control: Control, subscriber: Subscriber) -> None:
    """Close the subscriber's peer connection and the server's end of it."""
    await subscriber.pc.close()
    await control.call("/unsubscribe", {"id": subscriber.id})


async def wait_until_flowing(subscribers: list[Subscriber], limit_s: float) -> int:
    """Wait until every subscribed stream has delivered a packet, or ``limit_s`` passes.

    Video starts on a keyframe: with the pre-encoded clip that may take one clip length (5 s).

    Returns how many streams are still silent then; raises if none delivered anything.
    """
    deadline = time.monotonic() + limit_s
    counters = [c for s in subscribers for c in s.counters]
    while True:
        silent = sum(1 for c in counters if c.packets == 0)
        if silent == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    if silent == len(counters):
        raise TimeoutError(f"no subscribed stream received anything in {limit_s:.0f} s")
    return silent


async def close_all(publishers: list[Publisher], subscribers: list[Subscriber]) -> None:
    for peer in (*subscribers, *publishers):
        await peer.pc.close()
