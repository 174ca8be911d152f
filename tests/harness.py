"""Test harness: the application on a free port, demo visits with join tokens, strict skips."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from databases import seed_data_dir

from consult.tokens import issue_join_token
from consult.visits import create_demo_visit
from web.app import create_app
from web.config import Config
from web.keys import DATABASE, MEDIA, SIGNALING
from web.transport import runner_options


def strict() -> bool:
    """Under ``TELECONSULT_STRICT=1`` (CI) a test that lacks a tool fails instead of skipping."""
    return os.environ.get("TELECONSULT_STRICT") == "1"


def skip_or_fail(reason: str) -> None:
    if strict():
        pytest.fail(f"{reason} (TELECONSULT_STRICT=1)")
    pytest.skip(reason)


@dataclass
class Visit:
    visit_id: str
    tokens: dict[str, str]
    room_id: str = ""
    """The visit's room: signaling rooms, recordings and chat are keyed by it."""


@dataclass
class Server:
    url: str
    app: web.Application
    config: Config
    runner: web.AppRunner

    async def visit(self) -> Visit:
        """A new demo visit with a join token per role."""
        demo = await create_demo_visit(self.app[DATABASE])
        secret = self.config.secret()
        tokens = {
            "doctor": issue_join_token(
                secret, room_id=demo.room_id, user_id=demo.doctor_id, role="doctor"
            ),
            "patient": issue_join_token(
                secret, room_id=demo.room_id, user_id=demo.patient_id, role="patient"
            ),
        }
        return Visit(demo.visit_id, tokens, demo.room_id)

    @property
    def media(self):  # type: ignore[no-untyped-def]
        return self.app[MEDIA]

    @property
    def signaling(self):  # type: ignore[no-untyped-def]
        return self.app[SIGNALING]

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_server(
    tmp_path: Path, host: str = "127.0.0.1", port: int = 0, **settings: Any
) -> Server:
    """The whole application on ``host`` (127.0.0.1) at ``port`` (a free one by default), ICE on
    127.0.0.1 only unless ``ice_addresses`` is given.

    Rooms are recorded as in production; the playback composite (ffmpeg, CPU-heavy) is built
    only where a test asks for it (``recording_composite=True``).
    """
    settings.setdefault("recording_composite", False)
    # The test's own aiortc clients run on the in-process server's loop, so their work counts
    # as the server's lag: only a lag no client causes refuses joins here (test_overload.py
    # asks for the production threshold).
    settings.setdefault("media_busy_lag_ms", 1000)
    settings.setdefault("ice_addresses", ("127.0.0.1",))
    config = Config(data_dir=tmp_path / "data", **settings)
    if not config.database_url:
        seed_data_dir(config.data_dir)
    app = create_app(config)
    runner = web.AppRunner(app, **runner_options(config))
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    port = runner.addresses[0][1]
    return Server(url=f"http://{host}:{port}", app=app, config=config, runner=runner)
