"""SRTP datagrams handled in the socket's callback (media/_aiortc_seam.py, ``_DirectReceive``).

The direct path replaces aiortc's queue hop only where that cannot change what the DTLS
transport's handlers see: in order, each once, counted as aiortc counts them. The DTLS side is
a stand-in here (no handshake); the real one runs in every call test, and test_seam.py pins
the aiortc and aioice names replayed.
"""

from __future__ import annotations

import asyncio
import inspect
from types import SimpleNamespace
from typing import Any

import aioice.ice
import pylibsrtp
import pytest
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from peers import wait_for

from media import _aiortc_seam as seam
from media import _ice_seam
from media.datagram_guard import DTLS, SRTP, DatagramGuard

RTP = bytes([0x80, 96]) + bytes(18)
RTCP = bytes([0x80, 200]) + bytes(18)  # a sender report's packet type


class _Srtp:
    """A session that 'decrypts' by tagging, or refuses datagrams that start with 0xBF."""

    def unprotect(self, data: bytes) -> bytes:
        if data[0] == 0xBF:
            raise pylibsrtp.Error("authentication failed")
        return b"rtp:" + data

    def unprotect_rtcp(self, data: bytes) -> bytes:
        return b"rtcp:" + data


class _Dtls(SimpleNamespace):
    """What ``_DirectReceive`` reads of an RTCDtlsTransport once its handshake is done."""

    def __init__(self) -> None:
        super().__init__(
            _rx_srtp=_Srtp(),
            _state=DtlsState.CONNECTED,
            _RTCDtlsTransport__rx_bytes=0,
            _RTCDtlsTransport__rx_packets=0,
        )
        self.handled: list[bytes] = []
        self.gates: dict[bytes, asyncio.Future[None]] = {}

    async def _handle_rtp_data(self, data: bytes, arrival_time_ms: int) -> None:
        assert arrival_time_ms > 0
        gate = self.gates.get(data)
        if gate is not None:
            await gate
        if data.endswith(b"\xee"):
            raise ValueError("a handler that fails")
        self.handled.append(data)

    async def _handle_rtcp_data(self, data: bytes) -> None:
        self.handled.append(data)


async def _receiver(
    parked: bool = True,
) -> tuple[Any, _Dtls, aioice.ice.Connection, DatagramGuard, asyncio.Task[Any] | None]:
    connection = aioice.ice.Connection(ice_controlling=False)
    dtls = _Dtls()
    guard = DatagramGuard("direct")
    direct = seam._DirectReceive(dtls, connection, guard)  # type: ignore[arg-type]
    getter = None
    if parked:  # the DTLS transport's task, waiting for its next datagram
        getter = asyncio.ensure_future(connection._queue.get())
        await asyncio.sleep(0)
        assert connection._queue._getters
    return direct, dtls, connection, guard, getter


def _packet(n: int) -> bytes:
    return RTP[:2] + n.to_bytes(2, "big") + RTP[4:]


async def test_srtp_is_handled_in_the_callback_counted_as_aiortc_counts_it():
    direct, dtls, connection, _guard, getter = await _receiver()
    direct.deliver(RTP, 1, SRTP)
    direct.deliver(RTCP, 1, SRTP)
    # handled before anything else ran: no queue, no task step
    assert dtls.handled == [b"rtp:" + RTP, b"rtcp:" + RTCP]
    assert connection._queue.empty()
    assert dtls._RTCDtlsTransport__rx_packets == 2
    assert dtls._RTCDtlsTransport__rx_bytes == len(RTP) + len(RTCP)
    assert not getter.done()
    getter.cancel()


async def test_dtls_records_and_a_busy_dtls_task_take_aiortcs_way():
    direct, dtls, connection, _guard, getter = await _receiver()
    record = bytes([22]) + bytes(20)
    direct.deliver(record, 1, DTLS)  # a DTLS record always goes to the DTLS task
    assert dtls.handled == []
    assert (await getter) == (record, 1)
    # the task took it and is busy with it: a datagram now must not overtake it
    direct.deliver(RTP, 1, SRTP)
    assert dtls.handled == []
    assert connection._queue.get_nowait() == (RTP, 1)
    # before the handshake is done, everything goes to the task
    dtls._rx_srtp = None
    getter = asyncio.ensure_future(connection._queue.get())
    await asyncio.sleep(0)
    direct.deliver(RTP, 1, SRTP)
    assert (await getter) == (RTP, 1)


