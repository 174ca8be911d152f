"""The DICOM SCP: modalities and PACS send studies here (C-STORE) and ask what is held (C-FIND,
Study Root; R20, R24). Off unless configured.

pynetdicom runs each association in a thread of its own. A received dataset is written to the
store's ``incoming/`` as a Part 10 file (the bytes as they came, with a file meta header built
from the association), parsed, checked and fsync'd in this thread, then stored: on an SQLite
file the transaction runs in this thread too, in one group with the other associations'
arrivals (:meth:`ImagingStore.store_prepared_here`), elsewhere on the event loop
(``run_coroutine_threadsafe(...).result()``). Either way the SCP thread waits for the commit,
so a sender cannot outrun the disk and the database (back-pressure), and the C-STORE status
tells it what happened. A C-FIND is
answered the same way: the thread waits for the event loop's answer
(:func:`consult.imaging.find.find`), then yields one pending response per match, stopping when
the requester cancels.

Only the calling AE titles in ``dicom_peers`` may associate; each is bound to one institution,
and its studies belong to that institution.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from consult.imaging.errors import DicomRejected, DicomTooLarge, ImagingUnavailable
from consult.imaging.file_meta import encode_file_meta
from consult.imaging.store import (
    Destination,
    ImagingStore,
    arriving_too_slowly,
    create_synced,
)
from consult.imaging.uids import ACCEPTED_SYNTAXES

from . import dicom_reactor
from .keys import CONFIG, IMAGING

logger = logging.getLogger(__name__)

STATUS_SUCCESS: Final = 0x0000
STATUS_OUT_OF_RESOURCES: Final = 0xA700
STATUS_CANNOT_UNDERSTAND: Final = 0xC000
STATUS_PROCESSING_FAILURE: Final = 0x0110
STATUS_PENDING: Final = 0xFF00
STATUS_CANCEL: Final = 0xFE00
STATUS_FIND_UNABLE: Final = 0xC000
"""C-FIND "unable to process" (PS3.4 C.4.1.1.4; the identifier cannot be answered)."""
STATUS_FIND_NO_MATCH_CLASS: Final = 0xA900
"""C-FIND "identifier does not match SOP class"."""
STORE_TIMEOUT_S: Final = 120.0
FIND_TIMEOUT_S: Final = 60.0
PARSER_THREADS: Final = 8
"""Threads parsing received datasets while their associations write them to disk."""


class DicomScp:
    """One pynetdicom AE serving C-STORE, C-FIND (Study Root) and C-ECHO over an
    :class:`ImagingStore`."""

    def __init__(
        self,
        store: ImagingStore,
        *,
        host: str,
        port: int,
        ae_title: str,
        peers: Mapping[str, str],
        max_associations: int = 10,
        max_per_address: int = 4,
        idle_s: float = 300.0,
    ) -> None:
        self.store = store
        self.max_associations = max_associations
        self.host = host
        self.port = port
        self.ae_title = ae_title
        self.peers = dict(peers)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._parsers: ThreadPoolExecutor | None = None
        self.receiving = ReceiveBudget(
            lambda: MESSAGES_IN_MEMORY * (store.max_instance_bytes + MESSAGE_SLACK)
        )
        """What all associations hold of the messages they are receiving."""
        self.next_files = NextFiles(store.new_incoming)
        self.slots = Slots(max_per_address, idle_s)
        self._sweeping: asyncio.Task[None] | None = None
        self.stored = 0
        self.refused = 0
        self.found = 0
        """C-FIND answers sent."""

    @property
    def closed(self) -> bool:
        return self._server is None

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the real port when configured with 0 in tests)."""
        if self._server is None:
            raise RuntimeError("the SCP is not running")
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    async def start(self) -> None:
        # pynetdicom and pydicom are imported only when the SCP is configured.
        from pynetdicom import AE, _config, evt
        from pynetdicom.presentation import StoragePresentationContexts
        from pynetdicom.sop_class import (  # type: ignore[attr-defined]
            StudyRootQueryRetrieveInformationModelFind,
            Verification,
        )

        # pynetdicom's standard event handlers (bound to each association made after this)
        # format a log line for every PDU and DIMSE message, at any log level: ~0.3-0.7 ms of
        # CPU a C-STORE here. Refusals and failures are ours to log; every stored instance is
        # an audit event.
        _config.LOG_HANDLER_LEVEL = "none"
        dicom_reactor.install()  # each association's threads wake for their work
        self._loop = asyncio.get_running_loop()
        self._parsers = ThreadPoolExecutor(PARSER_THREADS, thread_name_prefix="dicom-parse")
        ae = AE(ae_title=self.ae_title)
        syntaxes = sorted(ACCEPTED_SYNTAXES)
        for context in StoragePresentationContexts:
            if context.abstract_syntax is not None:
                ae.add_supported_context(context.abstract_syntax, syntaxes)
        ae.add_supported_context(Verification)
        ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        ae.require_calling_aet = sorted(self.peers)
        ae.maximum_pdu_size = 0  # no limit: fewer, larger PDUs
        ae.maximum_associations = self.max_associations
        handlers: list[Any] = [
            (evt.EVT_CONN_OPEN, self._on_connection),
            (evt.EVT_CONN_CLOSE, self._on_connection_closed),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_C_FIND, self._on_find),
        ]
        self._server = await self._loop.run_in_executor(
            None,
            lambda: ae.start_server((self.host, self.port), block=False, evt_handlers=handlers),
        )
        self._sweeping = asyncio.create_task(self._sweep_idle())
        logger.info("DICOM SCP %s listening on %s:%s", self.ae_title, *self.address)

    async def _sweep_idle(self) -> None:
        """End the associations that do no work (:meth:`Slots.idle`), looking a few times per
        idle limit."""
        loop = asyncio.get_running_loop()
        period = min(30.0, self.slots.idle_s / 4)
        while True:
            await asyncio.sleep(period)
            try:
                idle = self.slots.idle(time.monotonic())
            except Exception:  # never let the sweep die: the next turn looks again
                logger.exception("looking for idle DICOM associations failed")
                continue
            for assoc in idle:
                self.slots.release(assoc)  # counted once, whatever the abort takes
                self.slots.ended_idle += 1
                logger.info(
                    "DICOM association from %s ended: dicom_idle (no C-STORE nor C-FIND "
                    "for %.0f s)",
                    str(getattr(assoc.requestor, "ae_title", "") or "?").strip(),
                    self.slots.idle_s,
                )
                with contextlib.suppress(Exception):  # ended meanwhile: nothing to abort
                    await loop.run_in_executor(None, assoc.abort)

    async def close(self) -> None:
        sweeping, self._sweeping = self._sweeping, None
        if sweeping is not None:
            sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeping
        server, self._server = self._server, None
        if server is not None:
            await asyncio.get_running_loop().run_in_executor(None, server.shutdown)
        parsers, self._parsers = self._parsers, None
        if parsers is not None:
            parsers.shutdown(wait=False)  # each association waits for its own parse
        self.next_files.discard_all()

    def _on_connection(self, event: Any) -> None:
        """A new association, before its threads start: its socket reads are bounded, and its
        threads wake for their work (:mod:`web.dicom_reactor`)."""
        sock = getattr(getattr(event.assoc, "dul", None), "socket", None)
        if sock is not None and callable(getattr(sock, "recv", None)):
            recv = BoundedRecv(
                sock, lambda: self.store.max_instance_bytes, event.assoc, self.receiving
            )
            sock.recv = recv
            dicom_reactor.attach(event.assoc)

    def _on_connection_closed(self, event: Any) -> None:
        """An association ended (released, aborted, rejected, its connection lost): what it
        held of a message it was receiving goes back to the budget, and its slot is free."""
        _message_taken(event)
        self.slots.release(event.assoc)
        self.next_files.discard(event.assoc)

    def _on_requested(self, event: Any) -> None:
        """An A-ASSOCIATE-RQ arrived: rejected (transient, local limit exceeded: the sender
        may try again) when its address holds its share of the slots (:class:`Slots`), before
        pynetdicom negotiates it."""
        _message_taken(event)  # the request is read: it is no message on its way
        address = str(event.assoc.requestor.address)
        if self.slots.admit(event.assoc, address):
            return
        logger.warning(
            "DICOM association from %s refused: dicom_too_many_associations (%d from its "
            "address already)",
            str(event.assoc.requestor.primitive.calling_ae_title).strip(),
            self.slots.per_address,
        )
        event.assoc.acse.send_reject(0x02, 0x03, 0x02)  # transient, provider, local limit
        event.assoc.kill()

    def _on_echo(self, event: Any) -> int:
        """C-ECHO: answered; its message is taken (it is not work: :class:`Slots`)."""
        _message_taken(event)
        return STATUS_SUCCESS

    def _on_store(self, event: Any) -> int:
        """In a pynetdicom thread: write the dataset, store it on the loop, wait (back-pressure);
        the association's next file is made ready meanwhile (:class:`NextFiles`)."""
        _message_taken(event)
        loop, parsers = self._loop, self._parsers
        if loop is None or parsers is None or self._server is None:
            return STATUS_OUT_OF_RESOURCES
        try:
            with self.slots.working(event.assoc):
                return self._store(event, loop, parsers)
        finally:  # if the handler ended before it asked for it
            self.next_files.prepare(event.assoc, parsers)

    def _store(self, event: Any, loop: asyncio.AbstractEventLoop, parsers: Executor) -> int:
        calling = str(event.assoc.requestor.ae_title).strip()
        institution_id = self.peers.get(calling)
        if institution_id is None:  # require_calling_aet already refused it; be sure
            return STATUS_CANNOT_UNDERSTAND
        incoming, fd = self.next_files.take(event.assoc)
        dest = Destination(institution_id=institution_id, source="cstore", calling_ae=calling)
        try:
            # Written and synced by this association's own thread, which waits anyway, while
            # a parser thread parses and checks the same bytes.
            try:
                header = b"\x00" * 128 + b"DICM" + _file_meta(event)
                # a view of pynetdicom's buffer, no copy; not released by hand: a refusal's
                # traceback may still hold the parser's views of it
                body = event.request.DataSet.getbuffer()
                created, fd = fd, None  # closed by prepare_received, whatever happens
                parsed, size = self.store.prepare_received(
                    incoming, header, body, parsers, fd=created
                )
            except DicomRejected as exc:
                self.next_files.prepare(event.assoc, parsers)
                asyncio.run_coroutine_threadsafe(
                    self.store.audit_refusal(exc, dest, None), loop
                ).result(timeout=STORE_TIMEOUT_S)
                raise
            # the next file is made while the transaction runs: the sender waits meanwhile,
            # so a core is free for the create's kernel time (after the response, it delayed
            # the response and the sender's next request)
            self.next_files.prepare(event.assoc, parsers)
            # the transaction: in this thread on SQLite, else on the loop (back-pressure both)
            self.store.store_prepared_here(
                loop, incoming, parsed, size, dest, None, STORE_TIMEOUT_S
            )
        except DicomRejected as exc:
            incoming.unlink(missing_ok=True)
            self.refused += 1
            logger.info("C-STORE from %s refused: %s", calling, exc.code)
            return STATUS_CANNOT_UNDERSTAND
        except (FutureTimeout, ImagingUnavailable):  # the sender may try again
            incoming.unlink(missing_ok=True)
            return STATUS_OUT_OF_RESOURCES
        except Exception:
            incoming.unlink(missing_ok=True)
            logger.exception("C-STORE from %s failed", calling)
            return STATUS_PROCESSING_FAILURE
        finally:
            if fd is not None:  # failed before the file was handed over
                os.close(fd)
        self.stored += 1
        return STATUS_SUCCESS

    def _on_find(self, event: Any) -> Iterator[tuple[int, Any]]:
        """In a pynetdicom thread: ask the loop for the answers, then send them one by one."""
        _message_taken(event)
        with self.slots.working(event.assoc):
            yield from self._find(event)

    def _find(self, event: Any) -> Iterator[tuple[int, Any]]:
        from consult.imaging.find import find

        loop = self._loop
        calling = str(event.assoc.requestor.ae_title).strip()
        institution_id = self.peers.get(calling)
        if loop is None or self._server is None or institution_id is None:
            yield STATUS_OUT_OF_RESOURCES if institution_id else STATUS_FIND_UNABLE, None
            return
        try:
            identifier = event.identifier
            future = asyncio.run_coroutine_threadsafe(
                find(self.store, institution_id, calling, identifier), loop
            )
            answers = future.result(timeout=FIND_TIMEOUT_S)
        except DicomRejected as exc:
            logger.info("C-FIND from %s refused: %s", calling, exc.code)
            yield STATUS_FIND_UNABLE, None
            return
        except FutureTimeout:
            yield STATUS_OUT_OF_RESOURCES, None
            return
        except Exception:
            logger.exception("C-FIND from %s failed", calling)
            yield STATUS_FIND_UNABLE, None
            return
        for answer in answers:
            if event.is_cancelled:
                yield STATUS_CANCEL, None
                return
            self.found += 1
            yield STATUS_PENDING, answer


