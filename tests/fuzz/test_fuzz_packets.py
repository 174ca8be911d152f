"""Fuzz what the network can make the server parse: datagrams at an ICE socket, STUN (signed with
the real ICE password too), and RTP/RTCP as it comes out of SRTP, against a real call.

Each test is bounded (a fixed number of examples, derandomized, so CI runs the same inputs) and
ends by checking the call still carries media. A crash found here is fixed and its input kept in
tests/fuzz/corpus/ (test_corpus.py replays them).
"""

from __future__ import annotations

import logging

import pytest
import targets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import binding_requests, datagrams, rtcp_compounds, rtp_packets, stun_messages
from targets import Call

pytestmark = pytest.mark.timeout(120)

FUZZ = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [
        r.getMessage()[:200] for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()
    ]
    assert bad == []


@FUZZ
@given(data=datagrams, from_peer=st.booleans(), subscribe=st.booleans())
async def test_fuzz_datagrams_at_a_server_ice_socket(
    call: Call, caplog, data, from_peer, subscribe
):
    transport = call.subscribe if subscribe else call.publish
    targets.datagram(call, transport, data, from_peer=from_peer)
    await targets.settle()
    assert call.alive()


@FUZZ
@given(message=stun_messages(), from_peer=st.booleans())
async def test_fuzz_stun_at_a_server_ice_socket(call: Call, message, from_peer):
    targets.datagram(call, call.publish, message, from_peer=from_peer)
    await targets.settle()
    assert call.alive()


@FUZZ
@given(message=binding_requests(), from_peer=st.booleans())
async def test_fuzz_signed_connectivity_checks(call: Call, message, from_peer):
    """Checks signed with the server's real ICE password: only the peer can send these, but
    they reach aioice's role-conflict and nomination code."""
    message = targets.sign_stun(message, *call.ice_credentials(call.publish))
    targets.datagram(call, call.publish, message, from_peer=from_peer)
    await targets.settle()
    assert call.alive()


@settings(FUZZ, max_examples=500)
@given(data=st.data())
async def test_fuzz_rtp_after_srtp(call: Call, data):
    producers = call.producers
    ssrcs = [p._ssrc for p in producers if p._ssrc is not None]
    payload_types = [p._payload_type for p in producers] + [
        p._rtx_payload_type for p in producers if p._rtx_payload_type is not None
    ]
    packet = data.draw(rtp_packets(ssrcs, payload_types))
    await targets.rtp(call, packet)
    assert call.alive()


@settings(FUZZ, max_examples=500)
@given(data=st.data())
async def test_fuzz_rtcp_after_srtp(call: Call, data):
    ssrcs = [c._ssrc for c in call.consumers] + [c._rtx_ssrc for c in call.consumers]
    packet = data.draw(rtcp_compounds(ssrcs))
    await targets.rtcp(call, packet)
    assert call.alive()


@pytest.fixture(autouse=True)
async def _call_survives(call: Call, caplog):
    """After the examples: media still flows and nothing logged a traceback."""
    caplog.set_level(logging.WARNING)
    yield
    await call.assert_flowing()
    _no_tracebacks(caplog)
