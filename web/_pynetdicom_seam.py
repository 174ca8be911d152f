"""Every use of pynetdicom's private API, in one place: its reactors wake on events.

pynetdicom (pinned in pyproject.toml) runs two polling threads per association. The DUL thread
loops on ``time.sleep(dul._run_loop_delay)`` (1 ms) whenever its previous turn found nothing to
do, then checks the socket with ``select(..., 0)`` and its queue of primitives to send; the
association's reactor loops on a fixed ``time.sleep(0.001)`` and then takes a decoded DIMSE
message with ``dimse.get_msg(block=False)``. One C-STORE crosses those sleeps about three times
(its first PDU arriving while the DUL sleeps, the decoded message waiting for the reactor, the
response waiting for the DUL). Measured on the 2-core machine (load 1-2): DCMTK's storescu into
a pynetdicom SCP that answers at once did 237-286 instances/s with the sleeps and 373-384/s
when the DUL alone polled every 0.1 ms (which costs CPU whenever an association is idle); a
C-ECHO round trip on one association from a pynetdicom SCU took 4.2 ms (median; 3.9-4.9), 3.7
ms (3.2-5.0) with this seam.

:func:`wake_on_events` keeps each loop's cadence (at most 1 ms between turns, as before: the
timers, a kill, a release or an abort are seen as soon as today) but lets a turn start as soon
as there is something to do:

* DUL: ``_run_loop_delay`` is 0 and ``_is_transport_event`` (looked up on the instance each turn)
  first waits up to 1 ms in ``poll`` for the socket or a wake-up byte, then runs pynetdicom's
  own check. The wake-up byte is written by ``to_provider_queue.put`` (a :class:`queue.Queue`
  subclass put in place before the DUL thread starts): a response queued by the association's
  thread is sent at once. It never waits while the DUL has an event queued or a primitive to
  send, so in the worst case a turn is as late as with pynetdicom's own sleep.
* association: ``dimse.get_msg`` (looked up on the instance), called with ``block=False`` from the
  association's own thread (its reactor), waits up to 1 ms for a message instead of returning
  at once, so a decoded C-STORE is served when it arrives, not at the next 1 ms tick.

A faster answer widens a race of pynetdicom's own *requestor* (pydicom/pynetdicom#875: its
reactor may take the response meant for ``send_c_*`` when it comes back within a few
microseconds of the reactor's checkpoint): a pynetdicom SCU sending C-ECHOs back to back on
loopback hit it twice in ~3600 against this SCP, never in ~3600 against the plain one. The race
is the SCU's (any quick SCP makes it likelier); DCMTK's tools (our tests) do not have it.

tests/imaging/test_pynetdicom_seam.py pins each piece of pynetdicom this relies on; an upgrade
that moves one fails there first.
"""

from __future__ import annotations

import queue
import select
import socket
import threading
import weakref
from typing import Any, Final

TURN_S: Final = 0.001
"""The longest a reactor's turn waits for an event: pynetdicom's own loop delay."""


class _WakingQueue(queue.Queue[Any]):
    """The DUL's queue of primitives to send: each put also wakes the DUL's ``poll``."""

    def __init__(self, wake: socket.socket) -> None:
        super().__init__()
        self._wake = wake

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        try:
            self._wake.send(b"\x00")
        except OSError:  # closed (the association is over) or full (a wake-up is pending)
            pass


def wake_on_events(assoc: Any) -> None:
    """Make ``assoc``'s two reactors wake on events (see the module's docstring). Call it from
    ``EVT_CONN_OPEN``, before the association's threads start."""
    dul = assoc.dul
    dimse = assoc.dimse
    reader, writer = socket.socketpair()
    reader.setblocking(False)
    writer.setblocking(False)
    weakref.finalize(dul, reader.close)
    weakref.finalize(dul, writer.close)
    if not dul.to_provider_queue.empty():  # nothing is queued before the threads start
        raise RuntimeError("the DUL already has primitives queued")
    dul.to_provider_queue = _WakingQueue(writer)
    original_transport_event = dul._is_transport_event

    def is_transport_event() -> bool:
        if not dul.event_queue.qsize() and not dul.to_provider_queue.qsize():
            waiting = select.poll()  # poll, not select: no limit on descriptor numbers
            waiting.register(reader, select.POLLIN)
            sock = getattr(dul.socket, "socket", None)
            if sock is not None and sock.fileno() >= 0:
                waiting.register(sock, select.POLLIN)
            try:
                woken = waiting.poll(TURN_S * 1000)
            except OSError:  # pynetdicom's own check below finds out what happened
                woken = []
            if any(fd == reader.fileno() for fd, _ in woken):
                try:
                    while reader.recv(4096):
                        pass
                except OSError:  # drained
                    pass
        return bool(original_transport_event())

    dul._is_transport_event = is_transport_event
    dul._run_loop_delay = 0  # the wait above is the loop's delay

    messages = dimse.msg_queue
    original_get_msg = dimse.get_msg

    def get_msg(block: bool = False) -> Any:
        if not block and threading.current_thread() is assoc:
            with messages.not_empty:
                if not messages.queue:
                    messages.not_empty.wait(TURN_S)
        return original_get_msg(block)

    dimse.get_msg = get_msg
