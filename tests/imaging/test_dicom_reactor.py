"""pynetdicom's association threads woken by their work, and C-STORE responses encoded directly
(web/dicom_reactor.py; issue 15, C-STORE >= 150 instances/s on one association).

The encoding is held to pynetdicom's, byte for byte; the waits are checked for what wakes them
(each waits up to 5 s here, where pynetdicom's turn is 1 ms, so a wake-up that did not happen
shows). Real associations through the SCP are in test_imaging_cstore.py."""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE

from web.dicom_limits import BoundedRecv, ReceiveBudget
from web.dicom_reactor import _DulWaker, encode_store_response
from web.dicom_scp import NextFiles

uids = (
    st.lists(st.integers(min_value=0, max_value=10**12).map(str), min_size=2, max_size=8)
    .map(".".join)
    .filter(lambda uid: len(uid) <= 64 and not uid.startswith("0"))
)


def _pynetdicom_encoding(primitive: C_STORE) -> bytes:
    """The command PDV pynetdicom sends for ``primitive``, without its control header."""
    message = C_STORE_RSP()
    message.primitive_to_message(primitive)
    (pdata,) = list(message.encode_msg(1, 0))
    ((_context, pdv),) = pdata.presentation_data_value_list
    assert pdv[:1] == b"\x03"  # a whole command set in one fragment
    return pdv[1:]


def _response(**fields: object) -> C_STORE:
    primitive = C_STORE()
    for name, value in fields.items():
        setattr(primitive, name, value)
    return primitive


@settings(max_examples=300, deadline=None)
@given(
    message_id=st.integers(min_value=0, max_value=0xFFFF),
    status=st.sampled_from([0x0000, 0xA700, 0xC000, 0x0110, 0xB000, 0xB007, 0xC211]),
    sop_class=st.none() | uids,
    sop_instance=st.none() | uids,
)
def test_a_store_response_is_encoded_as_pynetdicom_encodes_it(
    message_id: int, status: int, sop_class: str | None, sop_instance: str | None
) -> None:
    fields: dict[str, object] = {"MessageIDBeingRespondedTo": message_id, "Status": status}
    if sop_class is not None:
        fields["AffectedSOPClassUID"] = sop_class
    if sop_instance is not None:
        fields["AffectedSOPInstanceUID"] = sop_instance
    primitive = _response(**fields)
    assert encode_store_response(primitive) == _pynetdicom_encoding(primitive)


def test_what_it_does_not_encode_is_left_to_pynetdicom() -> None:
    base = {
        "MessageIDBeingRespondedTo": 3,
        "Status": 0xC000,
        "AffectedSOPInstanceUID": "1.2.3",
    }
    assert encode_store_response(_response(**base)) is not None
    assert encode_store_response(_response(**base, ErrorComment="refused")) is None
    assert encode_store_response(_response(**base, OffendingElement=[0x00100010])) is None
    assert encode_store_response(_response(MessageIDBeingRespondedTo=3)) is None  # no status
    assert encode_store_response(_response(Status=0)) is None  # no message id


class _Dul(SimpleNamespace):
    """What a waker reads of pynetdicom's DUL: ``socket.socket``."""


def _timed_wait(waker: _DulWaker, seconds: float) -> float:
    started = time.monotonic()
    waker.wait(seconds)
    return time.monotonic() - started


def test_the_dul_thread_wakes_when_a_primitive_is_queued_for_it() -> None:
    dul = _Dul(socket=None)
    waker = _DulWaker(dul)
    try:
        threading.Timer(0.05, waker.wake).start()
        assert _timed_wait(waker, 5.0) < 2.5  # woken, not timed out
        assert 0.15 <= _timed_wait(waker, 0.2) < 2.5  # the wake-up was taken: it waits again
    finally:
        waker.close()
    assert waker.fd == -1
    waker.wake()  # after the DUL thread closed it: a late primitive writes nowhere
    waker.close()  # and closing twice is harmless


def test_the_socket_wakes_it() -> None:
    ours, peer = socket.socketpair()
    dul = _Dul(socket=SimpleNamespace(socket=ours))
    waker = _DulWaker(dul)
    try:
        threading.Timer(0.05, peer.send, (b"\x04",)).start()
        assert _timed_wait(waker, 5.0) < 2.5  # the next request's (or PDU's) first bytes
        ours.close()  # the connection went: the wait falls back to sleeping its turn
        assert 0.15 <= _timed_wait(waker, 0.2) < 2.5
    finally:
        waker.close()
        peer.close()


