"""Fuzz the SDP and ICE candidates a client sends: media/transport.py's ``parse_sdp``, a publish
offer and a subscribe answer applied to real Transports, and trickled candidates.

Each input is a real aiortc offer, answer or candidate, mutated line by line (deleted,
duplicated, values replaced, lines from other sections inserted), so that most of it gets past
the parser into aiortc. The rule: a Transport either takes it or refuses it with a MediaError
(``bad_sdp`` / ``invalid_state`` for the client); nothing else escapes.
"""

from __future__ import annotations

import pytest
from aiortc import RTCSessionDescription
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from peers import CounterTrack, ToneTrack, client_pc

from media.errors import MediaError
from media.transport import Transport, parse_sdp

pytestmark = pytest.mark.timeout(120)

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

INSERTS = [
    "m=video 9 UDP/TLS/RTP/SAVPF 96",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
    "a=rtpmap:96 VP8/90000",
    "a=rtpmap:97 rtx/90000",
    "a=fmtp:97 apt=",
    "a=fmtp:97 apt=96;x",
    "a=ssrc-group:FID 1",
    "a=ssrc-group:FID a b",
    "a=ssrc:abc cname:x",
    "a=extmap:0 urn:ietf:params:rtp-hdrext:sdes:mid",
    "a=extmap:15/sendrecv urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=rid:h send",
    "a=simulcast:send h;l",
    "a=candidate:1 1 udp 1 127.0.0.1 notaport typ host",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ relay",
    "a=mid:",
    "a=group:BUNDLE 0 0 7",
    "a=setup:holdconn",
    "a=fingerprint:sha-256 ZZ",
    "a=ice-ufrag:",
    "a=ice-pwd:x",
    "c=IN IP4",
    "a=rtcp-fb:* nack",
    "a=rtcp-mux-only",
    "a=msid:- -",
    "a=sctp-port:x",
    "a=max-message-size:-1",
    "a=sendrecv",
    "a=inactive",
    "b=AS:x",
]
TOKENS = st.one_of(
    st.sampled_from(["", "0", "-1", "65536", "99999999999", "x", "VP8", "*", ":", "/", "9 9"]),
    st.text(alphabet="abc019:/-=; ", max_size=12),
)


@st.composite
def mutated(draw: st.DrawFn, base: str) -> str:
    lines = base.strip().split("\r\n")
    for _ in range(draw(st.integers(1, 5))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "replace", "insert", "truncate"]))
        if op == "delete" and i > 0:
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "replace" and "=" in lines[i]:
            key, value = lines[i].split("=", 1)
            words = value.split(" ")
            words[draw(st.integers(0, len(words) - 1))] = draw(TOKENS)
            lines[i] = key + "=" + " ".join(words)
        elif op == "insert":
            lines.insert(max(i, 1), draw(st.sampled_from(INSERTS)))
        elif op == "truncate":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
    # never an mDNS name: resolving one sends multicast off this machine
    return "\r\n".join(lines).replace(".local", ".x") + "\r\n"


async def _offer() -> str:
    pc = client_pc()
    try:
        pc.addTransceiver(CounterTrack(), direction="sendonly")
        pc.addTransceiver(ToneTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


@pytest.fixture
async def offer() -> str:
    return await _offer()


@settings(FUZZ, max_examples=300)
@given(data=st.data())
async def test_fuzz_parse_sdp(offer: str, data):
    sdp = data.draw(mutated(offer))
    try:
        parse_sdp(sdp, "offer")
    except MediaError as exc:
        assert exc.code == "bad_sdp"


@settings(FUZZ, max_examples=60)
@given(data=st.data())
async def test_fuzz_publish_offers(offer: str, data):
    transport = Transport("publish")
    try:
        await transport.publish(data.draw(mutated(offer)))
    except MediaError as exc:
        assert exc.code in ("bad_sdp", "invalid_state")
    finally:
        await transport.close()


@pytest.fixture
async def offered():  # type: ignore[no-untyped-def]
    """A publish Transport with a Producer, a subscribe Transport consuming it and offering,
    and the answer a client made to that offer."""
    publisher = Transport("publish")
    result = await publisher.publish(await _offer())
    subscriber = Transport("subscribe")
    for producer in result.added:
        subscriber.consume(producer)
    client = client_pc()
    offer = await subscriber.create_offer()
    await client.setRemoteDescription(RTCSessionDescription(offer, "offer"))
    await client.setLocalDescription(await client.createAnswer())
    yield subscriber, str(client.localDescription.sdp)
    await client.close()
    await subscriber.close()
    await publisher.close()


@settings(FUZZ, max_examples=60)
@given(data=st.data())
async def test_fuzz_subscribe_answers(offered, data):
    subscriber, answer = offered
    if subscriber.signaling_state == "stable":
        await subscriber.create_offer()
    try:
        await subscriber.apply_answer(data.draw(mutated(answer)))
    except MediaError as exc:
        assert exc.code in ("bad_sdp", "invalid_state")


CANDIDATE = "candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host"


@st.composite
def candidates(draw: st.DrawFn) -> object:
    words = CANDIDATE.split(" ")
    for _ in range(draw(st.integers(0, 3))):
        words[draw(st.integers(0, len(words) - 1))] = draw(
            st.one_of(TOKENS, st.sampled_from(["::1", "256.0.0.1", "srflx", "tcp", "raddr"]))
        )
    if draw(st.booleans()):
        words += draw(st.lists(TOKENS, max_size=4))
    text = " ".join(words).replace(".local", ".x")
    return draw(
        st.one_of(
            st.fixed_dictionaries(
                {"candidate": st.just(text)},
                optional={
                    "sdpMid": st.one_of(st.none(), st.sampled_from(["0", "1", "9", ""])),
                    "sdpMLineIndex": st.one_of(st.none(), st.integers(-1, 3)),
                },
            ),
            st.just(None),
            st.fixed_dictionaries({"candidate": st.one_of(st.none(), st.integers(), st.text())}),
        )
    )


@settings(FUZZ, max_examples=200)
@given(candidate=candidates())
async def test_fuzz_trickled_candidates(offered, candidate):
    subscriber, answer = offered
    if subscriber.signaling_state == "have-local-offer":
        await subscriber.apply_answer(answer)
    try:
        await subscriber.add_ice_candidate(candidate)  # type: ignore[arg-type]
    except MediaError as exc:
        assert exc.code in ("bad_sdp", "invalid_state")
