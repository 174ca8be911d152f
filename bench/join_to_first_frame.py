"""Join-to-first-frame through the SFU, for aiortc participants on loopback.

    .venv/bin/python bench/join_to_first_frame.py [--runs 10]

Each run starts a fresh visit: the doctor joins, publishes and subscribes; then the patient does.
It prints, per run and as p50/p95/max, the time from each participant's join ack to the first
decoded frame of the other's video, and from the late subscriber's subscribe call to its first
frame (the keyframe-request path). Not a test: figures for the issue notes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))  # before tests/, whose media/ folder would shadow the package

from client import Participant  # noqa: E402
from peers import wait_for  # noqa: E402

from consult.tokens import issue_join_token  # noqa: E402
from consult.visits import create_demo_visit  # noqa: E402
from web.app import create_app  # noqa: E402
from web.config import Config  # noqa: E402
from web.keys import DATABASE  # noqa: E402


async def one_run(url: str, app: web.Application, config: Config) -> dict[str, float]:
    demo = await create_demo_visit(app[DATABASE])
    secret = config.secret()
    people = {}
    for role, user in (("doctor", demo.doctor_id), ("patient", demo.patient_id)):
        token = issue_join_token(secret, visit_id=demo.visit_id, user_id=user, role=role)
        people[role] = Participant(url, token, demo.visit_id)
    joined: dict[str, float] = {}
    subscribed: dict[str, float] = {}
    try:
        for role, p in people.items():
            await p.connect()
            await p.join()
            joined[role] = time.monotonic()
            await p.publish()
            subscribed[role] = time.monotonic()
            await p.subscribe()
        doctor, patient = people["doctor"], people["patient"]

        def first(receiver: Participant, sender: Participant) -> float | None:
            r = receiver.received_from(sender.id, "video")
            return r.first_frame_at if r is not None and r.counters else None

        await wait_for(lambda: first(doctor, patient) and first(patient, doctor), timeout=10)
        return {
            "doctor join->first frame": first(doctor, patient) - joined["doctor"],  # type: ignore[operator]
            "patient join->first frame": first(patient, doctor) - joined["patient"],  # type: ignore[operator]
            "patient subscribe->first frame": first(patient, doctor) - subscribed["patient"],  # type: ignore[operator]
        }
    finally:
        for p in people.values():
            await p.close()


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Config(data_dir=Path(tmp), ice_addresses=("127.0.0.1",))
        app = create_app(config)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        results: dict[str, list[float]] = {}
        try:
            for i in range(runs):
                figures = await one_run(url, app, config)
                print(
                    f"run {i + 1}: "
                    + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in figures.items())
                )
                for k, v in figures.items():
                    results.setdefault(k, []).append(v)
        finally:
            await runner.cleanup()
    print()
    for k, values in results.items():
        values.sort()
        p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
        print(
            f"{k:32s} p50 {statistics.median(values) * 1000:6.0f} ms  "
            f"p95 {p95 * 1000:6.0f} ms  max {values[-1] * 1000:6.0f} ms  (n={len(values)})"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    asyncio.run(main(parser.parse_args().runs))
