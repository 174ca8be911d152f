"""What a DICOM peer may hold of the SCP (:mod:`web.dicom_scp`), and for how long (R33).

pynetdicom bounds the number of associations (``maximum_associations``) and the silence
between two reads (its network timeout), nothing else. Here, read by each association's own
threads and the SCP's sweep:

- :class:`BoundedRecv`: an association's socket reads, bounding what one message may hold as
  it arrives (``dicom_too_large``) and how slowly it may come (``dicom_too_slow``);
- :class:`ReceiveBudget`: what all associations hold of messages still arriving
  (``server_busy``);
- :class:`Slots`: at most a share of the associations from one peer address, and an
  association doing no work ended (``dicom_too_many_associations``, ``dicom_idle``).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from consult.imaging.errors import DicomTooLarge
from consult.imaging.store import arriving_too_slowly

logger = logging.getLogger("web.dicom_scp")
"""The SCP's logger: what a peer is refused is the SCP's log, one place for an operator."""


MESSAGE_SLACK: Final = 1 << 20
"""Bytes a message may hold beyond ``max_instance_bytes`` (its command set, PDU headers)."""
PDU_HEADER: Final = 6
"""pynetdicom reads each PDU as its 6-byte header (type, reserved, length), then its body."""
RECV_CHUNK: Final = 1 << 20
"""The most one ``recv`` asks for: a peer declares PDU lengths up to 4 GiB, and nothing is
allocated ahead of what arrived beyond this."""


MESSAGE_SILENCE_S: Final = 30.0
"""A message silent for this long is no longer counted as arriving (:meth:`BoundedRecv.arriving`);
the rate floor ends it later."""
MESSAGE_START_S: Final = 60.0
MESSAGE_PAYLOAD: Final = 32 * 1024
"""What a message must hold to count as arriving past :data:`MESSAGE_START_S` (below what the
rate floor asks of a message by then)."""

MESSAGES_IN_MEMORY: Final = 2
"""How many messages of the largest size allowed all associations may hold at once while
receiving them (:class:`ReceiveBudget`)."""


@dataclass
class _Slot:
    address: str
    last_work: float
    busy: int = 0


class Slots:
    """Who holds the SCP's association slots (R33): at most ``per_address`` associations from
    one peer address (pynetdicom bounds only their total, which one host could then take
    whole), and when each last did some work, so that one doing none for ``idle_s`` is ended
    (:meth:`idle`): silence alone is pynetdicom's network timeout, which a C-ECHO a minute
    resets, so ten echoing peers held every slot for ever. Work is a C-STORE or a C-FIND
    (from when its handler starts to when it ends) and a message on its way to one
    (:meth:`BoundedRecv.arriving`); a C-ECHO is not. Thread-safe: each association's threads
    call it, and the event loop's sweep."""

    def __init__(self, per_address: int, idle_s: float) -> None:
        self.per_address = per_address
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._held: dict[Any, _Slot] = {}
        self.refused = 0
        """Associations refused because their address held its share."""
        self.ended_idle = 0

    def admit(self, assoc: Any, address: str) -> bool:
        """Take a slot for ``assoc`` from ``address``; False (nothing taken) when the address
        holds :attr:`per_address` already."""
        with self._lock:
            if sum(1 for held in self._held.values() if held.address == address) >= (
                self.per_address
            ):
                self.refused += 1
                return False
            self._held[assoc] = _Slot(address, time.monotonic())
            return True

    def release(self, assoc: Any) -> None:
        with self._lock:
            self._held.pop(assoc, None)

    def held(self, address: str | None = None) -> int:
        with self._lock:
            return sum(1 for h in self._held.values() if address in (None, h.address))

    @contextlib.contextmanager
    def working(self, assoc: Any) -> Iterator[None]:
        """A handler's work: the association is busy until it ends, and worked then."""
        with self._lock:
            slot = self._held.get(assoc)
            if slot is not None:
                slot.busy += 1
        try:
            yield
        finally:
            with self._lock:
                if slot is not None:
                    slot.busy -= 1
                    slot.last_work = time.monotonic()

    def idle(self, now: float) -> list[Any]:
        """The associations that did no work for :attr:`idle_s` and have none on its way."""
        with self._lock:
            candidates = [
                assoc
                for assoc, slot in self._held.items()
                if slot.busy == 0 and now - slot.last_work >= self.idle_s
            ]
        found = []
        for assoc in candidates:
            recv = _bounded_recv(assoc)
            if recv is not None and recv.arriving(now):
                continue
            found.append(assoc)
        return found


