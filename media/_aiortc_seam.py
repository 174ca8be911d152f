"""Every use of aiortc's and aioice's private API, in one place.

aiortc (pinned in pyproject.toml) decodes everything it receives and encodes everything it sends.
An SFU must do neither, so we cut in at the packet level:

* receive: ``RTCDtlsTransport`` hands each decrypted, parsed RTP packet to the ``RtpReceiver``
  registered for it by calling ``receiver._handle_rtp_packet(packet, arrival_time_ms)``. We
  replace that method on the receiver instance, so packets reach our Producer instead of the
  jitter buffer and decoder (which are then never created). Once DTLS is up, SRTP datagrams
  skip aioice's queue and the DTLS transport's task: ``_DirectReceive`` decrypts each in the
  socket's callback and runs the transport's handler at once (``_recv_next``'s SRTP branch).
* send: ``RTCDtlsTransport._send_rtp(bytes)`` SRTP-protects and sends a serialized packet. We
  serialize rewritten packets ourselves with the sender's negotiated header-extension map.
  ``send_rtp_now`` does what that path does (SRTP with the transport's ``_tx_srtp``, the ICE
  connection's selected pair, its socket's ``sendto``) without the five coroutines between.
* feedback: ``sender._handle_rtcp_packet(packet)`` receives the subscriber's RTCP for that
  sender (NACK, PLI, FIR, REMB, RR). We replace it on the instance, so feedback reaches our
  Consumer. Upstream, ``receiver._send_rtcp_pli(media_ssrc)`` asks the publisher for a keyframe.
* sender reports: the sender's own RTCP loop sends SRs from private counters; we keep those
  counters true for the packets we send, so receivers can map RTP time to wall-clock time.
* sender reports in: ``receiver._handle_rtcp_packet(packet)`` receives the publisher's RTCP; we
  wrap it (aiortc still sees every packet) to read the NTP <-> RTP time pairs of its SRs.
* simulcast: aiortc negotiates no rid header extension and routes a packet of an unknown SSRC by
  its payload type alone. We add the rid extensions to a publishing transceiver's negotiated
  list (so the answer carries them and the transport parses them), and let the transport's
  ``RtpRouter`` route an unknown SSRC by its mid header extension first.
* bandwidth: aiortc's receive-side estimator (``aiortc.rate.RemoteBitrateEstimator``, from the
  abs-send-time extension) never runs on an intercepted receiver; the Producer runs one itself and
  sends REMB upstream with ``receiver._send_rtcp`` from the receiver's RTCP SSRC.
* transport-cc: aiortc negotiates no transport-wide sequence numbers and parses a transport
  feedback packet as a NACK. Publish side: ``record_transport_feedback`` wraps the ICE
  connection's ``data_received`` to note each numbered packet's arrival as it leaves the socket,
  and the DTLS transport's ``_handle_rtp_data`` to send the feedback that is due (media/twcc.py).
  Subscribe side: ``transport_wide_sender`` wraps ``_handle_rtcp_data`` to take the transport
  feedback out of each compound packet before aiortc parses the rest.
* liveness: ``RTCDtlsTransport`` counts the datagrams it receives for its stats; we read that
  counter to notice a path that went silent (media/liveness.py).
* host candidates: aioice gathers on every interface except loopback, with no filter; which
  addresses the server offers is configuration, so we replace its address lookup.
* hostile datagrams: aioice hands every datagram that is not STUN, from any address, to DTLS,
  whose receive loop dies on an empty one. ``guard_datagrams`` wraps, per peer connection, each
  ICE socket's ``datagram_received``, the ICE connection's ``data_received`` and the DTLS
  transport's RTP/RTCP handlers (media/datagram_guard.py says what is dropped).
* SRTP: the direct receive and send call libsrtp through pylibsrtp's binding on the session's
  own buffer (``srtp_protect``, ``srtp_unprotect``), without the wrapper's per-call allocation;
  pylibsrtp is pinned beside aiortc.

tests/media/test_seam.py pins each of these; an aiortc upgrade that moves one fails there first.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import aioice.ice
import aioice.stun
import aiortc.clock
import aiortc.rate
import pylibsrtp
import pylibsrtp._binding
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rate import RemoteBitrateEstimator as _RemoteBitrateEstimator
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as _DtlsState
from aiortc.rtcrtpparameters import (
    RTCRtcpFeedback,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
)
from aiortc.rtcrtpreceiver import NackGenerator as NackGenerator  # re-exported for the Producer
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtp import (
    RTCP_PSFB_APP,
    HeaderExtensionsMap,
    RtcpPsfbPacket,
    RtcpSrPacket,
    RtpPacket,
    is_rtcp,
    pack_remb_fci,
)

from .arrival import arrival_us, timestamp_arrivals
from .datagram_guard import DTLS, SRTP, STUN, DatagramGuard, classify
from .twcc import FeedbackRecorder, TransportWideSender, split_compound, transport_sequence

logger = logging.getLogger(__name__)

RtpHandler = Callable[[RtpPacket, int], Awaitable[None]]
RtcpHandler = Callable[[Any], Awaitable[None]]

_original_get_host_addresses = aioice.ice.get_host_addresses


#: Seconds from the NTP epoch (1900) to the Unix epoch (1970).
_NTP_UNIX_OFFSET_S = 2_208_988_800


def _current_ms() -> int:
    """``aiortc.clock.current_ms`` (milliseconds since 1900) from ``time.time`` instead of
    timezone-aware datetime arithmetic: aiortc's DTLS transport stamps every SRTP datagram
    with it, and the datetime way cost ~2 % of the server's forwarding CPU."""
    return int((time.time() + _NTP_UNIX_OFFSET_S) * 1000)


