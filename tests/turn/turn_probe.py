"""Run inside a test's client namespace: talk to coturn and the server there, print JSON.

turn_probe.py allocate SERVER_IP PORT USERNAME PASSWORD
    create a TURN allocation: {"ok": true, "relayed": [ip, port]} or {"ok": false, "error": code}
turn_probe.py permit SERVER_IP PORT USERNAME PASSWORD PEER [PEER ...]
    with an allocation, bind a channel to each peer (ip:port; [v6]:port):
    {"peers": {peer: "ok" | error code}}
turn_probe.py call URL VISIT DOCTOR_TOKEN PATIENT_TOKEN
    doctor and patient join with the ICE servers the server hands out, publish and subscribe:
    {"ice_servers": [...], "pairs": [[local type, remote type], ...], "frames": {...}}
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from aioice import stun
from aioice.turn import TurnClientUdpProtocol

TIMEOUT_S = 20.0


async def _allocation(server: tuple[str, int], username: str, password: str) -> Any:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(
        lambda: TurnClientUdpProtocol(
            server, username=username, password=password, lifetime=600, channel_refresh_time=500
        ),
        remote_addr=server,
    )
    return protocol


def _error(exc: BaseException) -> Any:
    if isinstance(exc, stun.TransactionFailed):
        return exc.response.attributes.get("ERROR-CODE", ("?", ""))[0]
    return type(exc).__name__


async def allocate(ip: str, port: str, username: str, password: str) -> dict[str, Any]:
    protocol = await _allocation((ip, int(port)), username, password)
    try:
        relayed = await asyncio.wait_for(protocol.connect(), TIMEOUT_S)
        return {"ok": True, "relayed": list(relayed)}
    except Exception as exc:  # the probe reports what coturn answered
        return {"ok": False, "error": _error(exc)}
    finally:
        await protocol.delete()


def _peer(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


async def permit(ip: str, port: str, username: str, password: str, *peers: str) -> dict[str, Any]:
    protocol = await _allocation((ip, int(port)), username, password)
    results: dict[str, Any] = {}
    try:
        await asyncio.wait_for(protocol.connect(), TIMEOUT_S)
        for number, peer in enumerate(peers):
            try:
                await asyncio.wait_for(protocol.channel_bind(0x4000 + number, _peer(peer)), 10)
                results[peer] = "ok"
            except Exception as exc:
                results[peer] = _error(exc)
    finally:
        await protocol.delete()
    return {"peers": results}


def _selected_pair(pc: Any) -> list[str] | None:
    for transceiver in pc.getTransceivers():
        connection = transceiver.sender.transport.transport._connection
        pair = connection._nominated.get(1)
        if pair is not None:
            return [pair.local_candidate.type, pair.remote_candidate.type]
    return None


async def call(url: str, visit: str, doctor_token: str, patient_token: str) -> dict[str, Any]:
    from client import Participant, sees
    from peers import wait_for

    doctor = Participant(url, doctor_token, visit, use_ice_servers=True)
    patient = Participant(url, patient_token, visit, use_ice_servers=True)
    result: dict[str, Any] = {}
    try:
        for p in (doctor, patient):
            await p.connect()
            ack = await p.join()
            result.setdefault("ice_servers", ack["ice_servers"])
            await p.publish()
            await p.subscribe()
        try:
            await wait_for(
                lambda: sees(doctor, patient, 10) and sees(patient, doctor, 10),
                timeout=TIMEOUT_S,
            )
        except AssertionError:
            pass  # reported through the frame counts below
        pcs = [p.publish_pc for p in (doctor, patient)] + [
            p.sub.pc for p in (doctor, patient) if p.sub is not None
        ]
        result["pairs"] = [_selected_pair(pc) for pc in pcs]
        result["frames"] = {
            "doctor_sees_patient": _frames(doctor, patient),
            "patient_sees_doctor": _frames(patient, doctor),
        }
    finally:
        for p in (doctor, patient):
            await p.close()
    return result


def _frames(receiver: Any, sender: Any) -> int:
    video = receiver.received_from(sender.id, "video")
    return 0 if video is None else len(video.counters)


def main() -> None:
    command, *args = sys.argv[1:]
    runner = {"allocate": allocate, "permit": permit, "call": call}[command]
    print(json.dumps(asyncio.run(runner(*args))), flush=True)


if __name__ == "__main__":
    main()
