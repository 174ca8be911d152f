"""Fuzz the socket.io payload parsers (signaling/messages.py, signaling/chat.py): any JSON value
a client can send either parses into the message or is refused with a SignalingError (a stable
code for the ack), never another exception (which the boundary reports as an internal error
with a traceback in the log)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signaling import chat
from signaling import messages as m
from signaling.errors import SignalingError

PARSERS = [
    m.Join,
    m.Publish,
    m.SubscribeAnswer,
    m.IceCandidate,
    m.Mute,
    m.Empty,
    chat.ChatSend,
    chat.ChatHistory,
    chat.ChatRetract,
]
#: The keys the parsers read, so that generated objects reach their checks.
KEYS = [
    "visit", "type", "sdp", "revision", "target", "candidate", "sdpMid", "sdpMLineIndex",
    "kind", "muted", "text", "image", "caption", "after", "limit", "message_id", "usernameFragment",
]  # fmt: skip
VALUES = st.sampled_from(
    ["offer", "answer", "publish", "subscribe", "audio", "video", "", "v=0", "candidate:1"]
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    VALUES,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), inner, max_size=6),
    ),
    max_leaves=20,
)

FUZZ = settings(max_examples=100, derandomize=True, database=None, deadline=None)


@pytest.mark.parametrize("parser", PARSERS, ids=lambda p: p.__name__)
@FUZZ
@given(payload=json_values)
def test_fuzz_socketio_payloads(parser: Any, payload: Any):
    try:
        message = parser.parse(payload)
    except SignalingError as exc:
        assert exc.code == "bad_request" and exc.message
        return
    assert message is not None


@FUZZ
@given(payload=json_values)
def test_fuzz_payload_size_check(payload: Any):
    try:
        m.check_size(payload)
    except SignalingError as exc:
        assert exc.code in ("bad_request", "message_too_large")
