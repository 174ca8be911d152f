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
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from consult.imaging.errors import DicomRejected, ImagingUnavailable
from consult.imaging.file_meta import encode_file_meta
from consult.imaging.store import Destination, ImagingStore, create_synced
from consult.imaging.uids import ACCEPTED_SYNTAXES

from . import dicom_reactor
from .dicom_limits import (
    MESSAGE_SLACK,
    MESSAGES_IN_MEMORY,
    BoundedRecv,
    ReceiveBudget,
    Slots,
    message_taken,
)
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
        message_taken(event)
        self.slots.release(event.assoc)
        self.next_files.discard(event.assoc)

    def _on_requested(self, event: Any) -> None:
        """An A-ASSOCIATE-RQ arrived: rejected (transient, local limit exceeded: the sender
        may try again) when its address holds its share of the slots (:class:`Slots`), before
        pynetdicom negotiates it."""
        message_taken(event)  # the request is read: it is no message on its way
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
        message_taken(event)
        return STATUS_SUCCESS

    def _on_store(self, event: Any) -> int:
        """In a pynetdicom thread: write the dataset, store it on the loop, wait (back-pressure);
        the association's next file is made ready meanwhile (:class:`NextFiles`)."""
        message_taken(event)
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
        message_taken(event)
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
