"""aioice's private API for the ICE paths of one connection (the other half of the seam).

media/_aiortc_seam.py holds every other use of aiortc's and aioice's private API; this module
holds those that choose and watch the network path of a Transport, so that path code stays apart
from the packet code:

* per-transport host addresses: aioice's ``Connection.gather_candidates`` takes its host
  addresses from the module function ``get_host_addresses`` (every interface but loopback). We
  replace ``gather_candidates`` on each connection instance of one peer connection, so that each
  Transport gathers on the addresses it is given (one per network provider), nothing
  process-wide.
* the selected pair: aioice sends only on ``Connection._nominated[component]`` and receives on
  every socket of the connection without a source check, so rewriting that entry moves the
  sending path at once while DTLS and SRTP carry on (measured, research note).
* probes: a STUN binding request, signed like aioice's own checks, on one local socket to one
  remote candidate, with no retransmission.
* per-socket receive counters: a wrapper in front of each ICE socket's ``datagram_received``.
* consent freshness (RFC 7675): aioice's ``Connection.query_consent`` counts a check not
  answered within 0.5 s (no retransmission) as a failure and closes the connection after six in
  a row, so a peer whose answers come late (a busy machine: the answer waits behind the media
  queued on the socket) loses a path that carries media all the while. ``connect()`` starts
  ``self.query_consent()``, so we replace it on each connection instance with one that
  retransmits each check and lets consent expire only when no check was answered for 30 s, as
  the RFC puts it.
* unread datagrams: a socket's kernel receive queue (``FIONREAD``) and aioice's queue for DTLS.
  asyncio reads one datagram per socket per loop pass, so after the loop stalled a connection
  that carries more (the camera's) is read behind one that carries less; what waits there is
  no silence of its path.
* copies onto the standby path: aiortc sends through ``Connection.send``, which calls
  ``self.sendto``; we wrap ``sendto`` on the instance to send chosen datagrams (audio) a second
  time from another socket to another remote address. The receiver's SRTP replay check drops
  whichever copy comes second.

tests/media/test_ice_seam.py pins each of these; an aioice upgrade that moves one fails there.
"""

from __future__ import annotations

import asyncio
import fcntl
import inspect
import logging
import random
import struct
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aioice.ice
import aioice.stun
from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import RTCDtlsTransport

COMPONENT = 1  # RTP and RTCP are muxed: one component

logger = logging.getLogger(__name__)

#: Consent expires when no consent check was answered for this long (RFC 7675: 30 s).
CONSENT_EXPIRY_S = 30.0
#: Sends of each consent check after the first (0.5 s, then 1 s apart): an answer up to 3.5 s
#: late still counts.
CONSENT_RETRANSMISSIONS = 2


def gather_on(pc: RTCPeerConnection, addresses: Sequence[str]) -> None:
    """Make every ICE connection ``pc`` creates gather host candidates on ``addresses`` only.

    Call before anything else wraps ``pc``'s DTLS transport factory (the datagram guard wraps
    the connection's ``gather_candidates`` after us and so guards the sockets we open).
    An empty ``addresses`` leaves aioice's own choice.
    """
    if not addresses:
        return
    fixed = list(addresses)
    create = pc._RTCPeerConnection__createDtlsTransport  # type: ignore[attr-defined]

    def create_on_addresses() -> RTCDtlsTransport:
        dtls: RTCDtlsTransport = create()
        _gather_on(dtls.transport.iceGatherer._connection, fixed)
        return dtls

    pc._RTCPeerConnection__createDtlsTransport = create_on_addresses  # type: ignore[attr-defined]


def _gather_on(connection: aioice.ice.Connection, addresses: list[str]) -> None:
    async def gather_candidates() -> None:
        # aioice's own body, with our addresses in place of get_host_addresses()
        if connection._local_candidates_start:
            return
        connection._local_candidates_start = True
        usable = [
            a
            for a in addresses
            if (":" in a and connection._use_ipv6) or (":" not in a and connection._use_ipv4)
        ]
        results = await asyncio.gather(
            *(
                connection.get_component_candidates(component=component, addresses=usable)
                for component in connection._components
            )
        )
        for candidates in results:
            connection._local_candidates += candidates
        connection._local_candidates_end = True

    connection.gather_candidates = gather_candidates  # type: ignore[method-assign]


