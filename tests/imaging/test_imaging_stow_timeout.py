"""A STOW-RS upload that falls silent is cut (issue 13, R33): the web edge's whole-body timeout
does not apply to a streamed upload of up to 2 GiB, so STOW-RS bounds the silence between bytes
by ``body_timeout_s``; a slow upload that keeps sending is stored."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from dicom_data import part10, series_from
from harness import start_server
from imaging_world import World, make_world

from web.keys import IMAGING

IDLE_S = 1.5
BOUNDARY = "b0undary"


@pytest.fixture
async def quick_world(tmp_path: Path) -> AsyncIterator[World]:
    server = await start_server(tmp_path, body_timeout_s=IDLE_S)
    world = await make_world(server)
    try:
        yield world
    finally:
        await world.clinic.close()
        await server.stop()


def _body(instance: bytes) -> bytes:
    return (
        f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + instance
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


async def _open(world: World, length: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = world.server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    path = f"/api/v1/dicomweb/visits/{world.visit_id}/studies"
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {world.doctor.token}\r\n"
        f'Content-Type: multipart/related; type="application/dicom"; boundary={BOUNDARY}\r\n'
        f"Content-Length: {length}\r\n\r\n".encode()
    )
    await writer.drain()
    return reader, writer


async def _answer(reader: asyncio.StreamReader, seconds: float) -> bytes:
    data = b""
    async with asyncio.timeout(seconds):
        while chunk := await reader.read(65536):
            data += chunk
            if b"\r\n\r\n" in data and data.endswith(b"}"):
                break
    return data


async def test_r33_a_stalled_stow_upload_is_cut_a_slow_steady_one_stored(quick_world: World):
    """(One test: the world's setup costs more than both uploads.)"""
    body = _body(part10(series_from("CT_small.dcm", 1)[0]))
    reader, writer = await _open(quick_world, len(body))
    writer.write(body[: len(body) // 2])  # half an instance, then silence
    await writer.drain()
    started = time.monotonic()
    try:
        data = await _answer(reader, 4 * IDLE_S + 2)
    finally:
        writer.close()
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"
    assert b"Connection: close" in data.split(b"\r\n\r\n", 1)[0]
    assert IDLE_S - 0.2 < time.monotonic() - started < 3 * IDLE_S
    store = quick_world.server.app[IMAGING]
    assert not [p for p in store.root.rglob("*") if p.is_file()]  # no partial file left

    # the bound is on silence, not on the upload's length: over two idle periods in all, no
    # pause longer than a third of one
    reader, writer = await _open(quick_world, len(body))
    pieces = 8
    step = -(-len(body) // pieces)
    started = time.monotonic()
    try:
        for i in range(pieces):
            writer.write(body[i * step : (i + 1) * step])
            await writer.drain()
            if i < pieces - 1:
                await asyncio.sleep(IDLE_S / 3)  # the pacing under test, not a wait
        data = await _answer(reader, 10)
    finally:
        writer.close()
    assert time.monotonic() - started > IDLE_S * 2
    assert data.startswith(b"HTTP/1.1 200"), data[:300]
    assert len([p for p in store.studies.rglob("*") if p.is_file()]) == 1


async def test_r33_a_trickled_stow_upload_is_cut_though_it_never_falls_silent(
    quick_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R33: a bound on silence alone let a byte just within every ``body_timeout_s`` keep an
    upload open for ever. Past a grace of waiting, the bytes must have come at a floor rate on
    average (here 0.5 s and 50 kB/s; 30 s and 1 KiB/s by default): an upload sending 1 KB every
    0.1 s, never silent for long, is cut with 408 ``request_timeout``, no partial file left."""
    from consult.imaging import store as imaging_store

    monkeypatch.setattr(imaging_store, "SLOW_GRACE_S", 0.5)
    monkeypatch.setattr(imaging_store, "MIN_RECEIVE_RATE", 50_000)
    body = _body(part10(series_from("CT_small.dcm", 1)[0]))
    reader, writer = await _open(quick_world, len(body))
    started = time.monotonic()
    sent = 0
    answer = asyncio.ensure_future(_answer(reader, 15))
    try:
        while sent < len(body) and not answer.done():
            try:
                writer.write(body[sent : sent + 1024])
                await writer.drain()
            except ConnectionError:  # the server answered and closed meanwhile
                break
            sent += 1024
            await asyncio.sleep(0.1)  # 10 kB/s, a tenth of IDLE_S apart: the pacing under test
        data = await answer
    finally:
        writer.close()
    assert sent < len(body), "the whole upload went through"
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"
    assert 0.5 < time.monotonic() - started < IDLE_S * 3
    store = quick_world.server.app[IMAGING]
    assert not [p for p in store.root.rglob("*") if p.is_file()]  # no partial file left