class NextFiles:
    """The file each association will write its next instance to, created while the
    association waits for that instance.

    One association's C-STORE is serial: the sender waits for each response before it sends
    the next instance, so every step of the handler is in the rate. Creating a file is one of
    them, and what it costs is the file system's: ~0.05 ms on most, but 0.2-1.2 ms of kernel
    time measured here, where ext4 runs without a journal and scans the recently deleted
    inodes of a block group (``recently_deleted``) for every new one. So each handler, once
    its instance is written, has a worker thread create the association's next file
    (``O_SYNC``, as :func:`consult.imaging.store.create_synced`) while the transaction runs:
    the sender waits for the response then, and a core is free for the create's kernel time
    (made after the response instead, it delayed the response by 0.1-0.5 ms and the sender's
    next request by 0.2, `bench/dicom_ingest.py --trace`). The next handler takes it (or
    creates one itself if it is not there).
    A file left over (the association ended, or the SCP stopped) is closed and removed; one
    left by a killed process is removed at the next start, as any ``.part``."""

    def __init__(self, new_path: Callable[[], Path]) -> None:
        self._new_path = new_path
        self._lock = threading.Lock()
        self._ready: dict[int, Future[tuple[Path, int]]] = {}
        """An association's next file (by the association's ``id``), being created or open."""
        self._ended: weakref.WeakSet[Any] = weakref.WeakSet()
        self.taken = 0
        """Files taken ready-made (for tests)."""

    def take(self, assoc: Any) -> tuple[Path, int | None]:
        """The association's next file, and its open descriptor (the caller closes it); or a
        fresh path and None, for the caller to create."""
        with self._lock:
            future = self._ready.pop(id(assoc), None)
        if future is not None:
            try:
                ready = future.result()  # usually done long ago
            except Exception:  # created by the caller below, whose failure is reported
                pass
            else:
                with self._lock:
                    self.taken += 1
                return ready
        return self._new_path(), None

    def prepare(self, assoc: Any, workers: Executor) -> None:
        """Create the association's next file in ``workers`` (unless it has one, or ended)."""
        with self._lock:
            if assoc in self._ended or id(assoc) in self._ready:
                return
            try:
                self._ready[id(assoc)] = workers.submit(_create_next, self._new_path())
            except RuntimeError:  # the workers are shutting down: the SCP is closing
                pass

    def discard(self, assoc: Any) -> None:
        """The association ended: its next file goes (once created), and none is made again."""
        with self._lock:
            self._ended.add(assoc)
            future = self._ready.pop(id(assoc), None)
        if future is not None:
            future.add_done_callback(_remove_next)

    def discard_all(self) -> None:
        """The SCP is stopping: every association's next file goes."""
        with self._lock:
            futures = list(self._ready.values())
            self._ready.clear()
        for future in futures:
            future.add_done_callback(_remove_next)

    @property
    def waiting(self) -> int:
        """Next files held (for tests)."""
        with self._lock:
            return len(self._ready)


