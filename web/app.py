"""The aiohttp application factory: it composes every package and owns the process.

Shutdown order: peers (media), then sockets (signaling), then the database.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import socketio
from aiohttp import web

from consult.admin_commands import needs_first_admin
from consult.db import Database
from media.pool import LocalMediaPool, MediaPool
from media.remote import ProcessMediaPool
from signaling import SignalingServer
from turn import client_ice_servers

from .api import setup_api
from .config import Config
from .keys import CONFIG, DATABASE, MEDIA, SIGNALING
from .routes import setup_routes

logger = logging.getLogger(__name__)


def create_app(config: Config) -> web.Application:
    app = web.Application(client_max_size=2 * 1024 * 1024)
    app[CONFIG] = config
    app[DATABASE] = Database(config.database, field_key=config.field_secret())
    app[MEDIA] = _media_pool(config)
    manager = socketio.AsyncRedisManager(config.redis_url) if config.redis_url else None
    app[SIGNALING] = SignalingServer(
        db=app[DATABASE],
        pool=app[MEDIA],
        token_secret=config.secret(),
        client_ice_servers=client_ice_servers(list(config.ice_servers)),
        client_manager=manager,
    )
    app[SIGNALING].attach(app)
    setup_routes(app)
    setup_api(app)
    app.cleanup_ctx.append(_database_ctx)
    app.cleanup_ctx.append(_media_ctx)
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
    if config.media_workers:
        return ProcessMediaPool(
            int(config.media_workers), ice_addresses=addresses, ice_servers=servers
        )
    return LocalMediaPool(ice_addresses=addresses, ice_servers=servers)


async def _media_ctx(app: web.Application) -> AsyncIterator[None]:
    await app[MEDIA].start()
    yield
    await app[MEDIA].close()  # already closed at shutdown; this covers a failed startup


async def _close_peers_then_sockets(app: web.Application) -> None:
    await app[SIGNALING].close_rooms()
    await app[MEDIA].close()
    await app[SIGNALING].close_sockets()
