"""Join tokens never travel in a URL's query (issue 13, R33): links carry them in the fragment,
a token in a query string is refused with ``token_in_query`` (pages, REST, socket.io) even when
valid, and the access log writes route templates, never what the client put in the URL."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from harness import Server

from web.access_log import PathOnlyAccessLogger
from web.app import create_app
from web.config import Config
from web.join_links import room_link
from web.transport import runner_options


def test_r33_a_room_link_carries_its_token_in_the_fragment():
    assert room_link("a.b-c_d", visit_id="v1") == "/room?visit=v1#token=a.b-c_d"
    assert room_link("t", room_id="r1") == "/room?room=r1#token=t"
    assert (
        room_link("t", visit_id="v1", text_only=True, base_url="http://h:1/")
        == "http://h:1/room?visit=v1&mode=text#token=t"
    )


async def _socket_answer(server: Server, query: str, auth: dict[str, str]) -> str:
    """The answer to a namespace CONNECT over a raw engine.io websocket."""
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{server.url}/socket.io/?EIO=4&transport=websocket{query}") as ws,
    ):
        assert (await ws.receive_str(timeout=5)).startswith("0{")
        await ws.send_str("40" + json.dumps(auth))
        return await ws.receive_str(timeout=5)


async def test_r33_a_token_in_a_query_string_is_refused_even_when_valid(server: Server):
    visit = await server.visit()
    token = visit.tokens["doctor"]
    async with aiohttp.ClientSession() as http:
        # an old-form room link: a page that says why, in both languages, no script
        async with http.get(f"{server.url}/room?visit={visit.visit_id}&token={token}") as r:
            body = await r.text()
            assert r.status == 400, body
            assert 'data-code="token_in_query"' in body and "<script" not in body
            assert "旧格式" in body and "old format" in body
            assert r.headers["Cache-Control"] == "no-store"
        async with http.get(f"{server.url}/viewer?visit={visit.visit_id}&token=") as r:
            assert r.status == 400
        # the REST API: a bearer in the query is refused, not read
        async with http.get(
            f"{server.url}/api/v1/visits/{visit.visit_id}?access_token={token}"
        ) as r:
            assert r.status == 400
            assert (await r.json())["error"]["code"] == "token_in_query"
        # the new form is served
        async with http.get(f"{server.url}/room?visit={visit.visit_id}") as r:
            assert r.status == 200
    # socket.io: the same valid token is refused when the handshake URL names one too
    answer = await _socket_answer(server, f"&token={token}", {"token": token})
    assert answer.startswith("44"), answer
    assert json.loads(answer[2:])["data"]["code"] == "token_in_query"
    answer = await _socket_answer(server, "", {"token": token})
    assert answer.startswith("40"), answer


@pytest.fixture
async def logged_server(tmp_path: Path):
    """The application with the access log ``teleconsult serve`` uses."""
    config = Config(data_dir=tmp_path / "data", recording_composite=False)
    runner = web.AppRunner(
        create_app(config), access_log_class=PathOnlyAccessLogger, **runner_options(config)
    )
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_r33_the_access_log_writes_routes_never_a_token(
    logged_server: str, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="aiohttp.access")
    secret = "SECRET-TOKEN-VALUE"
    async with aiohttp.ClientSession() as http:
        for path in (
            f"/room?visit=v&token={secret}",  # refused, 400
            f"/signin?next={secret}",  # any query at all
            f"/room%3Ftoken={secret}",  # a token hidden in the path: no route
            f"/api/v1/visits/{secret}",  # a token as a path parameter
            "/room",
        ):
            async with http.get(logged_server + path) as response:
                await response.read()
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 5, lines
    assert not [line for line in lines if secret in line], lines
    assert [line.split(" ")[1:4] for line in lines] == [
        ["GET", "/room", "400"],
        ["GET", "/signin", "200"],
        ["GET", "-", "404"],
        ["GET", "/api/v1/visits/{visit_id}", "401"],
        ["GET", "/room", "200"],
    ]
