"""Every use of aiortc's and aioice's private API, in one place.

aiortc (pinned in pyproject.toml) decodes everything it receives and encodes everything it sends.
An SFU must do neither, so we cut in at the packet level:

* receive: ``RTCDtlsTransport`` hands each decrypted, parsed RTP packet to the ``RtpReceiver``
  registered for it by calling ``receiver._handle_rtp_packet(packet, arrival_time_ms)``. We
  replace that method on the receiver instance, so packets reach our Producer instead of the
  jitter buffer and decoder (which are then never created).
* send: ``RTCDtlsTransport._send_rtp(bytes)`` SRTP-protects and sends a serialized packet. We
  serialize rewritten packets ourselves with the sender's negotiated header-extension map.
* feedback: ``sender._handle_rtcp_packet(packet)`` receives the subscriber's RTCP for that
  sender (NACK, PLI, FIR, REMB, RR). We replace it on the instance, so feedback reaches our
  Consumer. Upstream, ``receiver._send_rtcp_pli(media_ssrc)`` asks the publisher for a keyframe.
* sender reports: the sender's own RTCP loop sends SRs from private counters; we keep those
  counters true for the packets we send, so receivers can map RTP time to wall-clock time.
* sender reports in: ``receiver._handle_rtcp_packet(packet)`` receives the publisher's RTCP; we
  wrap it (aiortc still sees every packet) to read the NTP <-> RTP time pairs of its SRs.
* liveness: ``RTCDtlsTransport`` counts the datagrams it receives for its stats; we read that
  counter to notice a path that went silent (media/liveness.py).
* host candidates: aioice gathers on every interface except loopback, with no filter; which
  addresses the server offers is configuration, so we replace its address lookup.

tests/media/test_seam.py pins each of these; an aiortc upgrade that moves one fails there first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aioice.ice
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpreceiver import NackGenerator as NackGenerator  # re-exported for the Producer
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtp import HeaderExtensionsMap, RtcpSrPacket, RtpPacket

RtpHandler = Callable[[RtpPacket, int], Awaitable[None]]
RtcpHandler = Callable[[Any], Awaitable[None]]

_original_get_host_addresses = aioice.ice.get_host_addresses


def restrict_host_addresses(addresses: list[str] | None) -> None:
    """Make aioice gather host candidates on exactly ``addresses``.

    ``None`` or an empty list restores aioice's own choice (every interface but loopback).
    This is process-wide, like the addresses of a server are.
    """
    if not addresses:
        aioice.ice.get_host_addresses = _original_get_host_addresses
        return
    fixed = list(addresses)

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in fixed if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = get_host_addresses


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    """The codecs both sides agreed on for ``transceiver``, preferred first (RTX included)."""
    return list(transceiver._codecs)


def offer_direction(transceiver: RTCRtpTransceiver) -> str | None:
    """The direction offered for ``transceiver``, from our side: "recvonly" = the peer sends."""
    return transceiver._offerDirection  # type: ignore[no-any-return]


def intercept_receiver(receiver: RTCRtpReceiver, on_rtp: RtpHandler) -> None:
    """Route the receiver's incoming RTP to ``on_rtp`` instead of aiortc's decoder path."""
    receiver._handle_rtp_packet = on_rtp  # type: ignore[method-assign,assignment]


async def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Send a Picture Loss Indication for ``media_ssrc`` to the publisher."""
    await receiver._send_rtcp_pli(media_ssrc)


def intercept_sender_rtcp(sender: RTCRtpSender, on_rtcp: RtcpHandler) -> None:
    """Route RTCP feedback addressed to ``sender`` to ``on_rtcp``."""
    sender._handle_rtcp_packet = on_rtcp  # type: ignore[method-assign,assignment]


def negotiated_extension_ids(transceiver: RTCRtpTransceiver) -> dict[str, int]:
    """Header-extension URI -> id, as both sides agreed for ``transceiver``."""
    return {ext.uri: ext.id for ext in transceiver._headerExtensions}


def sender_ssrc(sender: RTCRtpSender) -> int:
    return sender._ssrc


