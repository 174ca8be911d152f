"""R26: the server writes signed checkpoints itself: at start, every ``checkpoint_interval_s``
while the chain moves, and a last one at shutdown; its SM2 key is made at first start (0600)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

from harness import start_server
from peers import wait_for

from consult.audit import append, read_head
from consult.checkpoints import read_checkpoints
from web.keys import DATABASE


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


async def test_r26_the_server_checkpoints_periodically_and_at_shutdown(tmp_path: Path) -> None:
    server = await start_server(tmp_path, checkpoint_interval_s=0.2)
    config = server.config
    try:
        key_file = config.data_dir / "signing.key"
        assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
        await wait_for(lambda: len(_lines(config.checkpoints)) >= 1, timeout=10)
        db = server.app[DATABASE]
        await append(db, "test.event", actor_role="system")
        head = await read_head(db)
        await wait_for(
            lambda: any(
                line["body"]["audit"]["seq"] == head[0] for line in _lines(config.checkpoints)
            ),
            timeout=10,
            message="no checkpoint of the new head",
        )
        count = len(_lines(config.checkpoints))
        await asyncio.sleep(0.6)  # three periods without a new event: nothing new is signed
        assert len(_lines(config.checkpoints)) == count
        await append(db, "test.event", actor_role="system")
        last = await read_head(db)
    finally:
        await server.stop()
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == "audit-checkpoints"]
    assert tasks == []  # cancelled and awaited
    lines = _lines(config.checkpoints)
    assert lines[-1]["body"]["audit"]["seq"] == last[0]  # the shutdown checkpoint
    public = config.public_key()
    assert public is not None
    log = read_checkpoints(config.checkpoints, public)
    assert log.problems == [] and [c.n for c in log.checkpoints] == list(range(1, len(lines) + 1))