class ReceiveBudget:
    """The bytes every association holds of a message it is still receiving, against one
    limit: pynetdicom's ``maximum_associations`` (10) could each hold a message of
    ``max_instance_bytes`` (512 MB by default) at once, 5 GB from ten peers that never finish
    sending. Taken as bytes arrive (:class:`BoundedRecv`), given back when a handler takes
    the message or the association ends. Thread-safe (one thread per association)."""

    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self.held = 0
        self.refused = 0
        """Associations ended because the budget was spent."""

    def take(self, size: int) -> bool:
        """Count ``size`` more bytes held; False (nothing counted) when that would pass the
        limit."""
        with self._lock:
            if self.held + size > self._limit():
                self.refused += 1
                return False
            self.held += size
            return True

    def give(self, size: int) -> None:
        with self._lock:
            self.held -= size


class BoundedRecv:
    """An association socket's ``recv`` (as pynetdicom's ``AssociationSocket.recv``: exactly
    ``nr_bytes``, fewer once the peer closes) that stops a message at its size limit.

    pynetdicom holds a whole DIMSE message in memory before a handler sees it, whatever its
    size: a peer sending a dataset of many GB (or declaring a PDU of 4 GB) filled the server's
    memory before the store could refuse it as too large. This counts what the association
    received since a handler last took a message; past ``max_instance_bytes`` +
    :data:`MESSAGE_SLACK` it logs ``dicom_too_large``, shuts the connection and returns short,
    which pynetdicom takes for a closed connection (the association ends, its buffers go).
    It also reads what has arrived in up to :data:`RECV_CHUNK` at a time, not 4 KiB.
    ``tests/imaging/test_imaging_cstore.py`` checks that pynetdicom still reads through it.

    What it counts is also taken from the SCP's ``budget`` (:class:`ReceiveBudget`), shared by
    all associations: past it the association ends the same way, logged as ``server_busy``
    (the sender may try again later), and the others go on.

    And a message must keep coming: from its first byte (the first byte of a PDU that arrives
    while the association assembles no message: an idle association's wait does not count),
    its bytes must keep up with :func:`consult.imaging.store.arriving_too_slowly`'s floor,
    checked as each piece arrives (silence alone is pynetdicom's network timeout, 60 s
    between two reads: a byte every 59 s held one of the ten association slots for ever, and
    ten such peers every modality out); else the association ends the same way, logged as
    ``dicom_too_slow``."""

    def __init__(
        self,
        assoc_socket: Any,
        limit: Callable[[], int],
        assoc: Any,
        budget: ReceiveBudget,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._socket = assoc_socket
        self._limit = limit
        self._assoc = assoc
        self._budget = budget
        self._lock = threading.Lock()
        self.pending = 0
        """Bytes received since a handler last took a message (taken from the budget)."""
        self.stopped = False
        self._since = clock()
        """When the message arriving began to arrive (the connection's opening, at first)."""
        self._arrived = 0
        """Bytes of it arrived since."""
        self.untaken_since: float | None = None
        """When the first message no handler has taken yet began to arrive (None: none); a
        message nobody takes (unexpected, refused by pynetdicom) keeps it: :class:`Slots`."""
        self.last_data = self._since
        """When bytes last arrived."""

    def __call__(self, nr_bytes: int) -> bytearray:
        raw = self._socket.socket
        out = bytearray()
        while raw is not None and len(out) < nr_bytes and not self.stopped:
            data = raw.recv(min(nr_bytes - len(out), RECV_CHUNK))
            if not data:
                break
            now = self._clock()
            if not out and nr_bytes == PDU_HEADER and self._assembling() is None:
                self._since, self._arrived = now, 0  # a new message's first PDU
                if self.untaken_since is None:
                    self.untaken_since = now
            self.last_data = now
            out += data
            self._arrived += len(data)
            if arriving_too_slowly(self._arrived, now - self._since):
                self._stop(
                    raw,
                    "dicom_too_slow",
                    f"{self._arrived} bytes in {now - self._since:.0f} s",
                )
                break
            with self._lock:  # a handler's thread may be releasing the last message's count
                taken = self._budget.take(len(data))
                if taken:
                    self.pending += len(data)
            if not taken:
                self._stop(
                    raw,
                    "server_busy",
                    f"{self._budget.held} bytes of messages being received already",
                )
            elif self.pending > self._limit() + MESSAGE_SLACK:
                self._stop(raw, DicomTooLarge.code, f"over {self._limit()} bytes in one message")
        if out and not self.stopped:
            _ack_now(raw)
        return out

    def _assembling(self) -> object | None:
        """The DIMSE message pynetdicom is putting together from P-DATA PDUs, if any."""
        return getattr(getattr(self._assoc, "dimse", None), "message", None)

    def release(self) -> None:
        """The message counted so far is no longer held (a handler took it, or the
        association ended)."""
        with self._lock:
            pending, self.pending = self.pending, 0
            self._budget.give(pending)
            self.untaken_since = None

    def arriving(self, now: float) -> bool:
        """Whether a message is on its way: a handler will take it, so its association is not
        idle. Its bytes must still be coming (:data:`MESSAGE_SILENCE_S`), and past
        :data:`MESSAGE_START_S` from the first byte of the first message no handler took,
        the message arriving now must be a payload (:data:`MESSAGE_PAYLOAD`): small messages
        nobody takes (an unexpected response every few seconds, which pynetdicom ignores)
        would otherwise look like one arriving for ever, and so would their sum."""
        since = self.untaken_since
        return (
            since is not None
            and now - self.last_data < MESSAGE_SILENCE_S
            and (now - since < MESSAGE_START_S or self._arrived >= MESSAGE_PAYLOAD)
        )

    def _stop(self, raw: socket.socket, code: str, why: str) -> None:
        self.stopped = True
        logger.warning(
            "C-STORE from %s refused: %s (%s; association closed)",
            str(self._assoc.requestor.ae_title).strip(),
            code,
            why,
        )
        with contextlib.suppress(OSError):
            raw.shutdown(socket.SHUT_RDWR)


def _ack_now(raw: socket.socket) -> None:
    """Acknowledge what ``raw`` received now, not after the delayed-ACK timer (~40 ms).

    A sender with Nagle's algorithm on (DCMTK as built, and many modalities) holds the last
    short segment of a message until what it sent before is acknowledged. When the DUL thread
    read each PDU as soon as it arrived, Linux delayed those ACKs: one instance in 25 of a
    single association waited ~40 ms for its last 1.6 KB (a trace: 24 of 600 cycles of 42-50
    ms, a quarter of the run). ``TCP_QUICKACK`` is not sticky: set after each read, it sends
    the pending ACK at once."""
    if _TCP_QUICKACK is None:  # not Linux
        return
    with contextlib.suppress(OSError):  # closed meanwhile: pynetdicom finds out itself
        raw.setsockopt(socket.IPPROTO_TCP, _TCP_QUICKACK, 1)


_TCP_QUICKACK: Final[int | None] = getattr(socket, "TCP_QUICKACK", None)


def _bounded_recv(assoc: Any) -> BoundedRecv | None:
    """The association's bounded ``recv`` (:meth:`DicomScp._on_connection`), if it has one."""
    recv = getattr(getattr(getattr(assoc, "dul", None), "socket", None), "recv", None)
    return recv if isinstance(recv, BoundedRecv) else None


def message_taken(event: Any) -> None:
    """A handler has the association's message (or the association ended): what arrives next
    counts for the next one."""
    recv = _bounded_recv(event.assoc)
    if recv is not None:
        recv.release()
