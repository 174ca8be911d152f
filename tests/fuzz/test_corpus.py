"""Replays every crasher the fuzz tests (or the issue) found, from tests/fuzz/corpus/<target>/.

* ``datagram``, ``stun``: sent at every server ICE socket, from a stranger and from the peer's
  verified address; each must be dropped and counted.
* ``stun_signed``: signed with the server's real ICE password first (what only the peer can
  send), from a new address; dropped and counted.
* ``rtp``, ``rtcp``: as they come out of SRTP. SSRC 0x5EED5EED stands for the real stream's
  (random each run); an RTP input is also replayed as each Producer's stream and RTX stream,
  with sequence numbers spread over the whole range, so that some fall far behind the stream's.
* ``sdp_offer``: publish offers aiortc accepts but cannot answer; refused as bad_sdp.

The call must carry media afterwards and nothing may log a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from pathlib import Path

import aioice.stun
import pytest
import targets
from aiortc.rtp import RtpPacket, unpack_remb_fci
from aiortc.sdp import SessionDescription
from targets import Call, corpus

from media import transport as transport_module
from media.errors import BadSdp
from media.transport import Transport, parse_sdp

PLACEHOLDER = struct.pack("!I", 0x5EED5EED)


def _ids(target: str) -> list[str]:
    return [p.stem for p in corpus(target)]


def test_the_corpus_holds_every_kind_of_crasher():
    for target in ("datagram", "stun", "stun_signed", "rtp", "rtcp", "sdp_offer"):
        assert corpus(target), target


async def test_replay_offers_aiortc_cannot_answer():
    """Each made aiortc accept the offer, then fail to answer it and even to close (sockets
    left open, a second close waiting forever). They are refused as bad_sdp up front; an offer
    of the kind that still gets through is answered by closing the Transport, cleanly."""
    for path in corpus("sdp_offer"):
        with pytest.raises(BadSdp):
            parse_sdp(path.read_text(), "offer")
        transport = Transport("publish")
        with pytest.raises(BadSdp):
            await transport.publish(path.read_text())
        assert not transport.closed  # refused before aiortc saw it: the transport goes on
        await asyncio.wait_for(transport.close(), 5)


async def test_an_offer_aiortc_takes_but_cannot_answer_closes_the_transport(monkeypatch, caplog):
    """The fallback behind parse_sdp's checks, with them switched off."""
    caplog.set_level(logging.INFO, logger="media._aiortc_seam")
    monkeypatch.setattr(
        transport_module, "parse_sdp", lambda sdp, _kind: SessionDescription.parse(sdp)
    )
    path = targets.CORPUS / "sdp_offer" / "bundle_names_a_section_that_lost_its_m_line.sdp"
    sockets_before = _open_sockets()
    transport = Transport("publish")
    with pytest.raises(BadSdp, match="cannot be answered"):
        await transport.publish(path.read_text())
    assert transport.closed
    # aiortc's own close failed on it; every socket it had opened is closed all the same
    assert "part by part" in caplog.text
    assert _open_sockets() == sockets_before
    assert transport._pc._RTCPeerConnection__isClosed.done()  # a later close() returns
    await asyncio.wait_for(transport.close(), 5)  # idempotent, and nothing hangs


def test_each_crasher_still_breaks_the_code_the_guard_protects():
    """What the guard is for: drop one of these and stock aiortc/aioice fail on it again."""
    for path in corpus("stun"):
        with pytest.raises(struct.error):  # not the ValueError aioice expects: a traceback
            aioice.stun.parse_message(path.read_bytes())
    extensions = _extension_map()
    for name in ("abs_send_time_of_2_bytes", "audio_level_of_0_bytes"):
        with pytest.raises(struct.error):  # aiortc's receive loop catches ValueError only
            RtpPacket.parse((targets.CORPUS / "rtp" / f"{name}.bin").read_bytes(), extensions)
    remb = (targets.CORPUS / "rtcp" / "remb_count_beyond_its_fci.bin").read_bytes()
    with pytest.raises(struct.error):
        unpack_remb_fci(remb[12:])


def _extension_map():  # type: ignore[no-untyped-def]
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
    from aiortc.rtp import HeaderExtensionsMap

    extensions = HeaderExtensionsMap()
    extensions.configure(
        RTCRtpParameters(
            headerExtensions=[
                RTCRtpHeaderExtensionParameters(id=1, uri="urn:ietf:params:rtp-hdrext:sdes:mid"),
                RTCRtpHeaderExtensionParameters(
                    id=2, uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level"
                ),
                RTCRtpHeaderExtensionParameters(
                    id=3, uri="http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
                ),
            ]
        )
    )
    return extensions


def _open_sockets() -> int:
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if _readlink(fd).startswith("socket:"))


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _dropped(call: Call) -> int:
    return sum(sum(t.datagram_stats().values()) for t in (call.publish, call.subscribe))


async def test_replay_datagram_and_stun_crashers(call: Call, caplog):
    caplog.set_level(logging.WARNING)
    for path in [*corpus("datagram"), *corpus("stun")]:
        for transport in (call.publish, call.subscribe):
            for from_peer in (False, True):
                before = _dropped(call)
                targets.datagram(call, transport, path.read_bytes(), from_peer=from_peer)
                assert _dropped(call) == before + 1, path.name
    for path in corpus("stun_signed"):
        before = call.publish.datagram_stats()["stun_error"]
        message = targets.sign_stun(path.read_bytes(), *call.ice_credentials(call.publish))
        targets.datagram(call, call.publish, message, from_peer=False)
        assert call.publish.datagram_stats()["stun_error"] == before + 1, path.name
    await call.assert_flowing()
    _assert_no_traceback(caplog)


def _rtp_variants(call: Call, data: bytes) -> list[bytes]:
    """``data`` as is, and as each Producer's stream and RTX stream at sequence numbers spread
    over the range (an RTX packet's original sequence number is its payload's first two bytes;
    the inputs carry no CSRC or extension, so that is byte 12)."""
    variants = [data]
    for producer in call.producers:
        if producer._ssrc is None:
            continue
        payload_types = [producer._payload_type, producer._rtx_payload_type]
        for payload_type in [pt for pt in payload_types if pt is not None]:
            for seq in (0, 0x4000, 0x8000, 0xC000):
                number = struct.pack("!H", seq)
                variants.append(
                    bytes([data[0], (data[1] & 0x80) | payload_type]) + number + data[4:8]
                    + struct.pack("!I", producer._ssrc) + number + data[14:]
                )  # fmt: skip
    return variants


async def test_replay_rtp_and_rtcp_crashers(call: Call, caplog):
    caplog.set_level(logging.WARNING)
    for path in corpus("rtp"):
        for data in _rtp_variants(call, path.read_bytes()):
            await targets.rtp(call, data)
    for path in corpus("rtcp"):
        data = path.read_bytes()
        for consumer in call.consumers:
            await targets.rtcp(call, data.replace(PLACEHOLDER, struct.pack("!I", consumer._ssrc)))
    await targets.settle()
    await call.assert_flowing()
    _assert_no_traceback(caplog)


def _assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    bad = [
        r.getMessage()[:200] for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()
    ]
    assert bad == []
