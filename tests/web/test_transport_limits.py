"""The HTTP and socket.io edge under hostile clients (issue 13 item 5, R33): slowloris headers,
a stalled body, an oversized declared body, a 10,000-deep socket.io packet, a foreign Origin,
and the security headers every page carries."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import aiohttp
import pytest
from harness import Server, start_server


@pytest.fixture
async def quick_server(tmp_path: Path):
    server = await start_server(tmp_path, header_timeout_s=1.5, body_timeout_s=1.5)
    try:
        yield server
    finally:
        await server.stop()


def _host_port(server: Server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> tuple[bool, bytes]:
    """Read until EOF; whether it came within ``seconds``, and what was read."""
    data = b""
    try:
        async with asyncio.timeout(seconds):
            while chunk := await reader.read(4096):
                data += chunk
        return True, data
    except ConnectionResetError:  # closed by the server with data unread: closed all the same
        return True, data
    except TimeoutError:
        return False, data


async def test_r33_slowloris_connections_are_cut_at_the_header_timeout(quick_server: Server):
    """50 connections trickle a header byte every 0.3 s: all are closed by the server within
    the 1.5 s header timeout (+ slack), none gets a response."""
    host, port = _host_port(quick_server)
    connections = [await asyncio.open_connection(host, port) for _ in range(50)]
    started = time.monotonic()

    async def trickle(writer: asyncio.StreamWriter) -> None:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
        for _ in range(30):
            await asyncio.sleep(0.3)
            if writer.is_closing():
                return
            try:
                writer.write(b"X")
                await writer.drain()
            except ConnectionError:
                return

    tasks = [asyncio.create_task(trickle(w)) for _r, w in connections]
    results = await asyncio.gather(*(_closed_within(r, 8.0) for r, _w in connections))
    elapsed = time.monotonic() - started
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for _r, w in connections:
        w.close()
    assert all(closed for closed, _data in results), "a slow connection was held"
    assert all(b"HTTP/1.1 200" not in data for _c, data in results)
    assert elapsed < 6.0, elapsed
    # the server still serves
    async with aiohttp.ClientSession() as http, http.get(quick_server.url + "/signin") as r:
        assert r.status == 200


async def test_r33_a_stalled_body_is_cut_and_an_oversized_one_refused_at_once(
    quick_server: Server, caplog: pytest.LogCaptureFixture
):
    host, port = _host_port(quick_server)
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    writer.write(
        b"POST /api/v1/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n" + b'{"username": '
    )
    await writer.drain()
    closed, data = await _closed_within(reader, 8.0)
    writer.close()
    assert closed and time.monotonic() - started < 6.0
    assert data.startswith(b"HTTP/1.1 408") and b'"request_timeout"' in data, data[:200]

    # a declared 64 MiB body with 64 KiB sent: refused before reading, not held
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    writer.write(
        b"POST /api/v1/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {64 * 1024 * 1024}\r\n\r\n".encode()
        + b"x" * 65536
    )
    await writer.drain()
    closed, data = await _closed_within(reader, 5.0)
    writer.close()
    assert data.startswith(b"HTTP/1.1 413") and b"payload_too_large" in data, data[:200]
    assert time.monotonic() - started < 1.5

    # a client that aborts mid-body: no 500, no ERROR
    caplog.set_level(logging.INFO)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"POST /api/v1/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 500\r\n\r\n" + b"{" * 10
    )
    await writer.drain()
    writer.transport.abort()
    await asyncio.sleep(0.5)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_r33_every_page_carries_the_security_headers(server: Server):
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/signin", "/room", "/console", "/api/v1/openapi.json", "/nowhere"):
            async with http.get(server.url + path) as response:
                csp = response.headers.get("Content-Security-Policy", "")
                assert "frame-ancestors 'none'" in csp, (path, csp)
                script = next(d for d in csp.split(";") if d.strip().startswith("script-src"))
                assert "'unsafe-inline'" not in script and "'unsafe-eval'" not in script
                assert response.headers["X-Content-Type-Options"] == "nosniff"
                assert response.headers["X-Frame-Options"] == "DENY"
                assert response.headers["Referrer-Policy"] == "no-referrer"
    # and no page has an inline script for the CSP to break
    static = Path(__file__).parents[2] / "web" / "static"
    for page in static.glob("*.html"):
        text = page.read_text()
        assert "<script>" not in text and " onclick=" not in text, page.name


async def _engineio_ws(server: Server, origin: str | None = None):
    http = aiohttp.ClientSession()
    headers = {"Origin": origin} if origin else {}
    ws = await http.ws_connect(
        server.url + "/socket.io/?EIO=4&transport=websocket", headers=headers
    )
    opened = await ws.receive_str(timeout=5)
    assert opened.startswith("0{"), opened
    return http, ws


async def test_r33_a_10000_deep_socketio_packet_gets_one_error_and_no_traceback(
    server: Server, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING)
    deep = "[" * 10_000 + "]" * 10_000
    # before authentication: the auth payload of CONNECT
    http, ws = await _engineio_ws(server)
    try:
        await ws.send_str("40" + deep)
        answer = await ws.receive_str(timeout=5)
        assert answer.startswith("44"), answer[:100]  # connect_error, once
        assert json.loads(answer[2:])["data"]["code"] == "token_missing"
    finally:
        await ws.close()
        await http.close()
    # after authentication: an event with an ack id
    visit = await server.visit()
    http, ws = await _engineio_ws(server)
    try:
        await ws.send_str("40" + json.dumps({"token": visit.tokens["doctor"]}))
        answer = await ws.receive_str(timeout=5)
        assert answer.startswith("40"), answer
        await ws.send_str("427" + deep)
        while True:
            answer = await ws.receive_str(timeout=5)
            if answer.startswith("437"):
                break
        (ack,) = json.loads(answer[3:])
        assert ack == {
            "ok": False,
            "error": {
                "code": "bad_request",
                "message": "the packet is not JSON or nested too deep",
            },
        }
        await ws.send_str("428{not json")  # not JSON at all: the same, still no traceback
        while not (answer := await ws.receive_str(timeout=5)).startswith("438"):
            pass
    finally:
        await ws.close()
        await http.close()
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_r33_socketio_refuses_a_foreign_origin(server: Server):
    http = aiohttp.ClientSession()
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(
                server.url + "/socket.io/?EIO=4&transport=websocket",
                headers={"Origin": "https://evil.example"},
            )
        # its own origin is accepted
        ws = await http.ws_connect(
            server.url + "/socket.io/?EIO=4&transport=websocket",
            headers={"Origin": server.url},
        )
        assert (await ws.receive_str(timeout=5)).startswith("0{")
        await ws.close()
    finally:
        await http.close()