def sender_rtx_ssrc(sender: RTCRtpSender) -> int:
    return sender._rtx_ssrc


async def send_nack(receiver: RTCRtpReceiver, media_ssrc: int, lost: list[int]) -> None:
    """Ask the publisher to retransmit ``lost`` (ascending sequence numbers) of ``media_ssrc``."""
    await receiver._send_rtcp_nack(media_ssrc, lost)


def route_ssrc_to(receiver: RTCRtpReceiver, ssrc: int) -> None:
    """Deliver packets of ``ssrc`` (e.g. the publisher's RTX stream) to ``receiver``.

    aiortc registers only the primary SSRCs of a receiver; an RTX stream is then routed by its
    payload type alone, which fails as soon as two video m-lines share the RTX payload type.
    """
    receiver.transport._rtp_router.ssrc_table[ssrc] = receiver


SenderReportHandler = Callable[[int, int, int], None]


def observe_sender_reports(receiver: RTCRtpReceiver, on_report: SenderReportHandler) -> None:
    """Call ``on_report(ssrc, ntp_timestamp, rtp_timestamp)`` for each SR the publisher sends.

    aiortc keeps handling the packet (its reception reports need the SR's time).
    """
    original = receiver._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        if isinstance(packet, RtcpSrPacket):
            info = packet.sender_info
            on_report(packet.ssrc, info.ntp_timestamp, info.rtp_timestamp)
        await original(packet)

    receiver._handle_rtcp_packet = handle  # type: ignore[method-assign]


def sender_extensions_map(sender: RTCRtpSender) -> HeaderExtensionsMap:
    """The header-extension ids the subscriber negotiated for this sender."""
    return sender._RTCRtpSender__rtp_header_extensions_map  # type: ignore[attr-defined,no-any-return]


def sender_mid(sender: RTCRtpSender) -> str | None:
    return sender._RTCRtpSender__mid  # type: ignore[attr-defined,no-any-return]


async def send_rtp(sender: RTCRtpSender, data: bytes) -> None:
    """SRTP-protect and send one serialized RTP packet on the sender's transport."""
    await sender.transport._send_rtp(data)


def note_sent(sender: RTCRtpSender, rtp_timestamp: int, payload_size: int, ntp: int) -> None:
    """Keep the sender's report counters true for a packet we sent around it at ``ntp``."""
    sender._RTCRtpSender__ntp_timestamp = ntp  # type: ignore[attr-defined]
    sender._RTCRtpSender__rtp_timestamp = rtp_timestamp  # type: ignore[attr-defined]
    sender._RTCRtpSender__octet_count += payload_size  # type: ignore[attr-defined]
    sender._RTCRtpSender__packet_count += 1  # type: ignore[attr-defined]


class IdleTrack(MediaStreamTrack):
    """A track that never yields a frame.

    Each subscriber transceiver needs a track so that aiortc starts its sender (and its RTCP
    reports); the media itself is written by our Consumer. ``recv`` waits until the track stops,
    so the sender never reaches its encoder.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._stopped_event = asyncio.Event()

    async def recv(self) -> Any:
        await self._stopped_event.wait()
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        self._stopped_event.set()


def dtls_transports(pc: RTCPeerConnection) -> list[RTCDtlsTransport]:
    """The distinct DTLS transports of ``pc`` (one with max-bundle)."""
    seen: dict[int, RTCDtlsTransport] = {}
    for transceiver in pc.getTransceivers():
        transport = transceiver.receiver.transport
        if transport is not None:
            seen[id(transport)] = transport
    return list(seen.values())


def datagrams_received(pc: RTCPeerConnection) -> int:
    """Datagrams that reached ``pc``'s DTLS transports (SRTP, SRTCP and DTLS; STUN excluded).

    aiortc counts them for its transport stats; reading the counter costs nothing on the hot
    path, which is why liveness polls it instead of wrapping the receive path.
    """
    total = 0
    for transport in dtls_transports(pc):
        total += int(transport._RTCDtlsTransport__rx_packets)  # type: ignore[attr-defined]
    return total
