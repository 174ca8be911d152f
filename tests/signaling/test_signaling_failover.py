"""Signaling survives a provider cut (R28, R31; issue 16 item 3).

The whole server runs in the server namespace of tests/provider_rig.py with a signaling URL on
each provider; the doctor (aiortc, tests/client.py) signals through provider A, the patient
through B. A is blackholed in the router. The doctor notices the silence as the room page does
(no engine.io packet, pings included, for the ping interval the join ack names plus the page's
grace), reconnects through B's URL with the same join token and a page's Origin of A, and joins
again with the previous join's ``resume_key``: the same participant in the same room role,
the old socket's session taken over (one entry in the roster), the chat the patient sent during
the gap delivered once (through ``chat_history`` from the last seq held), and the media carried
on: its peer connections (each with a path monitor, as media/paths.py gives aiortc clients)
moved to B by themselves, the patient kept seeing the doctor through the signaling gap, and
nothing was published or subscribed again.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Any

import pytest
import socketio
from aiortc import RTCPeerConnection
from client import Participant, sees
from harness import start_server
from peers import client_pc, wait_for
from provider_rig import NamespaceLoop, provider_rig

from media.paths import PathMonitor, monitor_peer_connection, use_addresses
from signaling.origins import FAILOVER_GRACE_MS
from turn import NetworkProvider

pytestmark = pytest.mark.timeout(120)


def _gathering_on(address: str) -> Any:
    def make(ice_servers: list[dict[str, Any]] | None = None) -> RTCPeerConnection:
        pc = client_pc(ice_servers)
        use_addresses(pc, [address])
        return pc

    return make


def test_signaling_resumes_through_the_other_provider_as_the_same_participant(
    tmp_path: Path,
) -> None:
    with provider_rig() as rig:
        server_loop = NamespaceLoop(rig.server_ns)
        client_loop = NamespaceLoop(rig.client_ns)
        try:
            port = 20000 + secrets.randbelow(30000)  # a fresh namespace: nothing listens there
            urls = {name: f"http://{a}:{port}" for name, a in rig.server_addresses.items()}
            providers = tuple(
                NetworkProvider(name, address, urls[name])
                for name, address in rig.server_addresses.items()
            )
            server = server_loop.run(
                start_server(
                    tmp_path, host="0.0.0.0", port=port, ice_addresses=(), providers=providers
                )
            )
            visit = server_loop.run(server.visit())
            doctor = Participant(urls["a"], visit.tokens["doctor"], visit.visit_id)
            patient = Participant(urls["b"], visit.tokens["patient"], visit.visit_id)
            received: list[int] = []  # every chat seq the doctor got, live or from history
            monitors: list[PathMonitor] = []
            doctor.on("chat_message", lambda message: received.append(message["seq"]))

            async def start() -> dict[str, Any]:
                acks = {}
                for p in (doctor, patient):
                    p.make_pc = _gathering_on(rig.client_address)
                    await p.connect()
                    acks[p] = await p.join()
                for p in (doctor, patient):
                    await p.publish()
                    await p.subscribe()
                await wait_for(lambda: sees(patient, doctor, 5), timeout=30)
                await wait_for(lambda: sees(doctor, patient, 5), timeout=30)
                for p in (doctor, patient):
                    assert p.publish_pc is not None and p.sub is not None
                    for pc in (p.publish_pc, p.sub.pc):
                        monitor = monitor_peer_connection(pc)
                        monitor.start()
                        monitors.append(monitor)
                ack = await patient.call("chat", {"text": "before the cut"})
                assert ack["ok"], ack
                await wait_for(lambda: received == [1], timeout=5)
                return acks[doctor]

            first = client_loop.run(start(), timeout=60)
            # the join ack names every provider's signaling URL and how often the server pings
            assert first["signaling_urls"] == [
                {"provider": "a", "url": urls["a"]},
                {"provider": "b", "url": urls["b"]},
            ]
            ping_s = first["signaling_ping_ms"] / 1000
            assert ping_s == 1
            silence_s = ping_s + FAILOVER_GRACE_MS / 1000
            old_sid = client_loop.call(lambda: doctor.sio.get_sid())
            pcs = client_loop.call(
                lambda: (doctor.publish_pc, doctor.sub.pc if doctor.sub else None)
            )

            def doctors_frames() -> int:
                video = patient.received_from(doctor.id, "video")
                return 0 if video is None else len(video.counters)

            cut_at = time.monotonic()
            rig.cut("a")

            async def gap() -> None:
                ack = await patient.call("chat", {"text": "during the gap"})
                assert ack["ok"] and ack["message"]["seq"] == 2, ack
                # the doctor's socket through A hears nothing from here on: the page's rule
                await wait_for(lambda: doctor.silent_for() > silence_s, timeout=silence_s + 3)

            frames_at_cut = client_loop.call(doctors_frames)
            client_loop.run(gap(), timeout=20)
            noticed_s = time.monotonic() - cut_at
            assert noticed_s < ping_s + silence_s + 1, noticed_s
            # the media moved to B by itself: the patient saw the doctor through the gap
            seen_in_gap = client_loop.call(doctors_frames) - frames_at_cut
            assert seen_in_gap > 10, seen_in_gap

            async def resume() -> dict[str, Any]:
                # the page was served through A: its Origin is A's, its new socket B's
                ack = await doctor.resume(urls["b"], headers={"Origin": urls["a"]}, keep_media=True)
                history = await doctor.call("chat_history", {"after": max(received)})
                assert history["ok"], history
                received.extend(m["seq"] for m in history["messages"])
                return ack

            second = client_loop.run(resume(), timeout=30)
            assert second["resumed"] is True  # the media carried on, not rebuilt
            assert (
                client_loop.call(lambda: (doctor.publish_pc, doctor.sub.pc if doctor.sub else None))
                == pcs
            )
            assert second["participant"]["id"] == first["participant"]["id"]
            assert second["participant"]["role"] == first["participant"]["role"] == "doctor"

            # the old socket's session was taken over, not kept beside the new one
            def doctors_sessions() -> list[str]:
                room = server.signaling.rooms.find(visit.room_id)
                assert room is not None
                return [
                    s.sid
                    for s in server.signaling.sessions.values()
                    if s.participant_id == doctor.id
                ] + [s.sid for s in room.sessions.values() if s.participant_id == doctor.id]

            new_sid = client_loop.call(lambda: doctor.sio.get_sid())
            assert new_sid != old_sid
            assert server_loop.call(doctors_sessions) == [new_sid, new_sid]

            async def after() -> None:
                await wait_for(
                    lambda: (
                        [p["id"] for p in patient.participants].count(doctor.id) == 1
                        and len(patient.participants) == 2
                    ),
                    timeout=5,
                )
                # the media goes on, on the same connections, both ways
                frames = doctors_frames()
                await wait_for(lambda: sees(patient, doctor, frames + 10), timeout=10)
                video = doctor.received_from(patient.id, "video")
                mine = 0 if video is None else len(video.counters)
                await wait_for(lambda: sees(doctor, patient, mine + 10), timeout=10)
                ack = await patient.call("chat", {"text": "after the resume"})
                assert ack["ok"], ack
                # delivered in order on the new socket: anything of seq 2 would come first
                await wait_for(lambda: 3 in received, timeout=5)

            client_loop.run(after(), timeout=45)
            assert received == [1, 2, 3]  # the message of the gap once, from the history

            # another site's page may not open a socket with the token, even through B
            async def foreign() -> None:
                intruder = socketio.AsyncClient(reconnection=False)
                with pytest.raises(socketio.exceptions.ConnectionError):
                    await intruder.connect(
                        urls["b"],
                        auth={"token": visit.tokens["doctor"]},
                        transports=["websocket"],
                        headers={"Origin": "http://evil.example"},
                        wait_timeout=5,
                    )

            client_loop.run(foreign(), timeout=15)
            assert server_loop.call(doctors_sessions) == [new_sid, new_sid]

            rig.restore("a")

            async def leave() -> None:
                for monitor in monitors:
                    await monitor.close()
                for p in (doctor, patient):
                    await p.close()

            client_loop.run(leave(), timeout=30)
            server_loop.run(server.stop())
        finally:
            client_loop.close()
            server_loop.close()
