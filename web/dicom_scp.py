"""The C-STORE SCP: modalities and PACS send studies here (R20). Off unless configured.

pynetdicom runs each association in a thread of its own. A received dataset is written to the
store's ``incoming/`` as a Part 10 file (the bytes as they came, with a file meta header built
from the association), then handed to the event loop with ``run_coroutine_threadsafe(...)
.result()``: the SCP thread waits for the store to finish, so a sender cannot outrun the disk
and the database (back-pressure), and the C-STORE status tells it what happened.

Only the calling AE titles in ``dicom_peers`` may associate; each is bound to one institution,
and its studies belong to that institution.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Final

from aiohttp import web

from consult.imaging.errors import DicomRejected, DicomTooLarge
from consult.imaging.store import Destination, ImagingStore
from consult.imaging.uids import ACCEPTED_SYNTAXES

from .keys import CONFIG, IMAGING

logger = logging.getLogger(__name__)

STATUS_SUCCESS: Final = 0x0000
STATUS_OUT_OF_RESOURCES: Final = 0xA700
STATUS_CANNOT_UNDERSTAND: Final = 0xC000
STATUS_PROCESSING_FAILURE: Final = 0x0110
STORE_TIMEOUT_S: Final = 120.0


class DicomScp:
    """One pynetdicom AE serving C-STORE and C-ECHO, storing into an :class:`ImagingStore`."""

    def __init__(
        self,
        store: ImagingStore,
        *,
        host: str,
        port: int,
        ae_title: str,
        peers: Mapping[str, str],
    ) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.ae_title = ae_title
        self.peers = dict(peers)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self.stored = 0
        self.refused = 0

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
        from pynetdicom import AE, evt
        from pynetdicom.presentation import StoragePresentationContexts
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        self._loop = asyncio.get_running_loop()
        ae = AE(ae_title=self.ae_title)
        syntaxes = sorted(ACCEPTED_SYNTAXES)
        for context in StoragePresentationContexts:
            if context.abstract_syntax is not None:
                ae.add_supported_context(context.abstract_syntax, syntaxes)
        ae.add_supported_context(Verification)
        ae.require_calling_aet = sorted(self.peers)
        ae.maximum_pdu_size = 0  # no limit: fewer, larger PDUs
        handlers: list[Any] = [(evt.EVT_C_STORE, self._on_store)]
        self._server = await self._loop.run_in_executor(
            None,
            lambda: ae.start_server((self.host, self.port), block=False, evt_handlers=handlers),
        )
        logger.info("C-STORE SCP %s listening on %s:%s", self.ae_title, *self.address)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await asyncio.get_running_loop().run_in_executor(None, server.shutdown)

    def _on_store(self, event: Any) -> int:
        """In a pynetdicom thread: write the dataset, store it on the loop, wait (back-pressure)."""
        loop = self._loop
        if loop is None or self._server is None:
            return STATUS_OUT_OF_RESOURCES
        calling = str(event.assoc.requestor.ae_title).strip()
        institution_id = self.peers.get(calling)
        if institution_id is None:  # require_calling_aet already refused it; be sure
            return STATUS_CANNOT_UNDERSTAND
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_file_meta_info

        incoming = self.store.new_incoming()
        try:
            raw = event.request.DataSet
            size = raw.seek(0, 2)
            raw.seek(0)
            if size > self.store.max_instance_bytes:
                raise DicomTooLarge()
            with incoming.open("wb") as f:
                f.write(b"\x00" * 128 + b"DICM")
                meta = DicomBytesIO()
                write_file_meta_info(meta, event.file_meta, enforce_standard=True)
                f.write(meta.getvalue())
                while chunk := raw.read(1 << 20):
                    f.write(chunk)
            dest = Destination(institution_id=institution_id, source="cstore", calling_ae=calling)
            future = asyncio.run_coroutine_threadsafe(self.store.ingest(incoming, dest, None), loop)
            future.result(timeout=STORE_TIMEOUT_S)
        except DicomRejected as exc:
            incoming.unlink(missing_ok=True)
            self.refused += 1
            logger.info("C-STORE from %s refused: %s", calling, exc.code)
            return STATUS_CANNOT_UNDERSTAND
        except FutureTimeout:
            incoming.unlink(missing_ok=True)
            return STATUS_OUT_OF_RESOURCES
        except Exception:
            incoming.unlink(missing_ok=True)
            logger.exception("C-STORE from %s failed", calling)
            return STATUS_PROCESSING_FAILURE
        self.stored += 1
        return STATUS_SUCCESS


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
        )
        await scp.start()
        app[SCP] = scp
    try:
        yield
    finally:
        if scp is not None:
            await scp.close()
        await store.close()  # the queued retrieval events, before the database closes