def test_an_over_long_uid_is_left_to_pynetdicom() -> None:
    primitive = _response(MessageIDBeingRespondedTo=1, Status=0)
    primitive._affected_sop_instance_uid = "1" * 65  # past pynetdicom's own setter's check
    assert encode_store_response(primitive) is None


def test_an_associations_next_file_is_made_ahead_and_never_left_behind(tmp_path: Path) -> None:
    """R20: each C-STORE handler has the association's next file created while its own
    transaction runs (web.dicom_scp.NextFiles); the next handler takes it open for synced
    writes, and an association that ends, or a stopping SCP, leaves no file and no descriptor
    behind."""
    names = iter(range(100))
    files = NextFiles(lambda: tmp_path / f"{next(names)}.part")
    assoc, other = _Association(), _Association()
    path, fd = files.take(assoc)  # nothing ready: the caller creates it
    assert fd is None and not path.exists()
    with ThreadPoolExecutor(2) as workers:
        files.prepare(assoc, workers)
        files.prepare(assoc, workers)  # one at a time
        assert files.waiting == 1
        path, fd = files.take(assoc)
        assert fd is not None and path.exists() and path.stat().st_size == 0
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_SYNC
        os.close(fd)
        assert files.waiting == 0 and sorted(tmp_path.iterdir()) == [path]
        # an association that ends: its ready file goes, and none is made for it again
        files.prepare(assoc, workers)
        files.prepare(other, workers)
        files.discard(assoc)
        files.prepare(assoc, workers)
        assert files.waiting == 1
        # the SCP stops: the others' go too
        files.discard_all()
        assert files.waiting == 0
    assert sorted(tmp_path.iterdir()) == [path]
    open_files = [os.readlink(fd) for fd in Path("/proc/self/fd").iterdir() if _alive(fd)]
    assert not [name for name in open_files if name.startswith(str(tmp_path))]
    # workers that are shutting down: nothing is made, nothing fails
    workers = ThreadPoolExecutor(1)
    workers.shutdown()
    files.prepare(other, workers)
    assert files.waiting == 0


class _Association:
    """An object standing for a pynetdicom association (hashable, weakly referenceable)."""


def _alive(fd: Path) -> bool:
    try:
        os.readlink(fd)
    except OSError:
        return False
    return True


class _RecordingSocket:
    """A TCP socket whose reads and options set are recorded in order."""

    def __init__(self, raw: socket.socket) -> None:
        self.raw = raw
        self.calls: list[tuple[object, ...]] = []

    def recv(self, size: int) -> bytes:
        data = self.raw.recv(size)
        self.calls.append(("recv", len(data)))
        return data

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.raw.setsockopt(level, option, value)
        self.calls.append(("setsockopt", level, option, value))


def test_what_a_peer_sends_is_acknowledged_as_soon_as_it_is_read() -> None:
    """A sender with Nagle's algorithm on holds a message's last short segment until what it
    sent before is acknowledged; the SCP's reader asks for the ACK at once after every read
    (``TCP_QUICKACK``), so the tail does not wait out the delayed-ACK timer (~40 ms)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        sender = socket.create_connection(server.getsockname())
        receiver, _ = server.accept()
    receiver.settimeout(30)
    recorded = _RecordingSocket(receiver)
    assoc = SimpleNamespace(requestor=SimpleNamespace(ae_title="PEER"))
    recv = BoundedRecv(
        SimpleNamespace(socket=recorded), lambda: 1 << 30, assoc, ReceiveBudget(lambda: 1 << 31)
    )
    quickack = ("setsockopt", socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    try:
        sender.sendall(b"\x04\x00\x00\x00\x10\x00" + b"x" * 4096)
        assert recv(6) == b"\x04\x00\x00\x00\x10\x00"
        assert recorded.calls[-1] == quickack
        assert recv(4096) == b"x" * 4096
        assert recorded.calls[-1] == quickack
        sender.close()
        recorded.calls.clear()
        assert recv(6) == b""  # the peer closed: nothing read, nothing to acknowledge
        assert quickack not in recorded.calls
    finally:
        receiver.close()
        sender.close()
