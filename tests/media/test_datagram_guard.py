"""The datagram guard's rules on their own: RFC 7983 classification, counts, one warning a
minute (never one per packet)."""

from __future__ import annotations

import logging

import pytest

from media.datagram_guard import (
    DTLS,
    REASONS,
    SRTP,
    STUN,
    WARNING_INTERVAL_S,
    DatagramGuard,
    classify,
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "empty"),
        (b"\x00" * 20, STUN),
        (b"\x03" * 20, STUN),
        (b"\x00" * 19, "truncated"),  # shorter than a STUN header
        (b"\x04" * 40, "unclassifiable"),  # 4-19: ZRTP, nothing we speak
        (bytes([19]) * 40, "unclassifiable"),
        (bytes([20]) * 13, DTLS),
        (bytes([63]) * 13, DTLS),
        (bytes([22]) * 12, "truncated"),  # shorter than a DTLS record header
        (bytes([64]) * 40, "unclassifiable"),  # 64-79: TURN channel data, never on a host port
        (bytes([127]) * 40, "unclassifiable"),
        (bytes([128]) * 12, SRTP),
        (bytes([191]) * 12, SRTP),
        (bytes([0x80, 200]) * 3, "truncated"),  # shorter than an RTP header
        (bytes([192]) * 40, "unclassifiable"),
        (b"\xff", "unclassifiable"),
    ],
)
def test_classify_by_first_byte_as_rfc_7983_does(data: bytes, expected: str):
    assert classify(data) == expected


def test_counts_every_reason_and_warns_at_most_once_a_minute(caplog):
    now = [1000.0]
    guard = DatagramGuard("t1", clock=lambda: now[0])
    assert guard.stats() == dict.fromkeys(REASONS, 0)
    with caplog.at_level(logging.WARNING, logger="media.datagram_guard"):
        for _ in range(500):
            guard.drop("empty")
        guard.drop("stun_malformed", "error")
        assert len(caplog.records) == 1  # the first drop, then silence
        now[0] += WARNING_INTERVAL_S
        guard.drop("unverified_source")
    assert guard.stats()["empty"] == 500
    assert guard.stats()["stun_malformed"] == 1
    assert guard.stats()["unverified_source"] == 1
    assert len(caplog.records) == 2
    second = caplog.records[1]
    assert "dropped 501 " in second.getMessage()  # all that came since the last warning
    assert second.transport_id == "t1"  # type: ignore[attr-defined]
    assert second.exc_info is None
