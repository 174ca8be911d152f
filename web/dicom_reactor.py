"""pynetdicom's per-association threads, woken by their work; C-STORE responses encoded directly.

Each association of the SCP runs two pynetdicom threads that poll: the DUL thread (the socket
and the queue of primitives to send) and the association's reactor (the queue of decoded
messages), each sleeping 1 ms whenever it finds nothing to do. A C-STORE on one association
is serial (the sender waits for each response before the next request), so every sleep that
a step waits out is in the rate. A trace of one association (600 instances of a 512x512 CT,
one instance every ~8 ms) showed:

- the next request's first bytes were read 1.15 ms after the response went out: the sender
  answers in ~0.3 ms, the rest was the DUL thread's sleep;
- the response left 1.05 ms after the handler returned: pynetdicom built its seven-element
  command set as a pydicom dataset, once to count its length and once to encode it (0.85 ms
  under the GIL), then the DUL thread picked it up on its next turn.

So, per association (:func:`attach`), the DUL thread's idle sleep becomes a ``select`` on the
association's socket and on an eventfd written whenever a primitive is queued for it; the
reactor's becomes a wait on its message queue's condition. Both still wake after 1 ms at the
latest, so every check pynetdicom makes on its turns (release, abort, timers) is made as often
as before. The socket wakes the DUL thread within a message too: the sender writes a large
dataset in several PDUs (DCMTK: 128 KiB each), and a PDU not there yet when the last one was
read cost a whole turn (a trace: 1.16 ms of a ~7.5 ms instance, between the first and second
data PDUs). An earlier version left the socket out of the wait within a message, so that a
PDU would be there whole when read; measured with it in, pynetdicom's 7,205 reads of 600
instances (each PDU's 6-byte header, then its body) took 7,664 socket reads (loopback, DCMTK):
the socket's reader (:class:`web.dicom_limits.BoundedRecv`) blocks for the rest of a PDU, as
before.
Making the socket readable only once a whole body is there (``SO_RCVLOWAT``) was tried and
dropped: on Linux 6.18 an association stalled until pynetdicom's 60 s network timeout, the
server's receive queue empty and storescu's last 2 KB unacknowledged (Linux has mended
``SO_RCVLOWAT`` hangs before). Reading as soon as a PDU arrives has its own trap, answered
by :func:`web.dicom_limits._ack_now`: a sender's delayed ACKs.

A C-STORE response without an error comment or offending element (every one the SCP sends on
success or a plain refusal) is encoded here directly, byte for byte as pynetdicom encodes it
(``tests/imaging/test_dicom_reactor.py`` compares); anything else is pynetdicom's.

This reaches into pynetdicom's threads (their module's ``time``, a queue's ``put``, the DIMSE
provider's ``send_msg`` of each association, nothing global beyond the ``time`` seen by
``pynetdicom.dul`` and ``pynetdicom.association``, whose other sleeps are left alone);
pynetdicom is pinned in ``pyproject.toml`` and the tests run a real association through it.
"""

from __future__ import annotations

import os
import select
import struct
import threading
import time
import weakref
from typing import Any, Final

REACTOR_DELAY_S: Final = 0.001
"""pynetdicom's 1 ms turn (``DULServiceProvider._run_loop_delay``, and the association
reactor's own ``time.sleep(0.001)``): the sleeps taken over, and the longest a wait lasts."""

_COMMAND: Final = 0x0000
_STORE_RSP: Final = 0x8001
_NO_DATASET: Final = 0x0101
_US: Final = struct.Struct("<HHIH")
_COMMAND_LAST: Final = b"\x03"
"""The message control header of a PDV holding a whole command set (PS3.8 E.2)."""


def encode_store_response(primitive: Any) -> bytes | None:
    """The command set of a C-STORE-RSP (implicit VR little endian, group length first, as
    pynetdicom's ``C_STORE_RSP`` encodes it), or None when pynetdicom should encode it: an
    error comment or an offending element, a missing message id or status, a value out of
    range or not ASCII."""
    if primitive.ErrorComment is not None or primitive.OffendingElement is not None:
        return None
    message_id, status = primitive.MessageIDBeingRespondedTo, primitive.Status
    if not isinstance(message_id, int) or not isinstance(status, int):
        return None
    if not (0 <= message_id <= 0xFFFF and 0 <= status <= 0xFFFF):
        return None
    try:
        parts = []
        if primitive.AffectedSOPClassUID is not None:
            parts.append(_uid(0x0002, str(primitive.AffectedSOPClassUID)))
        # CommandField, MessageIDBeingRespondedTo, CommandDataSetType, Status
        for element, value in (
            (0x0100, _STORE_RSP),
            (0x0120, message_id),
            (0x0800, _NO_DATASET),
            (0x0900, status),
        ):
            parts.append(_US.pack(_COMMAND, element, 2, value))
        if primitive.AffectedSOPInstanceUID is not None:
            parts.append(_uid(0x1000, str(primitive.AffectedSOPInstanceUID)))
    except (UnicodeEncodeError, ValueError):
        return None
    body = b"".join(parts)
    return struct.pack("<HHII", _COMMAND, 0x0000, 4, len(body)) + body


