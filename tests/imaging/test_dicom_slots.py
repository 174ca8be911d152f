"""What keeps a DICOM association from being ended as idle (R33): work, and a message really
on its way; not small messages nobody takes (web/dicom_limits.py ``Slots``, ``BoundedRecv``)."""

from __future__ import annotations

import struct
import time
from collections import deque
from types import SimpleNamespace
from typing import Any

from web.dicom_limits import (
    MESSAGE_PAYLOAD,
    MESSAGE_SILENCE_S,
    MESSAGE_START_S,
    BoundedRecv,
    ReceiveBudget,
    Slots,
)


class _Peer:
    """A socket whose ``recv`` hands out what the test queued, a chunk at a time."""

    def __init__(self) -> None:
        self.queued: deque[bytes] = deque()

    def recv(self, size: int) -> bytes:
        chunk = self.queued.popleft()
        if len(chunk) > size:
            self.queued.appendleft(chunk[size:])
        return chunk[:size]

    def setsockopt(self, *args: Any) -> None:
        pass

    def shutdown(self, how: int) -> None:
        pass


def _reader() -> tuple[BoundedRecv, _Peer, list[float]]:
    clock = [0.0]
    peer = _Peer()
    assoc = SimpleNamespace(dimse=SimpleNamespace(message=None), requestor=SimpleNamespace())
    recv = BoundedRecv(
        SimpleNamespace(socket=peer),
        lambda: 1 << 30,
        assoc,
        ReceiveBudget(lambda: 1 << 31),
        clock=lambda: clock[0],
    )
    return recv, peer, clock


def _pdu(recv: BoundedRecv, peer: _Peer, size: int) -> None:
    """One P-DATA-TF PDU of ``size`` bytes read as pynetdicom reads it: header, then body."""
    peer.queued.append(struct.pack(">BBL", 0x04, 0, size))
    peer.queued.append(bytes(size))
    assert len(recv(6)) == 6 and len(recv(size)) == size


def test_r33_small_messages_nobody_takes_do_not_keep_an_association_busy() -> None:
    """A response every 20 s (pynetdicom ignores it; no handler takes it): at first it looks
    like a message on its way, but not past MESSAGE_START_S from the first of them, although
    bytes never stop and their sum passes MESSAGE_PAYLOAD."""
    recv, peer, clock = _reader()
    seen = []
    for turn in range(40):  # 800 s
        clock[0] = turn * 20.0
        _pdu(recv, peer, 2000)
        seen.append((clock[0], recv.arriving(clock[0] + 1)))
    assert recv.pending > MESSAGE_PAYLOAD  # their sum, never taken
    assert all(on for at, on in seen if at + 1 < MESSAGE_START_S)
    assert not any(on for at, on in seen if at + 1 >= MESSAGE_START_S)


def test_r33_a_large_message_on_its_way_counts_while_its_bytes_keep_coming() -> None:
    """A dataset arriving slowly but steadily counts as on its way for as long as it comes
    (past MESSAGE_START_S too); silent for MESSAGE_SILENCE_S it no longer does, and once a
    handler takes it nothing is on its way."""
    recv, peer, clock = _reader()
    _pdu(recv, peer, 200)  # an echo, say, that a handler took
    recv.release()
    assert not recv.arriving(clock[0])
    for second in range(1, 181):  # 20 KB a second for three minutes, one PDU each
        clock[0] = float(second)
        _pdu(recv, peer, 20_000)
        recv._assoc.dimse.message = object()  # pynetdicom assembles it from the first PDU
        assert recv.arriving(clock[0]), second
    assert recv.arriving(clock[0] + MESSAGE_SILENCE_S - 1)
    assert not recv.arriving(clock[0] + MESSAGE_SILENCE_S)
    recv._assoc.dimse.message = None
    recv.release()  # the handler took it
    assert not recv.arriving(clock[0] + 1)


def test_r33_slots_count_work_and_shares_by_address() -> None:
    """Work keeps a slot (from a handler's start to its end, and for idle_s after); none
    for idle_s, and nothing on its way: the slot is idle. One address holds its share, and
    a slot given back is free again."""
    slots = Slots(per_address=2, idle_s=10.0)
    first, second, third = object(), object(), object()
    assert slots.admit(first, "10.0.0.1") and slots.admit(second, "10.0.0.1")
    assert not slots.admit(third, "10.0.0.1") and slots.admit(third, "10.0.0.2")
    assert (slots.held("10.0.0.1"), slots.held(), slots.refused) == (2, 3, 1)
    now = time.monotonic()
    assert slots.idle(now) == []
    with slots.working(first):
        assert set(slots.idle(now + 60)) == {second, third}  # busy: not idle, however long
    assert set(slots.idle(time.monotonic() + 60)) == {first, second, third}
    assert slots.idle(time.monotonic() + 5) == []  # first has just worked
    slots.release(second)
    assert slots.admit(object(), "10.0.0.1") and slots.held("10.0.0.1") == 2
