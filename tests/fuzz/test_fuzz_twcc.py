"""Fuzz the transport-cc parsers and state (media/twcc.py): whatever a peer sends, the feedback
parser raises only ValueError, the estimator takes any feedback, and the publisher-side recorder
takes any sequence numbers and always builds feedback that parses. Crashers found are kept
under tests/fuzz/corpus/twcc_feedback/ and replayed by test_corpus.py."""

from __future__ import annotations

import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import transport_feedback
from targets import corpus

from media.twcc import (
    FeedbackRecorder,
    TransportWideSender,
    parse_feedback,
    split_compound,
    transport_sequence,
)

FUZZ = settings(max_examples=400, deadline=None, derandomize=True)


def feedback_target(data: bytes) -> None:
    """One RTCP compound from a subscriber, as the subscribe transport takes it."""
    sender = TransportWideSender()
    for k in range(64):
        sender.sent(sender.next_sequence(), 1000, now_us=k * 1000)
    found, _rest = split_compound(data)
    for packet in [*found, data]:
        try:
            parse_feedback(packet)
        except ValueError:
            pass
        sender.on_feedback(packet, now_us=100_000)


@FUZZ
@given(data=st.one_of(st.binary(max_size=120), transport_feedback()))
def test_fuzz_transport_feedback(data):
    feedback_target(data)


@FUZZ
@given(data=st.binary(max_size=64), ext_id=st.integers(1, 14))
def test_fuzz_transport_sequence_of_a_datagram(data, ext_id):
    seq = transport_sequence(data, ext_id)
    assert seq is None or 0 <= seq <= 0xFFFF


@FUZZ
@given(
    events=st.lists(
        st.tuples(st.integers(0, 0xFFFF), st.integers(0, 20_000_000)), min_size=1, max_size=200
    ),
    takes=st.lists(st.integers(0, 30_000_000), max_size=10),
)
def test_fuzz_the_recorder_always_reports_in_feedback_that_parses(events, takes):
    recorder = FeedbackRecorder(sender_ssrc=1)
    now = 0
    packets = []
    for i, (seq, arrival) in enumerate(events):
        recorder.record(seq, arrival, media_ssrc=7)
        if i < len(takes):
            now = max(now, takes[i])
            packets += recorder.take(now)
    packets += recorder.take(now + 10_000_000, force=True)
    for data in packets:
        fb = parse_feedback(data)
        assert struct.unpack_from("!H", data, 2)[0] * 4 + 4 == len(data)
        assert len(fb.arrivals) <= 1000


def recorder_target(data: bytes) -> None:
    """(sequence number, arrival us) pairs, packed ``!HI``, into a recorder, then its feedback."""
    recorder = FeedbackRecorder(sender_ssrc=1)
    for pos in range(0, len(data) - 5, 6):
        seq, arrival = struct.unpack_from("!HI", data, pos)
        recorder.record(seq, arrival, media_ssrc=7)
    for packet in recorder.take(1 << 40, force=True):
        parse_feedback(packet)


def test_replay_recorder_crashers():
    """Found by reading: numbers more than a feedback's worth apart (a peer may number as it
    likes) left a block with no arrival, and building it raised StopIteration out of the
    receive path."""
    for path in corpus("twcc_recorder"):
        recorder_target(path.read_bytes())
