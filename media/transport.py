"""Transport: one RTCPeerConnection of one participant, either for publishing or subscribing.

As in LiveKit, each participant has two: on the publish Transport the client offers and the
server answers; on the subscribe Transport the server offers, so the server's renegotiations
never collide with a client's offer.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters
from aiortc.sdp import SessionDescription, candidate_from_sdp

from . import _aiortc_seam as seam
from . import _ice_seam
from .bandwidth import SharedEstimate
from .consumer import Consumer, codecs_match
from .datagram_guard import DatagramGuard
from .errors import BadSdp, ClosedError, InvalidState
from .paths import PathMonitor, Switch, audio_packets, use_addresses
from .producer import Producer
from .simulcast import complete_answer, parse_offer
from .tracking import track
from .twcc import URI_TRANSPORT_CC, offer_transport_cc, transport_cc_ids

logger = logging.getLogger(__name__)

#: Answer a publisher's transport-cc offer: it then estimates its uplink itself from our
#: feedback (and probes), instead of following our receive-side REMB, which grows ~7 % a second.
#: A switch, because on a loaded machine both can hold a publisher under its top layer; the
#: subscriber leg always offers transport-cc.
PUBLISH_TRANSPORT_CC = True

Role = Literal["publish", "subscribe"]

#: After a path switch, keyframes are asked for again this much later (see _path_switched).
KEYFRAME_AGAIN_S = 1.0
#: A session description larger than this is refused before parsing.
MAX_SDP_BYTES = 64 * 1024


@dataclass
class PublishResult:
    answer_sdp: str
    added: list[Producer] = field(default_factory=list)
    removed: list[Producer] = field(default_factory=list)


def parse_sdp(sdp: object, expected_type: str) -> SessionDescription:
    """Validate an untrusted session description before aiortc sees it."""
    if not isinstance(sdp, str) or not sdp.strip():
        raise BadSdp("the SDP is empty or not a string")
    if len(sdp) > MAX_SDP_BYTES:
        raise BadSdp("the SDP is too large")
    if not sdp.lstrip().startswith("v=0"):
        raise BadSdp("the SDP must start with v=0")
    try:
        description = SessionDescription.parse(sdp)
    except Exception as exc:  # the parser raises whatever the garbage provokes
        raise BadSdp(f"the SDP does not parse ({type(exc).__name__})") from None
    media = [m for m in description.media if m.kind in ("audio", "video")]
    if not media:
        raise BadSdp("the SDP has no audio or video section")
    for m in media:
        if m.ice is None or not m.ice.usernameFragment or not m.ice.password:
            raise BadSdp("a media section has no ICE credentials")
        if not m.dtls or not m.dtls.fingerprints:
            raise BadSdp("a media section has no DTLS fingerprint")
    # What aiortc accepts but then cannot answer or even close (found by tests/fuzz): a section
    # without a mid or with a repeated one, a BUNDLE group naming no section.
    mids = [m.rtp.muxId for m in description.media]
    if any(not mid for mid in mids) or len(set(mids)) != len(mids):
        raise BadSdp("each media section needs a mid of its own")
    for group in description.group:
        if group.semantic == "BUNDLE" and not {str(i) for i in group.items} <= set(mids):
            raise BadSdp("a BUNDLE group names a media section that is not there")
    description.type = expected_type
    return description


def ice_configuration(ice_servers: list[dict[str, Any]]) -> RTCConfiguration:
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in ice_servers
    ]
    # max-bundle: with aiortc's default ("balanced") the second m-line of a kind gets a transport
    # of its own that BUNDLE then discards, and its Consumer could never send.
    return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


class Transport:
    """Wraps one RTCPeerConnection; owns the Producers or Consumers carried on it."""

    def __init__(
        self,
        role: Role,
        *,
        ice_servers: list[dict[str, Any]] | None = None,
        ice_addresses: Sequence[str] = (),
        app_data: dict[str, Any] | None = None,
        watch_paths: bool = False,
    ) -> None:
        self.id = uuid.uuid4().hex
        self.role: Role = role
        self.app_data: dict[str, Any] = dict(app_data or {})
        self.ice_addresses: tuple[str, ...] = tuple(ice_addresses)
        self._pc = RTCPeerConnection(ice_configuration(ice_servers or []))
        # before the datagram guard: it wraps (and so guards) the gathering we set here
        use_addresses(self._pc, self.ice_addresses)
        # a peer answering late (a busy machine) keeps its consent (media/_ice_seam.py)
        _ice_seam.patient_consent(self._pc)
        self._datagrams = DatagramGuard(self.id)
        seam.guard_datagrams(self._pc, self._datagrams)
        self._pc.on("connectionstatechange", self._on_connection_state)
        self._producers: dict[str, Producer] = {}
        self._producer_by_transceiver: dict[int, Producer] = {}
        self._consumers: dict[str, Consumer] = {}
        # a subscribe transport's estimate is shared among its video Consumers
        self._shared_estimate = SharedEstimate()
        self._closed = False
        self._close_done = asyncio.Event()
        self._lock = asyncio.Lock()
        self._on_close: list[Callable[[Transport], Any]] = []
        self._on_negotiation_needed: list[Callable[[Transport], Any]] = []
        self._on_state: list[Callable[[Transport, str], Any]] = []
        self._needs_negotiation = False
        # one path per provider address: watch them all and move off a dead one (media/paths.py);
        # ``watch_paths``: probe even a single one (a participant's connection per provider: the
        # probes keep it alive and tell the page at the other end that the path answers)
        self._paths: PathMonitor | None = None
        if len(self.ice_addresses) > 1 or (watch_paths and self.ice_addresses):
            self._paths = PathMonitor(
                self._ice_connection,
                on_switch=self._path_switched,
                on_state=self._path_state,
                duplicate=audio_packets(self._pc),
            )
        self._on_path_switch: list[Callable[[Transport, Switch], Any]] = []
        self._on_path_state: list[Callable[[Transport, str, bool], Any]] = []
        track(self)

    # --- state -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def connection_state(self) -> str:
        return str(self._pc.connectionState)

    @property
    def dtls_state(self) -> str | None:
        """The state of the (bundled) DTLS transport, None before there is one."""
        transports = seam.dtls_transports(self._pc)
        return str(transports[0].state) if transports else None

    @property
    def datagrams_received(self) -> int:
        """Datagrams (SRTP, SRTCP, DTLS) received so far: liveness watches it move."""
        return seam.datagrams_received(self._pc)

    @property
    def signaling_state(self) -> str:
        return str(self._pc.signalingState)

    @property
    def producers(self) -> list[Producer]:
        return list(self._producers.values())

    @property
    def consumers(self) -> list[Consumer]:
        return list(self._consumers.values())

    @property
    def needs_negotiation(self) -> bool:
        return self._needs_negotiation

    def datagram_stats(self) -> dict[str, int]:
        """Datagrams dropped at this transport's ICE sockets, by reason (docs/hostile-input.md)."""
        return self._datagrams.stats()

    def on_close(self, callback: Callable[[Transport], Any]) -> None:
        self._on_close.append(callback)

    def on_negotiation_needed(self, callback: Callable[[Transport], Any]) -> None:
        """Subscribe transports: ``callback(self)`` when Consumers came or went."""
        self._on_negotiation_needed.append(callback)

    def on_connection_state(self, callback: Callable[[Transport, str], Any]) -> None:
        self._on_state.append(callback)

    # --- network paths -----------------------------------------------------------------------

    @property
    def paths(self) -> PathMonitor | None:
        """The path monitor, when this Transport has more than one address (one per provider)."""
        return self._paths

    @property
    def selected_path(self) -> tuple[str, int, str, int] | None:
        """The candidate pair media is sent on: (local host, port, remote host, port)."""
        connection = self._ice_connection()
        return None if connection is None else _ice_seam.selected(connection)

    def unread(self) -> bool:
        """Datagrams for this Transport wait to be read or handled: the event loop is behind
        on it (after a stall it reads one datagram per socket per pass), so a silence of its
        streams now says nothing of its path."""
        connection = self._ice_connection()
        return connection is not None and _ice_seam.unread(connection)

    def on_path_switch(self, callback: Callable[[Transport, Switch], Any]) -> None:
        """``callback(self, switch)`` when the path monitor moved the selected pair."""
        self._on_path_switch.append(callback)

    def on_path_state(self, callback: Callable[[Transport, str, bool], Any]) -> None:
        """``callback(self, address, alive)`` when the paths on one of our addresses stop or
        start answering."""
        self._on_path_state.append(callback)

    def _path_state(self, address: str, alive: bool) -> None:
        for callback in tuple(self._on_path_state):
            callback(self, address, alive)

    def _request_keyframes(self, *, now: bool = False) -> None:
        if self._closed:
            return
        for consumer in self._consumers.values():
            consumer.request_keyframe(now=now)
        for producer in self._producers.values():
            producer.request_keyframe(now=now)  # audio Producers ignore it

    def _ice_connection(self) -> Any:
        transports = seam.dtls_transports(self._pc)
        return _ice_seam.ice_connection(transports[0]) if transports else None

    def _path_switched(self, switch: Switch) -> None:
        # Video resumes on a keyframe: what was in flight on the dead path is lost. Asked now,
        # whatever was asked just before (that request, or the keyframe it brought, went the
        # dead way: in the rig the window held this one back, and the keyframe came 0.15-0.3 s
        # after the media), and once more a second later: the peer may still send on the dead
        # path for a moment (it notices on its own), and a keyframe sent there is lost too.
        self._request_keyframes(now=True)
        asyncio.get_running_loop().call_later(KEYFRAME_AGAIN_S, self._request_keyframes)
        for callback in tuple(self._on_path_switch):
            callback(self, switch)

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"transport {self.id} is closed")

    def _check_role(self, role: Role) -> None:
        if self.role != role:
            raise InvalidState(f"this is a {self.role} transport")

    async def _on_connection_state(self) -> None:
        state = self.connection_state
        logger.debug("transport %s %s: %s", self.id, self.role, state)
        if state == "connected":
            if self._paths is not None and not self._closed:
                self._paths.start()
            for consumer in self._consumers.values():
                consumer.request_keyframe()
        for callback in tuple(self._on_state):
            callback(self, state)

    # --- publish -----------------------------------------------------------------------------

    async def publish(self, offer_sdp: object) -> PublishResult:
        """Apply a client's offer; create a Producer per new incoming track. Returns the answer."""
        self._check_open()
        self._check_role("publish")
        offer = parse_sdp(offer_sdp, "offer")
        rtx_ssrcs = {
            m.rtp.muxId: int(group.items[1])
            for m in offer.media
            for group in m.ssrc_group
            if group.semantic == "FID" and len(group.items) == 2
        }
        simulcast = parse_offer(str(offer_sdp))
        transport_cc = transport_cc_ids(str(offer_sdp)) if PUBLISH_TRANSPORT_CC else {}
        async with self._lock:
            self._check_open()
            if self._pc.signalingState != "stable":
                raise InvalidState("an offer is already being handled")
            try:
                await self._pc.setRemoteDescription(
                    RTCSessionDescription(sdp=str(offer_sdp), type="offer")
                )
            except Exception as exc:
                raise BadSdp(f"the offer was refused ({type(exc).__name__}: {exc})") from None
            self._check_open()
            result = PublishResult(answer_sdp="")
            for transceiver in self._pc.getTransceivers():
                layers = simulcast.get(transceiver.mid or "")
                if layers is not None:
                    # negotiated again on each offer: aiortc recomputes the list from its own
                    seam.add_header_extensions(transceiver, layers.extensions)
                cc_id = transport_cc.get(transceiver.mid or "")
                if cc_id is not None:
                    # the publisher numbers its packets and we report their arrival: its own
                    # send-side estimator drives its encoder (REMB still caps it)
                    seam.add_header_extensions(transceiver, {URI_TRANSPORT_CC: cc_id})
                    seam.add_codec_feedback(transceiver, "transport-cc")
                    seam.record_transport_feedback(transceiver.receiver, cc_id)
                producer = self._producer_by_transceiver.get(id(transceiver))
                sending = seam.offer_direction(transceiver) in ("recvonly", "sendrecv")
                if producer is None and sending:
                    codecs = seam.negotiated_codecs(transceiver)
                    codec = next((c for c in codecs if not _is_rtx(c)), None)
                    if codec is None:
                        continue
                    rtx = next(
                        (
                            c.payloadType
                            for c in codecs
                            if _is_rtx(c) and c.parameters.get("apt") == codec.payloadType
                        ),
                        None,
                    )
                    transceiver.direction = "recvonly"
                    producer = Producer(
                        transceiver,
                        codec,
                        app_data=dict(self.app_data),
                        rtx_payload_type=rtx,
                        rtx_ssrc=rtx_ssrcs.get(transceiver.mid or ""),
                        rids=layers.rids if layers is not None else (),
                    )
                    self._producers[producer.id] = producer
                    self._producer_by_transceiver[id(transceiver)] = producer
                    producer.on_close(self._forget_producer)
                    result.added.append(producer)
                elif producer is not None and not sending:
                    result.removed.append(producer)
                if producer is not None and cc_id is not None:
                    producer.uplink_by_transport_cc()
            try:
                answer = await self._pc.createAnswer()
                await self._pc.setLocalDescription(answer)
                # only the layers of the Producers we have (one made before offered none)
                accepted = {
                    mid: offer
                    for mid, offer in simulcast.items()
                    if any(p.mid == mid and p.simulcast for p in self._producers.values())
                }
                result.answer_sdp = complete_answer(self._pc.localDescription.sdp, accepted)
            except Exception as exc:
                unanswerable: Exception | None = exc
            else:
                unanswerable = None
        if unanswerable is not None:
            # aiortc took the offer but cannot answer it (a BUNDLE group naming no section,
            # sections without a mid ...; found by tests/fuzz). The connection is stuck
            # half-negotiated, so it goes; the client may publish afresh on a new one.
            await self.close()
            name = type(unanswerable).__name__
            raise BadSdp(f"the offer cannot be answered ({name}: {unanswerable})") from None
        for producer in result.removed:
            await producer.close()
        return result

    def _forget_producer(self, producer: Producer) -> None:
        self._producers.pop(producer.id, None)
        for key, value in list(self._producer_by_transceiver.items()):
            if value is producer:
                del self._producer_by_transceiver[key]

    # --- subscribe ---------------------------------------------------------------------------

    def consume(self, producer: Producer, app_data: dict[str, Any] | None = None) -> Consumer:
        """Add a Consumer of ``producer``; it starts once the next offer is answered."""
        self._check_open()
        self._check_role("subscribe")
        if producer.closed:
            raise ClosedError(f"producer {producer.id} is closed")
        transceiver = self._pc.addTransceiver(seam.IdleTrack(producer.kind), direction="sendonly")
        preferences = _preferences_for(producer)
        if preferences:
            transceiver.setCodecPreferences(preferences)
        consumer = Consumer(
            producer,
            transceiver,
            app_data={**(app_data or {}), "transport_id": self.id},
            shared=self._shared_estimate,
        )
        self._consumers[consumer.id] = consumer
        consumer.on_close(self._consumer_closed)
        self._set_needs_negotiation()
        return consumer

    def _consumer_closed(self, consumer: Consumer) -> None:
        self._consumers.pop(consumer.id, None)
        if self._closed:
            return
        transceiver = consumer._transceiver
        # aiortc cannot remove an m-line; the transceiver goes inactive for good.
        transceiver.direction = "inactive"
        track = transceiver.sender.track
        if track is not None:
            track.stop()
        self._set_needs_negotiation()

    def _set_needs_negotiation(self) -> None:
        self._needs_negotiation = True
        for callback in tuple(self._on_negotiation_needed):
            callback(self)

    def inactive_mids(self) -> list[str]:
        """Mids of subscribe transceivers whose Consumer is gone."""
        live = {id(c._transceiver) for c in self._consumers.values()}
        return [
            t.mid for t in self._pc.getTransceivers() if t.mid is not None and id(t) not in live
        ]

    async def create_offer(self) -> str:
        """Offer the current set of Consumers to the subscriber."""
        self._check_open()
        self._check_role("subscribe")
        async with self._lock:
            self._check_open()
            if self._pc.signalingState != "stable":
                raise InvalidState("the previous offer has not been answered")
            self._needs_negotiation = False
            offer = await self._pc.createOffer()
            # transport-cc offered (aiortc offers none): a browser then reports every packet's
            # arrival and the Consumers estimate its bandwidth from that instead of its REMB
            offer = RTCSessionDescription(sdp=offer_transport_cc(offer.sdp), type="offer")
            await self._pc.setLocalDescription(offer)
            return str(self._pc.localDescription.sdp)

    async def apply_answer(self, answer_sdp: object) -> None:
        """Apply the subscriber's answer; Consumers it accepted start forwarding."""
        self._check_open()
        self._check_role("subscribe")
        parse_sdp(answer_sdp, "answer")
        async with self._lock:
            self._check_open()
            if self._pc.signalingState != "have-local-offer":
                raise InvalidState("there is no offer to answer")
            try:
                await self._pc.setRemoteDescription(
                    RTCSessionDescription(sdp=str(answer_sdp), type="answer")
                )
            except Exception as exc:
                raise BadSdp(f"the answer was refused ({type(exc).__name__}: {exc})") from None
            transport_cc = transport_cc_ids(str(answer_sdp))
            for transceiver in self._pc.getTransceivers():
                cc_id = transport_cc.get(transceiver.mid or "")
                if cc_id is not None:
                    seam.add_header_extensions(transceiver, {URI_TRANSPORT_CC: cc_id})
            connected = self.connection_state == "connected"
            for consumer in self._consumers.values():
                if not consumer.ready and consumer._negotiated() and connected:
                    # On a new connection the request waits for "connected": a keyframe sent
                    # before then is lost, and the next request would wait out the window.
                    consumer.request_keyframe()

    # --- ICE ---------------------------------------------------------------------------------

    async def add_ice_candidate(self, candidate: dict[str, Any] | None) -> None:
        """Add a trickled remote candidate; ``None`` ends them."""
        self._check_open()
        if self._pc.remoteDescription is None:
            raise InvalidState("no remote description yet")
        if candidate is None:
            return  # end of candidates: aiortc keeps checking the pairs it has
        text = candidate.get("candidate")
        if not isinstance(text, str) or len(text) > 1024:
            raise BadSdp("the candidate is not a string")
        if text == "":
            return
        try:
            parsed = candidate_from_sdp(text.removeprefix("candidate:"))
        except Exception:
            raise BadSdp("the candidate does not parse") from None
        parsed.sdpMid = candidate.get("sdpMid")
        parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
        if parsed.sdpMid is None and parsed.sdpMLineIndex is None:
            raise BadSdp("the candidate names no media section")
        try:
            await self._pc.addIceCandidate(parsed)
        except Exception as exc:
            raise BadSdp(f"the candidate was refused ({type(exc).__name__})") from None

    # --- close -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Close the Producers or Consumers, then the peer connection. Idempotent: a second
        caller returns when the first close has finished (a parent closing its children must
        not go on while one of them is still closing)."""
        if self._closed:
            await self._close_done.wait()
            return
        self._closed = True
        try:
            if self._paths is not None:
                await self._paths.close()
            for producer in tuple(self._producers.values()):
                await producer.close()
            for consumer in tuple(self._consumers.values()):
                await consumer.close()
            self._producers.clear()
            self._producer_by_transceiver.clear()
            self._consumers.clear()
            await seam.close_peer_connection(self._pc)
            for callback in tuple(self._on_close):
                callback(self)
            self._on_close.clear()
            self._on_negotiation_needed.clear()
            self._on_state.clear()
            self._on_path_switch.clear()
            self._on_path_state.clear()
        finally:
            self._close_done.set()


def _is_rtx(codec: Any) -> bool:
    return str(codec.mimeType).lower().endswith("/rtx")


def _preferences_for(producer: Producer) -> list[RTCRtpCodecCapability]:
    """Offer the subscriber exactly the Producer's codec (and RTX for video)."""
    capabilities = RTCRtpSender.getCapabilities(producer.kind).codecs
    chosen = [
        c
        for c in capabilities
        if not _is_rtx(c)
        and codecs_match(_as_parameters(c, producer.codec.payloadType or 0), producer.codec)
    ][:1]
    if not chosen:
        return []
    rtx = [c for c in capabilities if _is_rtx(c)]
    return chosen + rtx


def _as_parameters(capability: RTCRtpCodecCapability, payload_type: int) -> RTCRtpCodecParameters:
    return RTCRtpCodecParameters(
        mimeType=capability.mimeType,
        clockRate=capability.clockRate,
        channels=capability.channels,
        payloadType=payload_type,
        parameters=dict(capability.parameters),
    )