def _uid(element: int, value: str) -> bytes:
    data = value.encode("ascii")
    if not data or len(data) > 64:
        raise ValueError("not a UID")
    if len(data) % 2:
        data += b"\x00"
    return struct.pack("<HHI", _COMMAND, element, len(data)) + data


class _DulWaker:
    """What the DUL thread of one association waits on instead of sleeping: an eventfd
    written when a primitive is queued for it, and the association's socket.
    Used by that thread alone; closed by it when it ends (the lock keeps a late writer from
    writing into a descriptor number reused meanwhile)."""

    def __init__(self, dul: Any) -> None:
        self.fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._lock = threading.Lock()
        # the DUL held weakly: the finalizer that closes an unused waker holds the waker,
        # and must not keep the DUL, its association and the association's last message alive
        self._dul = weakref.ref(dul)

    def wake(self) -> None:
        with self._lock:
            if self.fd >= 0:
                os.eventfd_write(self.fd, 1)

    def wait(self, seconds: float) -> None:
        watched: list[Any] = [self.fd]
        assoc_socket = getattr(self._dul(), "socket", None)
        sock = getattr(assoc_socket, "socket", None)
        if sock is not None and sock.fileno() >= 0:
            watched.append(sock)
        try:
            ready, _, _ = select.select(watched, [], [], seconds)
        except (OSError, ValueError):  # the socket closed meanwhile: the DUL finds out itself
            time.sleep(seconds)
            return
        if self.fd in ready:
            try:
                os.eventfd_read(self.fd)
            except BlockingIOError:
                pass

    def close(self) -> None:
        with self._lock:
            fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)


class _WakingTime:
    """The ``time`` module as pynetdicom's DUL and association modules see it: their 1 ms turn
    waits for work on the threads :func:`attach` prepared; everything else is ``time``."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        if seconds == REACTOR_DELAY_S:
            thread = threading.current_thread()
            waker = getattr(thread, "_teleconsult_waker", None)
            if isinstance(waker, _DulWaker):
                waker.wait(seconds)
                return
            messages = getattr(thread, "_teleconsult_messages", None)
            if messages is not None:  # the association's reactor: its decoded messages
                with messages.not_empty:  # holds the queue's mutex: its deque read as is
                    if not messages.queue:
                        messages.not_empty.wait(seconds)
                return
        time.sleep(seconds)


_installed = False
_install_lock = threading.Lock()


def install() -> None:
    """Give pynetdicom's DUL and association modules the waking ``time`` (once)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        import pynetdicom.association
        import pynetdicom.dul

        pynetdicom.dul.time = _WakingTime()  # type: ignore[assignment]
        pynetdicom.association.time = _WakingTime()  # type: ignore[assignment]
        _installed = True


def attach(assoc: Any) -> None:
    """Prepare a new association (before its threads start): its DUL thread and reactor wake
    for their work, and its C-STORE responses are encoded directly. The SCP calls
    :func:`install` first."""
    dul = assoc.dul
    waker = _DulWaker(dul)
    weakref.finalize(dul, waker.close)  # a DUL thread that never ran
    queue = dul.to_provider_queue
    put = queue.put

    def waking_put(item: Any, *args: Any, **kwargs: Any) -> None:
        put(item, *args, **kwargs)
        waker.wake()

    queue.put = waking_put
    thread = weakref.ref(dul)  # no cycle through the DUL's own attribute

    def run_then_close() -> None:
        try:
            running = thread()
            if running is not None:
                type(running).run(running)
        finally:
            waker.close()

    dul.run = run_then_close
    dul._teleconsult_waker = waker
    assoc._teleconsult_messages = assoc.dimse.msg_queue
    _encode_store_responses(assoc)


def _encode_store_responses(assoc: Any) -> None:
    from pynetdicom import evt
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.pdu_primitives import P_DATA

    dimse = assoc.dimse
    send_msg = dimse.send_msg

    def send_store_response(primitive: Any, context_id: int) -> None:
        encoded = None
        if type(primitive) is C_STORE and primitive.MessageIDBeingRespondedTo is not None:
            encoded = encode_store_response(primitive)
        limit = dimse.maximum_pdu_size  # the peer's; 0: none
        if (
            encoded is None
            or (limit and len(encoded) > limit - 6)  # pynetdicom would fragment it
            or assoc.get_handlers(evt.EVT_DIMSE_SENT)  # someone wants the message object
        ):
            send_msg(primitive, context_id)
            return
        pdata = P_DATA()
        pdata.presentation_data_value_list.append((context_id, _COMMAND_LAST + encoded))
        dimse.dul.send_pdu(pdata)

    dimse.send_msg = send_store_response
