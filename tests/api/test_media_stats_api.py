"""Dropped hostile datagrams are read (issue 10): admins and operators see them by reason at
``GET /media/dropped-datagrams`` (R33, R34: no care role does), and the server log has a
participant's counts when it leaves; in process and across the media worker channel."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from apiclient import Clinic
from client import Participant
from harness import Server, start_server

ROUTE = "/media/dropped-datagrams"


@pytest.fixture(params=[0, 1], ids=["in_process", "worker_process"])
async def media_server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Server]:
    srv = await start_server(tmp_path, media_workers=request.param)
    yield srv
    await srv.stop()


def _server_ports(answer_sdp: str) -> set[int]:
    return {
        int(line.split()[5])
        for line in answer_sdp.splitlines()
        if line.startswith("a=candidate:") and " 127.0.0.1 " in line
    }


def _row(body: dict[str, Any], participant_id: str, transport: str) -> dict[str, Any] | None:
    return next(
        (
            r
            for r in body["transports"]
            if r["participant_id"] == participant_id and r["transport"] == transport
        ),
        None,
    )


async def test_r33_dropped_datagrams_reach_admins_operators_and_the_log(
    media_server: Server, caplog: pytest.LogCaptureFixture
):
    server = media_server
    clinic = await Clinic.open(server)
    operator = await clinic.person("operator")
    nurse = await clinic.person("nurse")
    visit = await server.visit()
    doctor = Participant(server.url, visit.tokens["doctor"], visit.visit_id)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    try:
        empty = await clinic.admin.ok("GET", ROUTE)
        assert empty["transports"] == [] and set(empty["totals"]) == set(empty["reasons"])
        assert {"empty", "truncated", "unverified_source"} <= set(empty["reasons"])

        await doctor.connect()
        room_id = (await doctor.join())["room"]
        await doctor.publish()
        assert doctor.publish_pc is not None
        ports = _server_ports(doctor.publish_pc.remoteDescription.sdp)
        assert ports
        sent = 3 * len(ports)
        for port in ports:
            for _ in range(3):
                stranger.sendto(b"", ("127.0.0.1", port))

        deadline = time.monotonic() + 10
        while True:  # the admin reads until the worker (or this process) counted them all
            body = await clinic.admin.ok("GET", ROUTE)
            row = _row(body, doctor.id, "publish")
            if row is not None and row["total"] >= sent:
                break
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.05)
        assert row == {
            "room": room_id,
            "participant_id": doctor.id,
            "role": "doctor",
            "transport": "publish",
            "total": sent,
            "dropped": {"empty": sent},
        }
        assert body["totals"]["empty"] == sent
        assert sum(body["totals"].values()) == sent

        # an operator reads it too; a care role is refused (R34)
        assert (await operator.ok("GET", ROUTE))["totals"]["empty"] == sent
        refused = await nurse.call("GET", ROUTE)
        assert (refused.status, refused.code) == (403, "forbidden")

        # the server log has the counts when the participant leaves and its connections close
        with caplog.at_level(logging.WARNING, logger="signaling.room"):
            assert (await doctor.call("leave", {}))["ok"]
        logged = [r for r in caplog.records if getattr(r, "dropped", None) is not None]
        assert [(r.participant_id, r.dropped) for r in logged] == [  # type: ignore[attr-defined]
            (doctor.id, {"empty": sent})
        ]
        assert room_id in logged[0].getMessage()
        # gone with its connections
        assert _row(await clinic.admin.ok("GET", ROUTE), doctor.id, "publish") is None
    finally:
        stranger.close()
        await doctor.close()
        await clinic.close()
