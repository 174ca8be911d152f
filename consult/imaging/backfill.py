"""Pixel layouts for instances stored before the rows kept them (migration 0016).

A native instance stored since then has its layout in its row (:mod:`.layout`), so its
renderings and frames skip the header's parse; one stored before serves through the header
as before, correctly but slower. ``teleconsult imaging fill-layouts`` reads each such file's
header once (:func:`.render.read_header`: the first 64 KiB, values over 1 KiB unread) and
writes the layout, in batches, each batch one audited transaction (``imaging.layouts_filled``,
with the count). A file that cannot be read (missing, not parseable any more) is left as it
is and counted; running the command again takes only what is still missing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydicom.dataelem import RawDataElement
from sqlalchemy import select, update

from consult.actor import Actor
from consult.audit import audited
from consult.db import Database

from .layout import describe
from .models import ImagingInstance
from .uids import NATIVE_SYNTAXES

BATCH: Final = 500


@dataclass(frozen=True)
class Filled:
    filled: int
    unreadable: int


@dataclass(frozen=True)
class _Missing:
    id: str
    study_id: str
    transfer_syntax: str
    rows: int
    columns: int
    frames: int


def layout_of(path: Path, syntax: str, rows: int, columns: int, frames: int) -> str | None:
    """The layout of the stored file at ``path`` from its header (blocking); None when the
    file cannot say it (missing, unreadable, no pixel data by offset)."""
    from .parse import native_frame_size
    from .render import read_header

    try:
        ds = read_header(path)
        raw = ds.get_item(0x7FE00010, keep_deferred=True)
        if not isinstance(raw, RawDataElement) or raw.value_tell is None:
            return None
        return describe(
            ds,
            syntax,
            raw.value_tell,
            rows=rows,
            columns=columns,
            frames=frames,
            frame_bytes=native_frame_size(ds, rows, columns),
        )
    except Exception:  # missing, unreadable, or a header pydicom cannot parse any more
        return None


async def fill_layouts(db: Database, studies: Path, *, batch: int = BATCH) -> Filled:
    """Write the layout of every native instance with pixel data whose row has none."""
    loop = asyncio.get_running_loop()
    filled = unreadable = 0
    after = ""
    while True:
        async with db.session() as session:
            found = (
                await session.execute(
                    select(
                        ImagingInstance.id,
                        ImagingInstance.study_id,
                        ImagingInstance.transfer_syntax,
                        ImagingInstance.rows,
                        ImagingInstance.columns,
                        ImagingInstance.frames,
                    )
                    .where(
                        ImagingInstance.pixel_layout.is_(None),
                        ImagingInstance.frames > 0,
                        ImagingInstance.transfer_syntax.in_(sorted(NATIVE_SYNTAXES)),
                        ImagingInstance.id > after,
                    )
                    .order_by(ImagingInstance.id)
                    .limit(batch)
                )
            ).all()
        if not found:
            return Filled(filled, unreadable)
        after = found[-1].id
        missing = [
            _Missing(row.id, row.study_id, row.transfer_syntax, row.rows, row.columns, row.frames)
            for row in found
            if row.rows and row.columns
        ]
        layouts = await loop.run_in_executor(None, _layouts, studies, missing)
        written = {m.id: text for m, text in zip(missing, layouts, strict=True) if text}
        unreadable += len(found) - len(written)
        if not written:
            continue
        async with audited(db) as tx:
            for instance_id, text in written.items():
                await tx.session.execute(
                    update(ImagingInstance)
                    .where(
                        ImagingInstance.id == instance_id,
                        ImagingInstance.pixel_layout.is_(None),
                    )
                    .values(pixel_layout=text)
                )
            await tx.record(
                "imaging.layouts_filled",
                actor=Actor.system(),
                object_type="imaging_instance",
                details={"instances": len(written)},
            )
        filled += len(written)


def _layouts(studies: Path, missing: list[_Missing]) -> list[str | None]:
    out: list[str | None] = []
    for m in missing:
        if not (m.study_id.isalnum() and m.id.isalnum()):
            out.append(None)  # never a path from anything but our own ids
            continue
        path = studies / m.study_id / f"{m.id}.dcm"
        out.append(layout_of(path, m.transfer_syntax, m.rows, m.columns, m.frames))
    return out