def patient_consent(pc: RTCPeerConnection) -> None:
    """Make every ICE connection ``pc`` creates check consent as RFC 7675 says: retransmitted
    checks, expiry after ``CONSENT_EXPIRY_S`` with no check answered (see the module's doc)."""
    create = pc._RTCPeerConnection__createDtlsTransport  # type: ignore[attr-defined]

    def create_with_patient_consent() -> RTCDtlsTransport:
        dtls: RTCDtlsTransport = create()
        consent_on(dtls.transport.iceGatherer._connection)
        return dtls

    pc._RTCPeerConnection__createDtlsTransport = create_with_patient_consent  # type: ignore[attr-defined]


def consent_on(
    connection: aioice.ice.Connection,
    interval_s: float | None = None,
    expiry_s: float | None = None,
) -> None:
    """Replace ``connection``'s consent checks (before ``connect()``): one every
    ``interval_s`` (aioice's, ~5 s, by default), each retransmitted; the connection closes when
    none was answered for ``expiry_s`` (``CONSENT_EXPIRY_S`` by default, read when checked)."""

    async def query_consent() -> None:
        assert connection.remote_password is not None
        key = connection.remote_password.encode("utf8")
        answered = time.monotonic()
        while True:
            interval = aioice.ice.CONSENT_INTERVAL if interval_s is None else interval_s
            await asyncio.sleep(interval * (0.8 + 0.4 * random.random()))
            for pair in list(connection._nominated.values()):
                request = connection.build_request(pair, nominate=False)
                try:
                    await pair.protocol.request(
                        request,
                        pair.remote_addr,
                        integrity_key=key,
                        retransmissions=CONSENT_RETRANSMISSIONS,
                    )
                    answered = time.monotonic()
                except aioice.stun.TransactionError:
                    pass
            silent = time.monotonic() - answered
            if silent >= (CONSENT_EXPIRY_S if expiry_s is None else expiry_s):
                logger.info("ICE consent expired: no check answered in %.1f s", silent)
                connection._query_consent_task = None  # close() must not cancel this task
                await connection.close()
                return

    connection.query_consent = query_consent  # type: ignore[method-assign]


def ice_connection(dtls: RTCDtlsTransport) -> aioice.ice.Connection:
    """The aioice connection under a DTLS transport."""
    return dtls.transport.iceGatherer._connection


@dataclass(frozen=True)
class Socket:
    """One local ICE socket (a host candidate): its address and aioice's protocol object."""

    host: str
    port: int
    protocol: Any


def local_sockets(connection: aioice.ice.Connection) -> list[Socket]:
    """The connection's host sockets on our component (one per gathered address)."""
    sockets = []
    for protocol in connection._protocols:
        candidate = getattr(protocol, "local_candidate", None)
        if candidate is None or candidate.component != COMPONENT or candidate.type != "host":
            continue
        if protocol.transport is None:
            continue
        sockets.append(Socket(candidate.host, candidate.port, protocol))
    return sockets


def remote_addresses(connection: aioice.ice.Connection) -> list[tuple[str, int]]:
    """The remote candidates' transport addresses on our component (UDP only)."""
    seen: list[tuple[str, int]] = []
    for candidate in connection._remote_candidates:
        if candidate.component != COMPONENT or candidate.transport.lower() != "udp":
            continue
        address = (candidate._network_host, candidate.port)
        if candidate._network_host and address not in seen:
            seen.append(address)
    return seen


def selected(connection: aioice.ice.Connection) -> tuple[str, int, str, int] | None:
    """The pair media is sent on: (local host, local port, remote host, remote port)."""
    pair = connection._nominated.get(COMPONENT)
    if pair is None:
        return None
    local = pair.local_candidate
    host, port = pair.remote_addr
    return (local.host, local.port, host, port)