def _create_next(path: Path) -> tuple[Path, int]:
    return path, create_synced(path)


def _remove_next(future: Future[tuple[Path, int]]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    path, fd = future.result()
    os.close(fd)
    path.unlink(missing_ok=True)


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


def _message_taken(event: Any) -> None:
    """A handler has the association's message (or the association ended): what arrives next
    counts for the next one."""
    recv = _bounded_recv(event.assoc)
    if recv is not None:
        recv.release()


def _file_meta(event: Any) -> bytes:
    """The file meta header of a received dataset (:mod:`consult.imaging.file_meta`; pydicom's
    writer for anything it does not encode)."""
    from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

    request = event.request
    try:
        return encode_file_meta(
            str(request.AffectedSOPClassUID),
            str(request.AffectedSOPInstanceUID),
            str(event.context.transfer_syntax),
            str(PYNETDICOM_IMPLEMENTATION_UID),
            str(PYNETDICOM_IMPLEMENTATION_VERSION),
        )
    except (ValueError, TypeError):
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_file_meta_info

        meta = DicomBytesIO()
        write_file_meta_info(meta, event.file_meta, enforce_standard=True)
        return meta.getvalue()


SCP: Final = web.AppKey("dicom_scp", DicomScp)


async def imaging_ctx(app: web.Application) -> AsyncIterator[None]:
    """Prepare the store; run the C-STORE SCP when ``dicom_port`` is set (off by default)."""
    store = app[IMAGING]
    await store.start()
    config = app[CONFIG]
    scp: DicomScp | None = None
    if config.dicom_port:
        scp = DicomScp(
            store,
            host=config.dicom_host,
            port=config.dicom_port,
            ae_title=config.dicom_ae_title,
            peers=config.dicom_peers,
            max_associations=config.dicom_max_associations,
            max_per_address=config.dicom_max_associations_per_address,
            idle_s=config.dicom_idle_s,
        )
        await scp.start()
        app[SCP] = scp
    try:
        yield
    finally:
        if scp is not None:
            await scp.close()
        await store.close()  # the queued retrieval events, before the database closes
