"""Pins every piece of pynetdicom's private API that web/_pynetdicom_seam.py relies on, and shows
what the seam does to a live association.

If a pynetdicom upgrade moves one of them, this file fails first and says which.
"""

from __future__ import annotations

import inspect
import queue
import select
import shutil
import socket
import subprocess
import threading
import time

import pynetdicom
import pytest
from harness import skip_or_fail
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.dimse import DIMSEServiceProvider
from pynetdicom.dul import DULServiceProvider
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import RequestHandler

from web import _pynetdicom_seam as seam


def test_pinned_version() -> None:
    assert pynetdicom.__version__ == "3.0.4"


def test_the_dul_loop_sleeps_its_delay_then_asks_the_instance_for_transport_events() -> None:
    source = inspect.getsource(DULServiceProvider.run_reactor)
    assert "time.sleep(self._run_loop_delay)" in source
    assert "elif self._is_transport_event():" in source  # looked up on the instance each turn
    assert "if self._process_recv_primitive():" in source
    assert "self.event_queue.get(block=False)" in source
    init = inspect.getsource(DULServiceProvider.__init__)
    assert "self._run_loop_delay = 0.001" in init
    assert "self.to_provider_queue" in init and "queue.Queue()" in init
    # primitives to send are only put (send_pdu) and peeked or taken (the state machine)
    assert "self.to_provider_queue.put(primitive)" in inspect.getsource(DULServiceProvider.send_pdu)
    assert "self.to_provider_queue.queue[0]" in inspect.getsource(
        DULServiceProvider._process_recv_primitive
    )
    transport = inspect.getsource(DULServiceProvider._is_transport_event)
    assert "self.socket.ready" in transport
    assert list(inspect.signature(DULServiceProvider._is_transport_event).parameters) == ["self"]


def test_the_association_reactor_takes_messages_with_a_non_blocking_get_msg() -> None:
    source = inspect.getsource(Association._run_reactor)
    assert "time.sleep(0.001)" in source
    assert "self.dimse.get_msg(block=False)" in source
    assert "self._run_reactor()" in inspect.getsource(Association.run_reactor)
    get_msg = inspect.getsource(DIMSEServiceProvider.get_msg)
    assert "self.msg_queue.get(block=block, timeout=self.dimse_timeout)" in get_msg
    assert list(inspect.signature(DIMSEServiceProvider.get_msg).parameters) == ["self", "block"]


def test_conn_open_is_triggered_before_the_association_threads_start() -> None:
    handle = inspect.getsource(RequestHandler.handle)
    assert handle.index("evt.EVT_CONN_OPEN") < handle.index("assoc.start()")
    # the DUL thread starts from the association's reactor, after EVT_CONN_OPEN
    assert "self.dul.start()" in inspect.getsource(Association.run_reactor)


def test_a_queued_primitive_wakes_the_dul() -> None:
    reader, writer = socket.socketpair()
    try:
        primitives = seam._WakingQueue(writer)
        assert select.select([reader], [], [], 0)[0] == []
        primitives.put("a response")
        assert select.select([reader], [], [], 1)[0] == [reader]
        assert primitives.queue[0] == "a response"
        assert isinstance(primitives, queue.Queue)
    finally:
        reader.close()
        writer.close()
    primitives.put("after the association")  # a closed wake-up socket is not an error
    assert primitives.qsize() == 2


def test_a_live_association_runs_with_its_reactors_woken_by_events() -> None:
    """echoscu against a pynetdicom SCP with the seam: the association is set up, answered and
    released as without it, and both reactors wait on events (no 1 ms sleeps)."""
    if shutil.which("echoscu") is None:
        skip_or_fail("DCMTK echoscu is missing (apt-get install dcmtk)")
    seen: list[Association] = []
    echoed = threading.Event()

    def on_open(event: evt.Event) -> None:
        seam.wake_on_events(event.assoc)
        seen.append(event.assoc)

    def on_echo(_event: evt.Event) -> int:
        echoed.set()
        return 0x0000

    ae = AE("SEAM")
    ae.add_supported_context(Verification)
    server = ae.start_server(
        ("127.0.0.1", 0),
        block=False,
        evt_handlers=[(evt.EVT_CONN_OPEN, on_open), (evt.EVT_C_ECHO, on_echo)],
    )
    try:
        port = server.server_address[1]
        done = subprocess.run(["echoscu", "127.0.0.1", str(port)], capture_output=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr
        assert echoed.is_set()
        (assoc,) = seen
        assert assoc.dul._run_loop_delay == 0
        assert isinstance(assoc.dul.to_provider_queue, seam._WakingQueue)
        assert assoc.dimse.get_msg.__name__ == "get_msg" and not inspect.ismethod(
            assoc.dimse.get_msg
        )
        deadline = time.monotonic() + 10
        while assoc.is_alive() or assoc.dul.is_alive():
            assert time.monotonic() < deadline, "the association's threads did not end"
            time.sleep(0.01)
        assert assoc.is_released
    finally:
        server.shutdown()


def test_seam_refuses_an_association_whose_dul_already_queued_something() -> None:
    ae = AE("SEAM")
    assoc = Association(ae, "acceptor")
    assoc.dul.to_provider_queue.put("early")
    with pytest.raises(RuntimeError):
        seam.wake_on_events(assoc)


def test_log_handler_level_none_leaves_the_per_message_log_handlers_unbound() -> None:
    """web/dicom_scp.py sets ``_config.LOG_HANDLER_LEVEL = "none"`` (a documented knob): the
    standard handlers, which format a log line for every PDU and DIMSE message, are then not
    bound to new associations."""
    from pynetdicom import _config

    before = _config.LOG_HANDLER_LEVEL
    try:
        _config.LOG_HANDLER_LEVEL = "none"
        quiet = Association(AE("SEAM"), "acceptor")
        _config.LOG_HANDLER_LEVEL = "standard"
        chatty = Association(AE("SEAM"), "acceptor")
    finally:
        _config.LOG_HANDLER_LEVEL = before
    assert evt.EVT_PDU_RECV not in quiet._handlers
    assert evt.EVT_DIMSE_RECV not in quiet._handlers
    assert evt.EVT_PDU_RECV in chatty._handlers and evt.EVT_DIMSE_SENT in chatty._handlers
