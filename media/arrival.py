"""When a datagram reached the machine, from the kernel, not from the event loop.

The publisher's send-side estimator (transport-cc) reads the arrival times we report as the
network's queueing delay. Stamped when the event loop gets round to reading the socket, they
also carry the loop's own lateness: on a busy machine a 100 ms stall of the loop made a burst of
"late" packets, the browser's estimator read congestion on a loopback link and held its camera
at the lowest simulcast layer (a busy-machine browser run: the uplink estimate at 80 kbit/s).
The kernel stamps each datagram as it arrives (``SO_TIMESTAMPNS``); reading the socket with
``recvmsg`` hands that stamp over with the datagram.

asyncio's datagram transport reads with ``recvfrom``: :func:`timestamp_arrivals` replaces its
reader on one socket by one that reads with ``recvmsg`` and keeps the stamp for the callbacks
the datagram goes through (:func:`arrival_us`), all within one loop callback. Private asyncio
API (the selector transport's ``_sock``, ``_read_ready``, the loop's ``_add_reader``), pinned
by tests/media/test_arrival.py. Where anything is missing the socket is left as it was and
:func:`arrival_us` falls back to the loop's clock.

The reader also takes up to :data:`READ_BATCH` datagrams per wake-up, where asyncio's takes
one. One a loop iteration caps what a socket delivers at one datagram per iteration: in a
consultation room of 5 video + 5 audio-only participants the server's iterations ran ~20-40 ms
(its loop lag p50 22 ms, 56% of a core), a video publisher sends ~120 packets/s, so its
socket filled and the kernel dropped 1,651 datagrams in 30 s (loss every subscriber saw), and
the ICE consent checks queued behind seconds of media until the peers' consent expired
(bench/mdt_room.py, docs/consultations.md). What a datagram costs is spent after the read
(aioice queues it for the DTLS task), so reading a burst at once is cheap; the cap bounds one
callback, and the kernel's buffer stays the bound under a sustained overload.
"""

from __future__ import annotations

import logging
import socket
import struct
import sys
import time
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["arrival_us", "timestamp_arrivals"]

#: Python 3.11's socket module lacks the name; 35 is Linux's (asm-generic, x86 and arm64).
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else None)
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY_SPACE = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0
#: The datagram being handled: its kernel arrival on the monotonic clock (us), or None.
_current: int | None = None
#: Datagrams one wake-up of a socket's reader takes at most (asyncio's own takes one).
READ_BATCH = 32


def arrival_us() -> int:
    """When the datagram being handled arrived (monotonic microseconds): the kernel's stamp
    while a timestamped socket's datagram is handled, else now."""
    current = _current
    return current if current is not None else time.monotonic_ns() // 1000


def _kernel_arrival_us(ancillary: list[tuple[int, int, bytes]], offset_ns: int) -> int | None:
    """The kernel's stamp in ``ancillary`` on the monotonic clock (us), with ``offset_ns`` the
    monotonic clock's lead over the real-time one; None without a stamp."""
    for level, kind, data in ancillary:
        if kind == _SO_TIMESTAMPNS and level == socket.SOL_SOCKET and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return (seconds * 1_000_000_000 + nanoseconds + offset_ns) // 1000
    return None


def _clock_offset_ns() -> int:
    """How far the monotonic clock is ahead of the real-time one, now (ns)."""
    return time.monotonic_ns() - time.time_ns()


def timestamp_arrivals(protocol: Any) -> bool:
    """Make ``protocol``'s datagram socket hand the kernel's arrival time to
    :func:`arrival_us` for each datagram it delivers. Idempotent; False where it cannot."""
    transport = getattr(protocol, "transport", None)
    if transport is None or _SO_TIMESTAMPNS is None or not _ANCILLARY_SPACE:
        return False
    if getattr(transport, "_teleconsult_timestamped", False):
        return True
    sock: Any = getattr(transport, "_sock", None)
    loop = getattr(transport, "_loop", None)
    if sock is None or loop is None or not hasattr(loop, "_add_reader"):
        return False
    fileno = sock.fileno()
    if fileno < 0:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    except OSError as exc:
        logger.info("no kernel timestamps on an ICE socket: %s", exc)
        return False
    max_size = getattr(transport, "max_size", 256 * 1024)

    def read_ready() -> None:
        global _current
        # one offset for the burst: the two clocks do not drift apart within a wake-up
        offset_ns = _clock_offset_ns()
        for _ in range(READ_BATCH):
            # a datagram's handler may have closed the transport (and its socket)
            if transport._conn_lost or transport.is_closing():
                return
            try:
                data, ancillary, _flags, addr = sock.recvmsg(max_size, _ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:  # as asyncio's own reader does
                transport._fatal_error(exc, "Fatal read error on datagram transport")
                return
            _current = _kernel_arrival_us(ancillary, offset_ns) if ancillary else None
            try:
                transport._protocol.datagram_received(data, addr)
            finally:
                _current = None

    transport._read_ready = read_ready  # pause/resume_reading re-add this one
    transport._teleconsult_timestamped = True
    loop._remove_reader(fileno)
    loop._add_reader(fileno, read_ready)
    return True
