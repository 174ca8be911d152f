"""Pins every piece of aiortc's and aioice's private API that media/_aiortc_seam.py relies on.

If an aiortc upgrade moves one of them, this file fails first and says which.
"""

from __future__ import annotations

import importlib.metadata
import inspect

import aioice
import aioice.ice
import aiortc
import aiortc.rtcdtlstransport
import pylibsrtp
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.rtcdtlstransport import RTCDtlsTransport, RtpRouter
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender

from media import _aiortc_seam as seam


def test_pinned_versions():
    assert aiortc.__version__ == "1.16.0"
    assert aioice.__version__ == "0.13.0"
    assert importlib.metadata.version("pylibsrtp") == "1.0.0"


def test_srtp_without_pylibsrtps_wrapper_gives_its_bytes_and_its_errors():
    """``srtp_protect``/``srtp_unprotect`` call libsrtp on the session's own buffer as
    pylibsrtp's ``Session`` does: the same protected bytes (the sessions stay in step, packet
    after packet), the same packets back, the same refusals (a forged tag, a replay, a packet
    too long to protect)."""
    key = bytes(range(30))
    theirs = pylibsrtp.Session(pylibsrtp.Policy(key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    ours = pylibsrtp.Session(pylibsrtp.Policy(key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    receiver = pylibsrtp.Session(pylibsrtp.Policy(key, pylibsrtp.Policy.SSRC_ANY_INBOUND))
    source = inspect.getsource(pylibsrtp.Session)
    assert "func(self._srtp[0], self._cdata, len_p)" in source
    assert "self._buffer = ffi.buffer(self._cdata)" in source
    for seq in range(50):
        packet = bytes([0x80, 96]) + seq.to_bytes(2, "big") + bytes(8) + bytes([seq]) * (seq * 20)
        protected = seam.srtp_protect(ours, packet)
        assert protected == theirs.protect(packet)
        assert seam.srtp_unprotect(receiver, protected) == packet
    report = bytes([0x80, 201, 0, 1]) + (1234).to_bytes(4, "big")  # an empty receiver report
    for _ in range(3):
        protected_rtcp = theirs.protect_rtcp(report)
        assert seam.srtp_unprotect_rtcp(receiver, protected_rtcp) == report
    with pytest.raises(pylibsrtp.Error):
        seam.srtp_unprotect_rtcp(receiver, protected_rtcp)  # replayed
    forged = protected[:-1] + bytes([protected[-1] ^ 1])
    with pytest.raises(pylibsrtp.Error):
        seam.srtp_unprotect(receiver, forged)
    with pytest.raises(pylibsrtp.Error):
        seam.srtp_unprotect(receiver, protected)  # replayed
    with pytest.raises(ValueError, match="too long"):
        seam.srtp_protect(ours, bytes([0x80, 96]) + bytes(1500 - 2))


def test_receive_path_calls_the_receivers_handle_rtp_packet():
    source = inspect.getsource(RTCDtlsTransport._handle_rtp_data)
    assert "route_rtp(packet)" in source
    assert "receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)" in source
    assert list(inspect.signature(RTCRtpReceiver._handle_rtp_packet).parameters) == [
        "self",
        "packet",
        "arrival_time_ms",
    ]
    # the routed receiver is looked up on the instance, so an instance attribute overrides it
    assert "def route_rtp" in inspect.getsource(RtpRouter)


def test_send_path_and_feedback_hooks_exist():
    assert inspect.iscoroutinefunction(RTCDtlsTransport._send_rtp)
    assert list(inspect.signature(RTCDtlsTransport._send_rtp).parameters) == ["self", "data"]
    assert inspect.iscoroutinefunction(RTCRtpReceiver._send_rtcp_pli)
    assert list(inspect.signature(RTCRtpReceiver._send_rtcp_pli).parameters) == [
        "self",
        "media_ssrc",
    ]
    assert inspect.iscoroutinefunction(RTCRtpSender._handle_rtcp_packet)
    # RTCP for a sender is delivered through the attribute we replace
    assert "recipient._handle_rtcp_packet(packet)" in inspect.getsource(
        RTCDtlsTransport._handle_rtcp_data
    )


async def test_sender_private_state_has_the_names_we_use():
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        transceiver = pc.addTransceiver(seam.IdleTrack("video"), direction="sendonly")
        sender = transceiver.sender
        assert isinstance(seam.sender_ssrc(sender), int)
        assert seam.sender_extensions_map(sender) is not None
        assert seam.sender_mid(sender) is None  # set when the sender starts
        seam.note_sent(sender, 1234, 100, 1 << 40)
        seam.note_sent(sender, 4321, 50, 2 << 40)
        assert sender._RTCRtpSender__rtp_timestamp == 4321
        assert sender._RTCRtpSender__octet_count == 150
        assert sender._RTCRtpSender__packet_count == 2
        assert sender._RTCRtpSender__ntp_timestamp == 2 << 40
        assert seam.negotiated_extension_ids(transceiver) == {}
        # the sender reports from exactly these counters
        rtcp_source = inspect.getsource(RTCRtpSender._run_rtcp)
        for name in ("__ntp_timestamp", "__rtp_timestamp", "__packet_count", "__octet_count"):
            assert f"self.{name}" in rtcp_source
        assert seam.negotiated_codecs(transceiver) == []
        assert seam.offer_direction(transceiver) is None
    finally:
        await pc.close()


def test_the_sender_reaches_its_encoder_only_after_its_track_yields():
    source = inspect.getsource(RTCRtpSender._next_encoded_frame)
    assert source.index("await self.__track.recv()") < source.index("get_encoder(codec)")


async def test_idle_track_never_yields_and_stops_cleanly():
    import asyncio

    from aiortc.mediastreams import MediaStreamError

    track = seam.IdleTrack("audio")
    pending = asyncio.ensure_future(track.recv())
    done, _ = await asyncio.wait({pending}, timeout=0.1)
    assert not done
    track.stop()
    try:
        await pending
        raise AssertionError("recv returned after stop")
    except MediaStreamError:
        pass


async def test_host_addresses_are_configuration():
    assert "get_host_addresses(" in inspect.getsource(aioice.ice.Connection.gather_candidates)
    seam.restrict_host_addresses(["127.0.0.1"])
    connection = aioice.Connection(ice_controlling=True, stun_server=None)
    try:
        await connection.gather_candidates()
        hosts = {c.host for c in connection.local_candidates}
        assert hosts == {"127.0.0.1"}
    finally:
        await connection.close()
    seam.restrict_host_addresses(None)
    assert aioice.ice.get_host_addresses is seam._original_get_host_addresses
    seam.restrict_host_addresses(["127.0.0.1"])


async def test_sender_reports_reach_our_observer_and_still_reach_aiortc():
    from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket

    # aiortc delivers a publisher's RTCP to its receiver through the attribute we wrap
    assert inspect.iscoroutinefunction(RTCRtpReceiver._handle_rtcp_packet)
    assert "RtcpSrPacket" in inspect.getsource(RTCRtpReceiver._handle_rtcp_packet)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        receiver = pc.addTransceiver("audio", direction="recvonly").receiver
        seen: list[tuple[int, int, int]] = []
        seam.observe_sender_reports(receiver, lambda *report: seen.append(report))
        info = RtcpSenderInfo(
            ntp_timestamp=(3_900_000_000 << 32) | (1 << 31),
            rtp_timestamp=123_456,
            packet_count=10,
            octet_count=1000,
        )
        await receiver._handle_rtcp_packet(RtcpSrPacket(ssrc=42, sender_info=info))
        assert seen == [(42, info.ntp_timestamp, 123_456)]
        # aiortc kept its own record of the report (for its receiver reports' LSR)
        assert 42 in receiver._RTCRtpReceiver__lsr
    finally:
        await pc.close()


async def test_datagram_path_is_where_the_guard_wraps_it():
    """The private names ``guard_datagrams`` relies on, and why each wrap takes effect."""
    from aioice.ice import Candidate, CandidatePair, Connection, StunProtocol

    # aiortc builds ICE + DTLS transports through this factory, called on self (so the
    # instance attribute we set wins), for media and for SCTP alike
    from aiortc.rtcpeerconnection import RTCPeerConnection as PC

    source = inspect.getsource(PC)
    assert source.count("self.__createDtlsTransport()") == 2
    assert inspect.signature(PC._RTCPeerConnection__createDtlsTransport).parameters.keys() == {
        "self"
    }
    # aioice hands every datagram that does not parse as STUN, from any address, to the
    # connection's data_received, looked up on the instance
    received = inspect.getsource(StunProtocol.datagram_received)
    assert "stun.parse_message(data)" in received
    assert "self.receiver.data_received(data, self.local_candidate.component)" in received
    assert list(inspect.signature(Connection.data_received).parameters) == [
        "self",
        "data",
        "component",
    ]
    assert inspect.iscoroutinefunction(Connection.gather_candidates)
    assert "self._connection.gather_candidates()" in inspect.getsource(aiortc.RTCIceGatherer)
    assert "self._protocols += host_protocols" in inspect.getsource(
        Connection.get_component_candidates
    )
    # ... whose queue DTLS reads, dying on an empty datagram (the bug the guard is for)
    recv_next = inspect.getsource(RTCDtlsTransport._recv_next)
    assert "first_byte = data[0]" in recv_next
    assert "await self._handle_rtcp_data(data)" in recv_next
    assert "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)" in recv_next
    # what "ICE verified" is read from
    pair = CandidatePair(
        StunProtocol(None),  # type: ignore[arg-type]
        Candidate("f", 1, "udp", 1, "127.0.0.1", 9, "host"),
    )
    assert pair.remote_nominated is False
    assert pair.state == CandidatePair.State.FROZEN
    assert CandidatePair.State.SUCCEEDED
    assert pair.remote_candidate._network_host == "127.0.0.1"
    connection = Connection(ice_controlling=False)
    # what an authenticated check is, as aioice decides it
    request = inspect.getsource(Connection.request_received)
    assert 'self._valid_username(message.attributes["USERNAME"])' in request
    assert 'message.check_message_integrity(self.local_password.encode("utf8"))' in request
    assert connection._valid_username(f"{connection.local_username}:peer")
    assert connection._nominated == {}
    assert connection._check_list == []
    assert connection._protocols == []


async def test_guard_datagrams_wraps_every_ice_socket_and_the_dtls_handlers():
    from media.datagram_guard import DatagramGuard

    guard = DatagramGuard("pin")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    seam.guard_datagrams(pc, guard)
    try:
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())  # gathers
        dtls = pc.getTransceivers()[0].receiver.transport
        connection = dtls.transport.iceGatherer._connection
        assert connection._protocols
        for protocol in connection._protocols:
            assert protocol._teleconsult_guarded
            assert "datagram_received" in vars(protocol)
        assert "data_received" in vars(connection)
        assert {"_handle_rtp_data", "_handle_rtcp_data"} <= set(vars(dtls))
        # an empty datagram straight into the socket's protocol is counted, not queued for DTLS
        connection._protocols[0].datagram_received(b"", ("127.0.0.1", 9))
        assert guard.stats()["empty"] == 1
        assert connection._queue.empty()
    finally:
        await pc.close()


async def test_srtp_refusal_and_the_broken_close_use_these_names():
    import pylibsrtp

    # aiortc's send path lets libsrtp's error out (send_rtp turns it into SendRefused)
    assert "self._tx_srtp.protect(data)" in inspect.getsource(RTCDtlsTransport._send_rtp)
    assert issubclass(pylibsrtp.Error, Exception)
    assert issubclass(seam.SendRefused, ConnectionError)
    # close_peer_connection finishes what aiortc's close started
    close = inspect.getsource(RTCPeerConnection.close)
    assert "self.__isClosed = asyncio.Future()" in close
    assert "await transceiver.stop()" in close
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("audio", direction="recvonly")
    assert len(pc._RTCPeerConnection__dtlsTransports) == 1
    assert len(pc._RTCPeerConnection__iceTransports) == 1
    await seam.close_peer_connection(pc)
    assert pc._RTCPeerConnection__isClosed.done()


def test_sctp_reaches_its_data_receiver_through_these_names():
    from aiortc.rtcsctptransport import RTCSctpTransport

    assert "self.__transport._register_data_receiver(self)" in inspect.getsource(RTCSctpTransport)
    assert "await self._data_receiver._handle_data(data)" in inspect.getsource(
        RTCDtlsTransport._recv_next
    )
    assert "assert len(chunks) == 1" in inspect.getsource(RTCSctpTransport._handle_data)


async def test_the_datagram_counter_liveness_reads_is_aiortcs_own():
    """media/liveness.py reads the count aiortc keeps for its transport stats; it counts every
    datagram handed to DTLS (SRTP, SRTCP and DTLS alike)."""
    source = inspect.getsource(RTCDtlsTransport._recv_next)
    assert "self.__rx_packets += 1" in source
    assert source.index("self.__rx_packets += 1") < source.index("first_byte = data[0]")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        pc.addTransceiver(seam.IdleTrack("video"), direction="sendonly")
        pc.addTransceiver(seam.IdleTrack("audio"), direction="sendonly")
        transports = seam.dtls_transports(pc)
        assert len(transports) == 2  # no bundle negotiated yet: one per transceiver
        assert seam.datagrams_received(pc) == 0
        transports[0]._RTCDtlsTransport__rx_packets = 3  # as after three datagrams
        stats = transports[0]._get_stats()
        assert [s.packetsReceived for s in stats.values()] == [3]
        assert seam.datagrams_received(pc) == 3
    finally:
        await pc.close()


def test_simulcast_and_bandwidth_hooks_exist():
    from aiortc.rate import RemoteBitrateEstimator
    from aiortc.rtcpeerconnection import RTCPeerConnection as Pc
    from aiortc.rtp import HeaderExtensionsMap

    # the answer and the receiver both take a transceiver's negotiated extensions from this list,
    # which setRemoteDescription fills before we add the rid extensions
    assert "transceiver._headerExtensions = find_common_header_extensions" in inspect.getsource(
        Pc.setRemoteDescription
    )
    assert "headerExtensions=transceiver._headerExtensions" in inspect.getsource(Pc)
    # aiortc parses the rid extensions once they are negotiated
    source = inspect.getsource(HeaderExtensionsMap)
    assert "sdes:rtp-stream-id" in source and "repaired-rtp-stream-id" in source
    # the router: an instance attribute route_rtp, the tables we read and fill
    router = RtpRouter()
    assert router.mid_table == {} and router.ssrc_table == {}
    assert list(inspect.signature(router.register_sender).parameters) == ["sender", "ssrc"]
    assert "self.senders.get(ssrc)" in inspect.getsource(RtpRouter.route_rtcp)
    # the estimator the Producer runs, and the receiver's RTCP sending
    assert list(inspect.signature(RemoteBitrateEstimator.add).parameters) == [
        "self",
        "arrival_time_ms",
        "abs_send_time",
        "payload_size",
        "ssrc",
    ]
    estimator = seam.RemoteBitrateEstimator()
    assert isinstance(estimator, RemoteBitrateEstimator)
    # the rate counter we replace is used through exactly these calls
    source = inspect.getsource(RemoteBitrateEstimator)
    for call in ("incoming_bitrate.rate(", "incoming_bitrate.add(", "incoming_bitrate.reset()"):
        assert call in source
    assert estimator.incoming_bitrate.rate(0) is None
    estimator.incoming_bitrate.add(1000, 0)
    estimator.incoming_bitrate.add(1000, 499)
    assert estimator.incoming_bitrate.rate(499) == 8000 * 2000 // 500
    assert estimator.incoming_bitrate.rate(1400) == 8000 * 1000 // 1000  # the first one expired
    assert inspect.iscoroutinefunction(RTCRtpReceiver._send_rtcp)
    assert "self.__rtcp_ssrc" in inspect.getsource(RTCRtpReceiver)


async def test_simulcast_seam_functions_act_on_aiortc_objects():
    from aiortc.rtp import RtpPacket

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        transceiver = pc.addTransceiver("video", direction="recvonly")
        seam.add_header_extensions(
            transceiver, {"urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id": 10}
        )
        seam.add_header_extensions(
            transceiver, {"urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id": 10}
        )
        assert (
            seam.negotiated_extension_ids(transceiver)[
                "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
            ]
            == 10
        )
        receiver = transceiver.receiver
        # the receiver has its RTCP SSRC from the start; unconnected, aiortc drops the packet
        assert receiver._RTCRtpReceiver__rtcp_ssrc is not None
        assert await seam.send_remb(receiver, 100_000, [1]) is True
        router = receiver.transport._rtp_router
        router.register_receiver(receiver, ssrcs=[], payload_types=[96], mid="0")
        router.register_receiver(object(), ssrcs=[], payload_types=[96], mid="1")  # type: ignore[arg-type]
        packet = RtpPacket(payload_type=96, ssrc=1234)
        packet.extensions.mid = "0"
        assert router.route_rtp(packet) is None  # two receivers share the payload type
        seam.route_by_mid(receiver)
        seam.route_by_mid(receiver)  # idempotent
        assert router.route_rtp(packet) is receiver
        assert router.ssrc_table[1234] is receiver
        sender = pc.addTransceiver(seam.IdleTrack("video"), direction="sendonly").sender
        seam.route_feedback_of(sender, 5678)
        assert router.senders[5678] is sender
    finally:
        await pc.close()


def test_cheaper_estimator_parts_give_aiortcs_answers():
    """The minimum frame period and the clock we put in aiortc's place answer as aiortc's own
    (they are there for speed only: bench/sfu_forwarding.py)."""
    import random

    import aiortc.clock
    from aiortc.rate import OveruseEstimator

    ours = seam.RemoteBitrateEstimator().estimator
    theirs = OveruseEstimator()
    rng = random.Random(7)
    for _ in range(500):
        delta = rng.choice([33.3, 33.4, 16.7, 66.6, rng.uniform(1, 100)])
        assert ours.update_min_frame_period(delta) == theirs.update_min_frame_period(delta)
    assert len(ours.ts_delta_hist) == 59 and list(ours.ts_delta_hist) == theirs.ts_delta_hist[1:]
    # aiortc.clock.current_ms (patched at import) and aiortc's datetime arithmetic agree
    before = int((aiortc.clock.current_datetime() - aiortc.clock.NTP_EPOCH).total_seconds() * 1000)
    now = aiortc.clock.current_ms()
    after = int((aiortc.clock.current_datetime() - aiortc.clock.NTP_EPOCH).total_seconds() * 1000)
    assert before <= now <= after


def test_the_direct_send_does_what_aiortcs_send_path_does():
    """``send_rtp_now`` replays aiortc's and aioice's send path: pinned here, so that an
    upgrade that changes the path (another SRTP session, another way to pick the pair) fails."""
    from aiortc.rtcicetransport import RTCIceTransport

    dtls_send = inspect.getsource(RTCDtlsTransport._send_rtp)
    assert "self._state != State.CONNECTED" in dtls_send
    assert "self._tx_srtp.protect(data)" in dtls_send
    assert "await self.transport._send(data)" in dtls_send
    assert "self.__tx_bytes += len(data)" in dtls_send
    assert "self.__tx_packets += 1" in dtls_send
    assert "self._send = self._connection.send" in inspect.getsource(RTCIceTransport)
    assert "await self.sendto(data, 1)" in inspect.getsource(aioice.ice.Connection.send)
    sendto = inspect.getsource(aioice.ice.Connection.sendto)
    assert "self._nominated.get(component)" in sendto
    assert "active_pair.protocol.send_data(data, active_pair.remote_addr)" in sendto
    assert "self.transport.sendto(data, addr)" in inspect.getsource(
        aioice.ice.StunProtocol.send_data
    )
    assert "self.remote_candidate._network_host, self.remote_candidate.port" in inspect.getsource(
        aioice.ice.CandidatePair
    )
    assert "self.__transport = transport" in inspect.getsource(RTCRtpSender)


async def test_the_direct_send_leaves_a_wrapped_connection_to_the_awaited_path():
    """Copies to a standby path wrap the ICE connection's ``sendto``: the direct send then
    sends nothing and says so; before DTLS is up it refuses as aiortc does."""
    from media import _ice_seam

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        sender = pc.addTransceiver("video", direction="sendonly").sender
        with pytest.raises(ConnectionError):
            seam.send_rtp_now(sender, b"\x80" + bytes(20))  # not connected yet
        dtls = sender.transport
        dtls._state = aiortc.rtcdtlstransport.State.CONNECTED  # as after the handshake
        connection = dtls.transport._connection
        _ice_seam.copy_sends(connection, lambda data: None)
        assert seam.send_rtp_now(sender, b"\x80" + bytes(20)) is False
    finally:
        await pc.close()