def select(connection: aioice.ice.Connection, socket: Socket, remote: tuple[str, int]) -> bool:
    """Send from now on from ``socket`` to ``remote``; False if no such remote candidate."""
    for candidate in connection._remote_candidates:
        if (
            candidate.component == COMPONENT
            and candidate._network_host == remote[0]
            and candidate.port == remote[1]
        ):
            pair = aioice.ice.CandidatePair(socket.protocol, candidate)
            pair.nominated = True
            pair.state = aioice.ice.CandidatePair.State.SUCCEEDED
            connection._nominated[COMPONENT] = pair
            return True
    return False


def sending(connection: aioice.ice.Connection) -> bool:
    """Whether ICE has a selected pair (and is not closing)."""
    return bool(connection._nominated) and not connection._closing


async def probe(connection: aioice.ice.Connection, socket: Socket, remote: tuple[str, int]) -> bool:
    """One binding request from ``socket`` to ``remote``, no retransmission: True if answered
    before aioice's transaction timeout (0.5 s)."""
    if connection.remote_password is None or socket.protocol.transport is None:
        return False
    pair: Any = _ProbePair(socket, remote)
    request = connection.build_request(pair, nominate=False)
    try:
        await socket.protocol.request(
            request,
            remote,
            integrity_key=connection.remote_password.encode("utf8"),
            retransmissions=0,
        )
    except (aioice.stun.TransactionError, ConnectionError, OSError):
        return False
    return True


class _ProbePair:
    """What ``Connection.build_request`` reads of a pair: its component only."""

    component = COMPONENT

    def __init__(self, socket: Socket, remote: tuple[str, int]) -> None:
        self.protocol = socket.protocol
        self.remote_addr = remote


def count_datagrams(socket: Socket, on_datagram: Callable[[tuple[str, int]], None]) -> None:
    """Call ``on_datagram(source)`` for every datagram that reaches ``socket`` (before any
    filter)."""
    protocol = socket.protocol
    if getattr(protocol, "_teleconsult_counted", False):
        return
    protocol._teleconsult_counted = True
    deliver = protocol.datagram_received

    def datagram_received(data: bytes | str, addr: tuple[Any, ...]) -> None:
        on_datagram((addr[0], addr[1]))
        deliver(data, addr)

    protocol.datagram_received = datagram_received


def unread(connection: aioice.ice.Connection) -> bool:
    """Datagrams came in for ``connection`` that its DTLS has not handled yet: in a socket's
    receive queue, or read and waiting in aioice's queue or behind a handler that waits
    (media/_aiortc_seam.py, ``_DirectReceive``)."""
    if not connection._queue.empty() or getattr(connection, "_teleconsult_backlog", None):
        return True
    return any(_waiting(protocol) for protocol in connection._protocols)


def unread_on(socket: Socket) -> bool:
    """A datagram waits in ``socket``'s receive queue (the loop has not read it yet)."""
    return _waiting(socket.protocol)


def _waiting(protocol: Any) -> bool:
    transport = getattr(protocol, "transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    try:
        # UDP: the size of the next datagram (Linux), or of all of them: > 0 when any waits
        raw = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return False
    return bool(struct.unpack("i", raw)[0])


def copy_sends(
    connection: aioice.ice.Connection,
    copy_to: Callable[[bytes], tuple[Socket, tuple[str, int]] | None],
) -> None:
    """After each datagram aioice sends on the selected pair, also send it where
    ``copy_to(data)`` says (a socket and a remote address), or nowhere if it says None."""
    if getattr(connection, "_teleconsult_copies", False):
        return
    connection._teleconsult_copies = True  # type: ignore[attr-defined]
    sendto = connection.sendto

    async def sendto_with_copy(data: bytes, component: int) -> None:
        await sendto(data, component)
        target = copy_to(data)
        if target is not None:
            socket, remote = target
            transport = socket.protocol.transport
            if transport is not None:
                transport.sendto(data, remote)

    connection.sendto = sendto_with_copy  # type: ignore[method-assign]


def build_request_reads_only_component() -> bool:
    """Pinned by the tests: ``build_request`` reads nothing of the pair but its component."""
    source = inspect.getsource(aioice.ice.Connection.build_request)
    uses = {part.split(")")[0].split(",")[0].split(" ")[0] for part in source.split("pair.")[1:]}
    return uses == {"component"}