aiortc.clock.current_ms = _current_ms


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


def add_header_extensions(transceiver: RTCRtpTransceiver, extensions: dict[str, int]) -> None:
    """Negotiate ``extensions`` (URI -> the offer's id) on ``transceiver`` too.

    Call between setRemoteDescription and createAnswer: the answer then lists them and the
    transport parses them on the packets it receives.
    """
    present = {ext.uri for ext in transceiver._headerExtensions}
    for uri, ext_id in extensions.items():
        if uri not in present:
            transceiver._headerExtensions.append(
                RTCRtpHeaderExtensionParameters(id=ext_id, uri=uri)
            )


def add_codec_feedback(transceiver: RTCRtpTransceiver, feedback_type: str) -> None:
    """Answer ``a=rtcp-fb:<pt> feedback_type`` for each negotiated codec but RTX (aiortc keeps
    only the feedback types it knows). Call between setRemoteDescription and createAnswer."""
    for codec in transceiver._codecs:
        if codec.mimeType.lower().endswith("/rtx"):
            continue
        if not any(fb.type == feedback_type for fb in codec.rtcpFeedback):
            codec.rtcpFeedback.append(RTCRtcpFeedback(type=feedback_type))


_recorders: weakref.WeakKeyDictionary[Any, FeedbackRecorder] = weakref.WeakKeyDictionary()
_senders: weakref.WeakKeyDictionary[Any, TransportWideSender] = weakref.WeakKeyDictionary()


