"""The aiohttp application factory: it composes every package and owns the process.

Shutdown order: peers (media), then sockets (signaling), then the database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import socketio
from aiohttp import web

from consult.admin_commands import needs_first_admin
from consult.db import Database
from media.pool import LocalMediaPool, MediaPool
from media.remote import ProcessMediaPool
from recording import CompositeJobs, Recorder, RecordingStore, recording_tap
from signaling import SignalingServer

from .api import setup_api
from .config import Config
from .keys import CONFIG, DATABASE, MEDIA, RECORDER, SIGNALING
from .routes import setup_routes

logger = logging.getLogger(__name__)


def create_app(config: Config) -> web.Application:
    app = web.Application(client_max_size=2 * 1024 * 1024)
    app[CONFIG] = config
    app[DATABASE] = Database(config.database, field_key=config.field_secret())
    app[MEDIA] = _media_pool(config)
    app[RECORDER] = _recorder(config)
    manager = socketio.AsyncRedisManager(config.redis_url) if config.redis_url else None
    app[SIGNALING] = SignalingServer(
        db=app[DATABASE],
        pool=app[MEDIA],
        token_secret=config.secret(),
        client_ice_servers=config.client_ice_servers(),
        client_manager=manager,
        recorder=app[RECORDER],
    )
    app[SIGNALING].attach(app)
    setup_routes(app)
    setup_api(app)
    app.cleanup_ctx.append(_database_ctx)
    app.cleanup_ctx.append(_media_ctx)
    app.cleanup_ctx.append(_recording_ctx)
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
    addresses, servers = list(config.ice_addresses), list(config.ice_servers)
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


def _recorder(config: Config) -> Recorder | None:
    if not config.recording:
        return None
    store = RecordingStore(
        config.recordings,
        segment_s=config.recording_segment_s,
        retention_days=config.recording_retention_days,
    )
    composites = CompositeJobs(fps=config.composite_fps) if config.recording_composite else None
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


async def _media_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[MEDIA].start()
    yield
    await app[MEDIA].close()  # already closed at shutdown; this covers a failed startup


async def _close_peers_then_sockets(app: web.Application) -> None:
    await app[SIGNALING].close_rooms()
    await app[MEDIA].close()
    await app[SIGNALING].seal_recordings()
    await app[SIGNALING].close_sockets()
