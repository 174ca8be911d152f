"""The aiohttp application factory: it composes every package and owns the process.

Shutdown order: peers (media), then sockets (signaling), then a last checkpoint of the audit
and recording heads, then the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

import socketio
from aiohttp import web

from consult.admin_commands import needs_first_admin
from consult.checkpoints import CheckpointRefused, write_checkpoint
from consult.consultations import flow as consultation_flow
from consult.crypto import FieldCipher
from consult.db import Database
from consult.imaging.store import ImagingStore
from consult.imaging.workers import WorkerPool
from consult.ratelimit import flush_summaries
from consult.trust import SM2Key, TrustError
from media.pool import LocalMediaPool, MediaPool
from media.remote import ProcessMediaPool
from recording import CompositeJobs, Recorder, RecordingStore, recording_tap
from signaling import SignalingServer

from . import composite_labels
from .api import setup_api
from .config import Config
from .dicom_scp import imaging_ctx
from .keys import CONFIG, DATABASE, IMAGING, MEDIA, RECORDER, REMINDERS, SIGNALING
from .recording_keys import key_wrapper
from .reminders import ReminderTask
from .routes import setup_routes
from .transport import setup_transport

logger = logging.getLogger(__name__)


def create_app(config: Config) -> web.Application:
    app = web.Application(client_max_size=2 * 1024 * 1024)
    app[CONFIG] = config
    app[DATABASE] = Database(config.database, field_key=config.field_secret())
    app[MEDIA] = _media_pool(config)
    app[RECORDER] = _recorder(config, app[DATABASE])
    app[IMAGING] = ImagingStore(
        app[DATABASE],
        config.imaging,
        max_instance_bytes=config.imaging_max_instance_mb * 1024 * 1024,
        executor=ThreadPoolExecutor(max_workers=4, thread_name_prefix="imaging"),
        # processes for renderings (started on first use) when configured; else threads
        workers=WorkerPool(config.imaging_render_workers)
        if config.imaging_render_workers
        else None,
    )
    manager = socketio.AsyncRedisManager(config.redis_url) if config.redis_url else None
    app[SIGNALING] = SignalingServer(
        db=app[DATABASE],
        pool=app[MEDIA],
        token_secret=config.secret(),
        client_ice_servers=config.client_ice_servers(),
        client_manager=manager,
        recorder=app[RECORDER],
        providers=config.provider_health(),
        imaging=app[IMAGING],  # review together saves measurements into the study
    )
    app[SIGNALING].attach(app)
    app[REMINDERS] = ReminderTask(
        app[DATABASE],
        interval_s=config.reminder_interval_s,
        webhook_url=config.reminder_webhook_url,
        webhook_secret=config.reminder_webhook_key() if config.reminder_webhook_url else "",
        attempts=config.reminder_webhook_attempts,
        timeout_s=config.reminder_webhook_timeout_s,
    )
    setup_transport(app, config)  # first: body limits before the API boundary reads one
    setup_routes(app)
    setup_api(app)
    app.cleanup_ctx.append(_database_ctx)
    app.cleanup_ctx.append(_media_ctx)
    app.cleanup_ctx.append(_recording_ctx)
    app.cleanup_ctx.append(_checkpoint_ctx(config.signing_key()))  # made at first start
    app.cleanup_ctx.append(_invitation_expiry_ctx)  # R11: unanswered invitations expire
    app.cleanup_ctx.append(_refusal_summaries_ctx)  # R33: floods' counts reach the audit chain
    app.cleanup_ctx.append(_reminders_ctx)  # R11: reminders made, pushed and sent once each
    app.cleanup_ctx.append(imaging_ctx)  # after the database: the SCP stops before it closes
    # on_shutdown runs before aiohttp waits for open connections (the sockets), and before the
    # cleanup contexts (the database).
    app.on_shutdown.append(_close_peers_then_sockets)
    return app


async def _database_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[DATABASE].start()
    if await needs_first_admin(app[DATABASE]):
        logger.warning(
            "no admin account yet: create the first with "
            "'teleconsult user add --role admin --username NAME --password-stdin'"
        )
    yield
    await app[DATABASE].close()


def _media_pool(config: Config) -> MediaPool:
    addresses, servers = config.media_addresses(), list(config.ice_servers)
    busy_lag_s = config.media_busy_lag_ms / 1000
    if config.media_workers:
        return ProcessMediaPool(
            int(config.media_workers),
            ice_addresses=addresses,
            ice_servers=servers,
            worker_module="web.media_worker",  # media workers with the recording tap
            busy_lag_s=busy_lag_s,
        )
    return LocalMediaPool(
        ice_addresses=addresses,
        ice_servers=servers,
        tap_factory=recording_tap,
        busy_lag_s=busy_lag_s,
    )


def _recorder(config: Config, db: Database) -> Recorder | None:
    if not config.recording:
        return None
    cipher = FieldCipher(config.field_secret())
    store = RecordingStore(
        config.recordings,
        segment_s=config.recording_segment_s,
        retention_days=config.recording_retention_days,
        # chat texts on the timeline are SM4-encrypted under the field key, segments and the
        # composite under a per-session key that the field key wraps (R36)
        seal_text=cipher.encrypt,
        key_wrapper=key_wrapper(cipher),
    )
    composites = (
        CompositeJobs(
            fps=config.composite_fps,
            key_of=store.session_key,
            labels_of=composite_labels.labels_of(db),  # each tile's role and name
        )
        if config.recording_composite
        else None
    )
    return Recorder(store, composites)


async def _recording_ctx(app: web.Application) -> AsyncIterator[None]:
    """Seal what a killed process left open, then build composites in the background."""
    recorder = app[RECORDER]
    if recorder is None:
        yield
        return
    recovered = await asyncio.get_running_loop().run_in_executor(None, recorder.store.recover)
    for manifest in recovered:
        await app[SIGNALING].recording_sealed(str(manifest["room"]), manifest)
    if recorder.composites is not None:
        recorder.composites.start()
        for info in recorder.store.sessions():
            if info.sealed:
                recorder.composites.submit(info.directory)
    yield
    if recorder.composites is not None:
        await recorder.composites.close()


def _checkpoint_ctx(key: SM2Key) -> Callable[[web.Application], AsyncIterator[None]]:
    """Checkpoints of the audit and recording heads (``consult.checkpoints``): one at start, one
    every ``checkpoint_interval_s`` when the chain moved, and a last one at shutdown (after the
    recordings were sealed). The task is cancelled and awaited on shutdown."""

    async def checkpoint(app: web.Application) -> None:
        config = app[CONFIG]
        try:
            await write_checkpoint(
                app[DATABASE], config.checkpoints, key, config.timestamp_authority()
            )
        except CheckpointRefused as exc:
            logger.error("audit checkpoint refused: %s", exc)
        except (OSError, TrustError) as exc:
            logger.error("audit checkpoint failed: %s", type(exc).__name__)

    async def every(app: web.Application, interval: float) -> None:
        while True:  # the first one checks every event since the last: not before serving
            await checkpoint(app)
            await asyncio.sleep(interval)

    async def context(app: web.Application) -> AsyncIterator[None]:
        interval = app[CONFIG].checkpoint_interval_s
        task = None
        if interval > 0:
            task = asyncio.create_task(every(app, interval), name="audit-checkpoints")
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await checkpoint(app)

    return context


INVITATION_EXPIRY_EVERY_S = 60.0


async def _invitation_expiry_ctx(app: web.Application) -> AsyncIterator[None]:
    """Once a minute, consultation invitations past their deadline expire (R11), each one
    audited and pushed to the inviter and the invited expert."""

    async def every() -> None:
        while True:
            try:
                expired = await consultation_flow.expire_overdue(app[DATABASE])
                if expired:
                    logger.info("invitations expired: %d", expired)
            except Exception as exc:  # the next round tries again
                logger.error("invitation expiry failed: %s", type(exc).__name__)
            await asyncio.sleep(INVITATION_EXPIRY_EVERY_S)

    task = asyncio.create_task(every(), name="invitation-expiry")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


REFUSAL_SUMMARIES_EVERY_S = 15.0


async def _refusal_summaries_ctx(app: web.Application) -> AsyncIterator[None]:
    """Refusals counted after a flood's last audit summary (sign-in, API, socket events, denied
    actions) are written once their minute has passed, and all of them at shutdown, before the
    database closes (``consult.ratelimit.flush_summaries``)."""

    async def every() -> None:
        while True:
            await asyncio.sleep(REFUSAL_SUMMARIES_EVERY_S)
            await flush_summaries()

    task = asyncio.create_task(every(), name="refusal-summaries")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await flush_summaries(everything=True)


async def _reminders_ctx(app: web.Application) -> AsyncIterator[None]:
    """Every ``reminder_interval_s``, the reminders that are due are made and sent
    (``web.reminders``); stopped before the database closes."""
    app[REMINDERS].start()
    yield
    await app[REMINDERS].close()


async def _media_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[MEDIA].start()
    yield
    await app[MEDIA].close()  # already closed at shutdown; this covers a failed startup


async def _close_peers_then_sockets(app: web.Application) -> None:
    await app[SIGNALING].close_rooms()
    await app[MEDIA].close()
    await app[SIGNALING].seal_recordings()
    await app[SIGNALING].close_sockets()