def record_transport_feedback(receiver: RTCRtpReceiver, ext_id: int) -> FeedbackRecorder:
    """Report the arrival of the packets numbered with transport-wide sequence numbers
    (extension ``ext_id``) on the receiver's transport (idempotent per transport), so that the
    publisher's send-side estimator drives its encoder.

    A packet's arrival is the kernel's stamp of its datagram (media/arrival.py: the event
    loop's lateness would read as queueing on the network), taken as the datagram leaves the
    socket, from its RTP header (SRTP leaves it in the clear). The feedback due goes out after a
    packet is handled.
    """
    dtls = receiver.transport
    recorder = _recorders.get(dtls)
    if recorder is not None:
        return recorder
    recorder = _recorders[dtls] = FeedbackRecorder()
    connection = dtls.transport._connection
    deliver = connection.data_received

    def data_received(data: bytes, component: int) -> None:
        if len(data) > 12 and not 192 <= data[1] <= 223:  # RTP, not RTCP (RFC 5761)
            seq = transport_sequence(data, ext_id)
            if seq is not None:
                recorder.record(seq, arrival_us(), int.from_bytes(data[8:12]))
        deliver(data, component)

    connection.data_received = data_received  # type: ignore[method-assign]
    handle = dtls._handle_rtp_data

    async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
        await handle(data, arrival_time_ms)
        for feedback in recorder.take(time.monotonic_ns() // 1000):
            try:
                await dtls._send_rtp(feedback)
            except ConnectionError:
                return

    dtls._handle_rtp_data = handle_rtp_data  # type: ignore[method-assign]
    return recorder


def transport_wide_sender(sender: RTCRtpSender) -> TransportWideSender:
    """The transport-wide numbering and estimate of the sender's transport (one per
    transport); its transport feedback is taken out of the RTCP and given to it."""
    dtls = sender.transport
    found = _senders.get(dtls)
    if found is not None:
        return found
    twcc = _senders[dtls] = TransportWideSender()
    handle = dtls._handle_rtcp_data

    async def handle_rtcp_data(data: bytes) -> None:
        feedback, rest = split_compound(data)
        for packet in feedback:
            twcc.on_feedback(packet)
        if rest:
            await handle(rest)

    dtls._handle_rtcp_data = handle_rtcp_data  # type: ignore[method-assign]
    return twcc


_mid_routed: weakref.WeakSet[Any] = weakref.WeakSet()


def route_by_mid(receiver: RTCRtpReceiver) -> None:
    """Route packets of an SSRC the transport does not know by their mid header extension.

    A simulcast publisher announces no SSRC: each layer's first packets carry the mid (and rid).
    aiortc registers the receiver's mid but routes by payload type only, which fails as soon as
    two video m-lines share a payload type. Idempotent per transport.
    """
    router = receiver.transport._rtp_router
    if router in _mid_routed:
        return
    _mid_routed.add(router)
    original = router.route_rtp

    def route_rtp(packet: RtpPacket) -> Any:
        if packet.ssrc not in router.ssrc_table:
            mid = packet.extensions.mid
            target = router.mid_table.get(mid) if mid is not None else None
            if target is not None:
                router.ssrc_table[packet.ssrc] = target
                return target
        return original(packet)

    router.route_rtp = route_rtp  # type: ignore[method-assign]


def route_feedback_of(sender: RTCRtpSender, ssrc: int) -> None:
    """Deliver RTCP about ``ssrc`` (the sender's RTX stream) to ``sender`` too.

    A receiver that gets only probes for a while (they travel on the RTX stream) sends REMBs
    that name only the RTX SSRC; aiortc would route them nowhere.
    """
    sender.transport._rtp_router.register_sender(sender, ssrc)


async def send_remb(receiver: RTCRtpReceiver, bitrate: int, ssrcs: list[int]) -> bool:
    """Send a REMB (the bitrate the publisher may use for ``ssrcs``); False if the receiver
    has not started its RTCP yet."""
    rtcp_ssrc = receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
    if rtcp_ssrc is None:
        return False
    packet = RtcpPsfbPacket(
        fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(bitrate, ssrcs)
    )
    await receiver._send_rtcp(packet)
    return True


class _WindowRate:
    """What ``RemoteBitrateEstimator.incoming_bitrate`` (aiortc's ``RateCounter``) does, in
    O(1): bits per second over the last ``window_ms``. aiortc's counter walks a 1000-slot ring
    one millisecond at a time on every call, which made the estimator cost as much as
    forwarding the packet to several subscribers."""

    __slots__ = ("_bytes", "_first_ms", "_items", "_scale", "_window_ms")

    def __init__(self, window_ms: int = 1000, scale: int = 8000) -> None:
        self._window_ms = window_ms
        self._scale = scale
        self._items: collections.deque[tuple[int, int]] = collections.deque()
        self._bytes = 0
        self._first_ms: int | None = None

    def add(self, value: int, now_ms: int) -> None:
        if self._first_ms is None:
            self._first_ms = now_ms
        self._erase_old(now_ms)
        self._items.append((now_ms, value))
        self._bytes += value

    def rate(self, now_ms: int) -> int | None:
        if self._first_ms is None:
            return None
        self._erase_old(now_ms)
        active = min(now_ms - self._first_ms + 1, self._window_ms)
        if not self._items or active <= 1:
            return None
        return round(self._scale * self._bytes / active)

    def reset(self) -> None:
        self._items.clear()
        self._bytes = 0
        self._first_ms = None

    def _erase_old(self, now_ms: int) -> None:
        oldest = now_ms - self._window_ms + 1
        items = self._items
        while items and items[0][0] < oldest:
            self._bytes -= items.popleft()[1]


def RemoteBitrateEstimator() -> _RemoteBitrateEstimator:
    """aiortc's receive-side estimator (abs-send-time, AIMD), with an O(1) rate counter and a
    cheaper minimum frame period (aiortc pops a list's head and walks 60 deltas in Python for
    each packet group)."""
    estimator = _RemoteBitrateEstimator()
    estimator.incoming_bitrate = _WindowRate()  # type: ignore[assignment]
    overuse = estimator.estimator
    # aiortc drops the oldest of 60 before taking the minimum: the minimum is over the newest
    # 59 and the new delta, and the 59 newest are what the deque keeps
    history: collections.deque[float] = collections.deque(
        maxlen=aiortc.rate.MIN_FRAME_PERIOD_HISTORY_LENGTH - 1
    )

    def update_min_frame_period(ts_delta: float) -> float:
        smallest = min(history, default=ts_delta)
        history.append(ts_delta)
        return ts_delta if ts_delta < smallest else smallest

    overuse.ts_delta_hist = history  # type: ignore[assignment]
    overuse.update_min_frame_period = update_min_frame_period  # type: ignore[method-assign]
    return estimator


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


class SendRefused(ConnectionError):
    """SRTP refused to protect a packet (one far behind the last sent: its replay window).

    A ConnectionError, so a sender drops the packet as it does on a transport that is down.
    """


async def send_rtp(sender: RTCRtpSender, data: bytes) -> None:
    """SRTP-protect and send one serialized RTP packet on the sender's transport.

    Raises ConnectionError when the transport is not connected, or ``SendRefused`` when SRTP
    will not protect it: a publisher can send any sequence number, and libsrtp refuses to
    protect one that falls behind its replay window (found by tests/fuzz; the error used to
    end the publisher's receive loop).
    """
    try:
        await sender.transport._send_rtp(data)
    except pylibsrtp.Error as exc:
        raise SendRefused(str(exc)) from None


def send_rtp_now(sender: RTCRtpSender, data: bytes) -> bool:
    """Send as :func:`send_rtp` does, at once, where the plain path applies: SRTP with the
    transport's own session, then the datagram to the ICE connection's selected pair (followed
    through a failover, as aioice's ``sendto`` does). False, having sent nothing, where the
    ICE connection's ``sendto`` is wrapped (copies to a standby path, media/_ice_seam.py):
    then await :func:`send_rtp`. Raises as :func:`send_rtp` does.

    aiortc's path goes through five coroutines for one ``sendto``; a forwarded packet was
    spending about a tenth of its CPU in them (bench/sfu_forwarding.py)."""
    dtls = sender._RTCRtpSender__transport  # type: ignore[attr-defined]
    if dtls._state is not _DtlsState.CONNECTED:
        raise ConnectionError("Cannot send encrypted RTP, not connected")
    connection = dtls._transport._connection
    if "sendto" in connection.__dict__:
        return False
    pair = connection._nominated.get(1)
    if pair is None:
        raise ConnectionError("Cannot send data, not connected")
    try:
        protected = srtp_protect(dtls._tx_srtp, data)
    except pylibsrtp.Error as exc:
        raise SendRefused(str(exc)) from None
    remote = pair.remote_candidate
    pair.protocol.transport.sendto(protected, (remote._network_host, remote.port))
    dtls._RTCDtlsTransport__tx_bytes += len(protected)
    dtls._RTCDtlsTransport__tx_packets += 1
    return True


# --- SRTP without pylibsrtp's per-call wrapper --------------------------------------------------

_srtp_lib: Any = pylibsrtp._binding.lib
_srtp_ffi: Any = pylibsrtp._binding.ffi


def _srtp_process(session: pylibsrtp.Session, data: bytes, function: Any, trailer: int) -> bytes:
    """What pylibsrtp's ``Session`` does for one packet, with its length pointer allocated once
    per session (pylibsrtp allocates one per call and checks the packet's type): ~0.8 of the
    ~2.8 us a 1 KB packet's protect cost. The same libsrtp call on the session's own buffer, the
    same errors (pylibsrtp 1.0.0, pinned: tests/media/test_seam.py)."""
    try:
        srtp, cdata, buffer, length = session._teleconsult_srtp  # type: ignore[attr-defined]
    except AttributeError:
        cdata = session._cdata  # type: ignore[attr-defined]
        srtp = session._srtp[0]  # type: ignore[attr-defined]
        buffer, length = session._buffer, _srtp_ffi.new("int *")  # type: ignore[attr-defined]
        session._teleconsult_srtp = (srtp, cdata, buffer, length)  # type: ignore[attr-defined]
    size = len(data)
    if size > len(buffer) - trailer:
        raise ValueError("packet is too long")
    length[0] = size
    buffer[0:size] = data
    status = function(srtp, cdata, length)
    if status:
        pylibsrtp._srtp_assert(status)  # raises pylibsrtp.Error, as the session would
    result: bytes = buffer[0 : length[0]]
    return result


def srtp_protect(session: pylibsrtp.Session, packet: bytes) -> bytes:
    """``session.protect(packet)``, cheaper (:func:`_srtp_process`) where ``session`` is
    pylibsrtp's own (a stand-in's method is called)."""
    if type(session) is not pylibsrtp.Session:
        return session.protect(packet)
    return _srtp_process(session, packet, _srtp_lib.srtp_protect, pylibsrtp.SRTP_MAX_TRAILER_LEN)


def srtp_unprotect(session: pylibsrtp.Session, packet: bytes) -> bytes:
    """``session.unprotect(packet)``, as :func:`srtp_protect`."""
    if type(session) is not pylibsrtp.Session:
        return session.unprotect(packet)
    return _srtp_process(session, packet, _srtp_lib.srtp_unprotect, 0)


def srtp_unprotect_rtcp(session: pylibsrtp.Session, packet: bytes) -> bytes:
    """``session.unprotect_rtcp(packet)``, as :func:`srtp_protect`."""
    if type(session) is not pylibsrtp.Session:
        return session.unprotect_rtcp(packet)
    return _srtp_process(session, packet, _srtp_lib.srtp_unprotect_rtcp, 0)


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


async def close_peer_connection(pc: RTCPeerConnection) -> None:
    """Close ``pc``, even one a half-applied description left broken.

    aiortc's ``close()`` stops at the first transceiver it cannot stop (one an offer it could not
    answer left without a transport) and never finishes, leaving sockets open and a second
    ``close()`` waiting forever. Then we stop each part that can be stopped ourselves.
    """
    try:
        await pc.close()
        return
    except Exception as exc:
        logger.info("closing a broken peer connection part by part (%s)", type(exc).__name__)
    stops: list[Callable[[], Awaitable[None]]] = []
    for transceiver in pc.getTransceivers():
        stops += [transceiver.receiver.stop, transceiver.sender.stop]
    for dtls in tuple(pc._RTCPeerConnection__dtlsTransports):  # type: ignore[attr-defined]
        stops += [dtls.stop, dtls.transport.stop]
    for ice in tuple(pc._RTCPeerConnection__iceTransports):  # type: ignore[attr-defined]
        stops.append(ice.stop)
    for stop in stops:
        try:
            await stop()
        except Exception:  # each part is stopped on its own, as far as it goes
            continue
    closed = pc._RTCPeerConnection__isClosed  # type: ignore[attr-defined]
    if isinstance(closed, asyncio.Future) and not closed.done():
        closed.set_result(True)
    pc.remove_all_listeners()


# --- hostile datagrams ------------------------------------------------------------------------


def guard_datagrams(pc: RTCPeerConnection, guard: DatagramGuard) -> None:
    """Filter every datagram that reaches ``pc``'s ICE sockets before aioice and DTLS see it.

    aiortc creates its ICE and DTLS transports lazily (on an offer or a transceiver); we wrap
    the private factory on this instance, so each one is guarded from its creation, before it
    gathers (opens sockets).
    """
    create = pc._RTCPeerConnection__createDtlsTransport  # type: ignore[attr-defined]

    def create_guarded() -> RTCDtlsTransport:
        dtls: RTCDtlsTransport = create()
        _guard_dtls(dtls, guard)
        _guard_ice(dtls, guard)
        return dtls

    pc._RTCPeerConnection__createDtlsTransport = create_guarded  # type: ignore[attr-defined]


def _guard_ice(dtls: RTCDtlsTransport, guard: DatagramGuard) -> None:
    connection = dtls.transport.iceGatherer._connection
    deliver = _DirectReceive(dtls, connection, guard).deliver

    def data_received(data: bytes, component: int) -> None:
        # The last gate before DTLS, whichever way a datagram came (a socket receives from its
        # creation, a moment before gather_candidates returns and its protocol is guarded).
        kind = classify(data)
        if kind in (DTLS, SRTP):
            deliver(data, component, kind)
        else:
            guard.drop("stun_malformed" if kind == STUN else kind)

    connection.data_received = data_received  # type: ignore[method-assign]

    gather = connection.gather_candidates

    async def gather_candidates() -> None:
        try:
            await gather()
        finally:
            for protocol in connection._protocols:
                _guard_protocol(protocol, connection, guard)

    connection.gather_candidates = gather_candidates  # type: ignore[method-assign]


class _DirectReceive:
    """Hand SRTP and SRTCP datagrams to the DTLS transport's handlers in the socket's callback.

    aiortc's way: the ICE connection puts each datagram in a queue; the DTLS transport's task,
    woken for it, takes it out through four coroutines (``Connection.recvfrom``, ``recv``,
    ``RTCIceTransport._recv``, ``RTCDtlsTransport._recv_next``), decrypts it and awaits its
    handler. That hop cost a forwarded packet a tenth of its CPU (bench/sfu_forwarding.py).
    Here, while the DTLS task waits on an empty queue (so nothing it holds can be overtaken),
    a datagram is decrypted and its handler's coroutine is run at once, as Python 3.12's eager
    tasks run one: it almost always finishes without waiting (our Producer and Consumer send
    synchronously); when it must wait (a standby path's copy, a NACK's send), a task finishes
    it, and datagrams arriving meanwhile queue behind it here, in order. DTLS records, and
    everything before the handshake is done, take aiortc's way.
    """

    __slots__ = ("_backlog", "_deliver", "_dtls", "_finishing", "_guard", "_queue")

    def __init__(
        self, dtls: RTCDtlsTransport, connection: aioice.ice.Connection, guard: DatagramGuard
    ) -> None:
        self._dtls = dtls
        self._deliver = connection.data_received
        self._queue: asyncio.Queue[Any] = connection._queue
        self._guard = guard
        # datagrams behind a handler that is waiting; the connection's too, for _ice_seam.unread
        self._backlog: collections.deque[tuple[bytes, int]] = collections.deque()
        connection._teleconsult_backlog = self._backlog  # type: ignore[attr-defined]
        # the task finishing a waiting handler, held here: a task nobody references may be
        # collected before it ends
        self._finishing: asyncio.Future[None] | None = None

    def deliver(self, data: bytes, component: int, kind: str) -> None:
        dtls = self._dtls
        if kind != SRTP or dtls._rx_srtp is None or dtls._state is not _DtlsState.CONNECTED:
            self._deliver(data, component)
            return
        if self._backlog:
            self._backlog.append((data, component))
            return
        queue = self._queue
        # the DTLS task is not waiting on an empty queue: it holds a datagram, or has one to take
        if not queue._getters or not queue.empty():  # type: ignore[attr-defined]
            self._deliver(data, component)
            return
        pending = self._handle(data)
        if pending is not None:
            self._backlog.append(_HOLD)  # later datagrams wait behind this handler
            self._finishing = asyncio.ensure_future(self._finish(*pending))

    def _handle(self, data: bytes) -> tuple[Any, Any, str] | None:
        """Decrypt and handle one datagram as ``_recv_next`` does; (coroutine, what it waits
        for, the guard's reason should it fail) when its handler has to wait."""
        dtls = self._dtls
        dtls._RTCDtlsTransport__rx_bytes += len(data)  # type: ignore[attr-defined]
        dtls._RTCDtlsTransport__rx_packets += 1  # type: ignore[attr-defined]
        try:
            if is_rtcp(data):
                reason = "rtcp_error"
                coroutine = dtls._handle_rtcp_data(srtp_unprotect_rtcp(dtls._rx_srtp, data))
            else:
                reason = "rtp_error"
                arrival_time_ms = _current_ms()
                coroutine = dtls._handle_rtp_data(
                    srtp_unprotect(dtls._rx_srtp, data), arrival_time_ms
                )
        except pylibsrtp.Error:
            return None  # as aiortc: a datagram SRTP refuses is dropped
        try:
            waits_for = coroutine.send(None)
        except StopIteration:
            return None
        except Exception as exc:  # the guarded handlers catch their own; this is a backstop
            self._guard.drop(reason, type(exc).__name__)
            return None
        return coroutine, waits_for, reason

    async def _finish(self, coroutine: Any, waits_for: Any, reason: str) -> None:
        """Run a waiting handler to its end, then the datagrams that came in meanwhile, in
        order (each stays at the backlog's head while it is handled)."""
        backlog = self._backlog
        try:
            await self._resume(coroutine, waits_for, reason)
            backlog.popleft()  # the hold
            while backlog:
                data, _component = backlog[0]
                pending = self._handle(data) if self._dtls._rx_srtp is not None else None
                if pending is not None:
                    await self._resume(*pending)
                backlog.popleft()
        finally:
            backlog.clear()
            self._finishing = None

    async def _resume(self, coroutine: Any, waits_for: Any, reason: str) -> None:
        """Drive ``coroutine``, suspended on ``waits_for``, to its end, as a task would."""
        while True:
            try:
                if waits_for is None:
                    await asyncio.sleep(0)  # a bare yield
                else:
                    # as a task does with the future a coroutine yields: clear its flag, wait
                    waits_for._asyncio_future_blocking = False
                    await waits_for
            except asyncio.CancelledError:
                coroutine.close()
                raise
            except Exception:
                pass  # the coroutine sees the outcome as it resumes
            try:
                waits_for = coroutine.send(None)
            except StopIteration:
                return
            except Exception as exc:
                self._guard.drop(reason, type(exc).__name__)
                return


#: The backlog's head while a handler run from the socket's callback waits.
_HOLD = (b"", 0)


def _guard_protocol(
    protocol: aioice.ice.StunProtocol, connection: aioice.ice.Connection, guard: DatagramGuard
) -> None:
    if getattr(protocol, "_teleconsult_guarded", False):
        return
    protocol._teleconsult_guarded = True  # type: ignore[attr-defined]
    timestamp_arrivals(protocol)  # for transport-cc feedback (media/arrival.py)
    handle_stun = protocol.datagram_received
    component = protocol.local_candidate.component
    # Addresses that sent an authenticated check here: they know our ICE password, so they are
    # the peer. A browser sends its first DTLS flight as soon as one of its checks succeeds,
    # before our own check of that pair has (and, on a subscribe transport, before we have even
    # applied its answer); dropping that flight would cost a DTLS retransmission timeout.
    checked: set[tuple[str, int]] = set()

    def datagram_received(data: bytes | str, addr: tuple[Any, ...]) -> None:
        if not isinstance(data, bytes):
            guard.drop("unclassifiable")
            return
        kind = classify(data)
        if kind == STUN:
            try:
                # aioice raises struct.error (not ValueError) on a short attribute, out of
                # the event loop's callback: a traceback per datagram
                message = aioice.stun.parse_message(data)
            except Exception as exc:
                guard.drop("stun_malformed", type(exc).__name__)
                return
            if _authenticated_check(connection, message):
                checked.add((addr[0], addr[1]))
            try:
                handle_stun(data, addr)
            except Exception as exc:
                guard.drop("stun_error", type(exc).__name__)
        elif kind in (DTLS, SRTP):
            if (addr[0], addr[1]) in checked or _ice_verified(
                connection, protocol, addr[0], addr[1]
            ):
                connection.data_received(data, component)
            else:
                guard.drop("unverified_source")
        else:
            guard.drop(kind)

    protocol.datagram_received = datagram_received  # type: ignore[method-assign]


def _authenticated_check(connection: aioice.ice.Connection, message: aioice.stun.Message) -> bool:
    """A binding request signed with our ICE password, as aioice itself checks one."""
    username = message.attributes.get("USERNAME")
    return (
        message.message_class == aioice.stun.Class.REQUEST
        and message.message_method == aioice.stun.Method.BINDING
        and isinstance(username, str)
        and connection._valid_username(username)
        and message.check_message_integrity(connection.local_password.encode("utf8"))
    )


def _ice_verified(
    connection: aioice.ice.Connection, protocol: aioice.ice.StunProtocol, host: str, port: int
) -> bool:
    """Whether ICE verified ``host:port`` on ``protocol``: a pair whose check succeeded, or that
    the peer nominated in an authenticated check (its DTLS can arrive before our own check
    of that pair has succeeded)."""
    nominated = connection._nominated.get(protocol.local_candidate.component)
    if nominated is not None and nominated.protocol is protocol:
        remote = nominated.remote_candidate
        if remote.port == port and remote._network_host == host:
            return True
    succeeded = aioice.ice.CandidatePair.State.SUCCEEDED
    for pair in connection._check_list:
        remote = pair.remote_candidate
        if (
            pair.protocol is protocol
            and remote.port == port
            and remote._network_host == host
            and (pair.state == succeeded or pair.remote_nominated)
        ):
            return True
    return False


def _guard_dtls(dtls: RTCDtlsTransport, guard: DatagramGuard) -> None:
    """After SRTP: a packet that fails to parse or to be handled (by aiortc or by our Producer
    and Consumer handlers) is dropped, never the end of the DTLS receive loop."""
    handle_rtp = dtls._handle_rtp_data
    handle_rtcp = dtls._handle_rtcp_data

    async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
        try:
            await handle_rtp(data, arrival_time_ms)
        except Exception as exc:
            guard.drop("rtp_error", type(exc).__name__)

    async def handle_rtcp_data(data: bytes) -> None:
        try:
            await handle_rtcp(data)
        except Exception as exc:
            guard.drop("rtcp_error", type(exc).__name__)

    dtls._handle_rtp_data = handle_rtp_data  # type: ignore[method-assign]
    dtls._handle_rtcp_data = handle_rtcp_data  # type: ignore[method-assign]

    # SCTP (an offer with a data channel starts it): aiortc's handler asserts on a malformed
    # INIT, and that assertion would end the same receive loop.
    register = dtls._register_data_receiver

    def register_data_receiver(receiver: Any) -> None:
        handle_data = receiver._handle_data

        async def guarded(data: bytes) -> None:
            try:
                await handle_data(data)
            except Exception as exc:
                guard.drop("sctp_error", type(exc).__name__)

        receiver._handle_data = guarded
        register(receiver)

    dtls._register_data_receiver = register_data_receiver  # type: ignore[method-assign]


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