async def test_a_handler_that_waits_keeps_the_later_datagrams_behind_it_in_order():
    direct, dtls, connection, _guard, getter = await _receiver()
    first, second, third = _packet(1), _packet(2), _packet(3)
    gate = dtls.gates[b"rtp:" + first] = asyncio.get_running_loop().create_future()
    direct.deliver(first, 1, SRTP)
    direct.deliver(second, 1, SRTP)
    direct.deliver(third, 1, SRTP)
    await asyncio.sleep(0.01)
    assert dtls.handled == []  # the first waits; the others wait behind it, not in aioice's
    assert connection._queue.empty()
    assert _ice_seam.unread(connection)  # the failover's "still reading" sees them
    gate.set_result(None)
    await wait_for(lambda: len(dtls.handled) >= 3, 2, 0.005, lambda: dtls.handled)
    assert dtls.handled == [b"rtp:" + p for p in (first, second, third)]
    assert not _ice_seam.unread(connection)
    direct.deliver(_packet(4), 1, SRTP)  # and the next is handled at once again
    assert dtls.handled[-1] == b"rtp:" + _packet(4)
    getter.cancel()


async def test_srtp_refusals_and_failing_handlers_are_dropped_not_raised():
    direct, dtls, connection, guard, getter = await _receiver()
    refused = bytes([0xBF, 96]) + bytes(18)
    direct.deliver(refused, 1, SRTP)  # as aiortc: dropped, the transport goes on
    failing = _packet(7)[:-1] + b"\xee"
    direct.deliver(failing, 1, SRTP)
    assert guard.stats()["rtp_error"] == 1
    # a handler that fails after waiting is counted too, and the next one still runs
    slow_failing = _packet(8)[:-1] + b"\xee"
    gate = dtls.gates[b"rtp:" + slow_failing] = asyncio.get_running_loop().create_future()
    direct.deliver(slow_failing, 1, SRTP)
    direct.deliver(_packet(9), 1, SRTP)
    gate.set_result(None)
    await wait_for(lambda: guard.stats()["rtp_error"] >= 2, 2, 0.005, guard.stats)
    assert guard.stats()["rtp_error"] == 2
    assert dtls.handled == [b"rtp:" + _packet(9)]
    assert connection._queue.empty()
    getter.cancel()


async def test_a_closed_transport_takes_aiortcs_way():
    direct, dtls, _connection, _guard, getter = await _receiver()
    dtls._state = DtlsState.CLOSED
    direct.deliver(RTP, 1, SRTP)
    assert dtls.handled == []
    assert (await getter) == (RTP, 1)


@pytest.mark.parametrize(
    "needle",
    [
        "data = await self.transport._recv()",
        "self.__rx_bytes += len(data)",
        "self.__rx_packets += 1",
        "elif first_byte > 127 and first_byte < 192 and self._rx_srtp:",
        "arrival_time_ms = clock.current_ms()",
        "if is_rtcp(data):",
        "data = self._rx_srtp.unprotect_rtcp(data)",
        "await self._handle_rtcp_data(data)",
        "data = self._rx_srtp.unprotect(data)",
        "await self._handle_rtp_data(data, arrival_time_ms=arrival_time_ms)",
        "except pylibsrtp.Error as exc:",
    ],
)
def test_aiortcs_receive_step_is_what_the_direct_path_replays(needle: str):
    assert needle in inspect.getsource(RTCDtlsTransport._recv_next)


def test_aioices_queue_is_what_the_dtls_task_waits_on():
    assert "self._queue.put_nowait((data, component))" in inspect.getsource(
        aioice.ice.Connection.data_received
    )
    assert "result = await self._queue.get()" in inspect.getsource(aioice.ice.Connection.recvfrom)
    queue_get = inspect.getsource(asyncio.Queue.get)
    assert "self._getters.append(getter)" in queue_get
    assert "self._wakeup_next(self._getters)" in inspect.getsource(asyncio.Queue.put_nowait)


async def test_in_a_real_call_the_servers_media_takes_the_direct_path(server):
    """A call through the server (aiortc peers on loopback): once DTLS is up, the server's
    transports take SRTP out of the socket's callback, not out of aioice's queue, and media
    flows both ways all the same."""
    from client import start_call

    visit = await server.visit()
    doctor, patient = await start_call(server.url, visit)
    try:
        transports = [t for r in server.media.worker.routers for t in r._transports.values()]
        assert len(transports) == 4
        queued: list[int] = []
        dtlss = []
        for transport in transports:
            dtls = transport._pc.getTransceivers()[0].receiver.transport
            connection = dtls.transport._connection
            dtlss.append(dtls)
            put = connection._queue.put_nowait
            queued.append(0)

            def counting_put(item: Any, put: Any = put, index: int = len(queued) - 1) -> None:
                if item is not None and 127 < item[0][0] < 192:
                    queued[index] += 1
                put(item)

            connection._queue.put_nowait = counting_put
        producers = [p for r in server.media.worker.routers for p in r.producers]
        before = [d._RTCDtlsTransport__rx_packets for d in dtlss]
        received = [p.packets_received for p in producers]
        await wait_for(
            lambda: all(
                p.packets_received > r + 50 for p, r in zip(producers, received, strict=True)
            ),
            10,
            message=lambda: [p.packets_received for p in producers],
        )
        handled = sum(d._RTCDtlsTransport__rx_packets for d in dtlss) - sum(before)
        assert handled > 200
        assert sum(queued) == 0, (queued, handled)
    finally:
        for p in (doctor, patient):
            await p.close()
