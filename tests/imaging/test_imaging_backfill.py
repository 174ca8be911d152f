"""``teleconsult imaging fill-layouts``: instances stored before the rows kept their pixel
layout (migration 0016) get it from their file's header, audited; nothing else moves."""

from __future__ import annotations

import asyncio
import json

import pytest
from dicom_data import series_from
from imaging_helpers import client, imaging_events, off_loop
from imaging_world import World
from sqlalchemy import select, update

from consult.imaging.models import ImagingInstance
from web.cli import main
from web.keys import DATABASE, IMAGING


async def _layouts(world: World) -> dict[str, str | None]:
    async with world.server.app[DATABASE].session() as session:
        rows = (await session.execute(select(ImagingInstance))).scalars().all()
        return {row.id: row.pixel_layout for row in rows}


async def test_r20_instances_stored_before_the_layout_get_it_from_their_header(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows as migration 0016 left them (no layout): the command writes each native
    instance's layout, the very text the ingest writes; a compressed instance keeps none;
    an instance whose file is gone is counted and left; one audit event per batch names how
    many; run again, it finds nothing to do."""
    ct = series_from("CT_small.dcm", 3)
    rle = series_from("MR_small_RLE.dcm", 1, study_uid=ct[0].StudyInstanceUID)
    await off_loop(client(world.stow_url, world.doctor).store_instances, ct + rle)
    written = await _layouts(world)
    natives = {i for i, text in written.items() if text is not None}
    assert len(written) == 4 and len(natives) == 3
    db = world.server.app[DATABASE]
    async with db.session() as session, session.begin():
        await session.execute(update(ImagingInstance).values(pixel_layout=None))
    store = world.server.app[IMAGING]
    async with db.session() as session:
        gone = (await session.get(ImagingInstance, sorted(natives)[0])) or pytest.fail()
    store.path_of(gone.study_id, gone.id).unlink()

    argv = ["imaging", "fill-layouts", "--data-dir", str(world.server.config.data_dir)]
    assert await asyncio.to_thread(main, argv) == 0
    out = capsys.readouterr().out
    assert "filled the pixel layout of 2 instance(s); 1 could not be read" in out, out
    filled = await _layouts(world)
    assert {i for i, text in filled.items() if text is not None} == natives - {gone.id}
    assert all(filled[i] == written[i] for i in natives - {gone.id})  # as the ingest wrote it
    events = [e for e in await imaging_events(world.server.app) if e.action.endswith("_filled")]
    assert [(e.action, json.loads(e.details)) for e in events] == [
        ("imaging.layouts_filled", {"instances": 2})
    ]

    assert await asyncio.to_thread(main, argv) == 0
    assert "of 0 instance(s); 1 could not be read" in capsys.readouterr().out
    assert len([e for e in await imaging_events(world.server.app) if "_filled" in e.action]) == 1
