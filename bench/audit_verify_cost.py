"""Cost of the audit chain's tamper evidence: appending, a checkpoint, and ``audit verify``.

    .venv/bin/python bench/audit_verify_cost.py [--events 20000] [--messages 2000]

On a new SQLite file: appends ``--events`` events (and ``--messages`` chat messages, each with
its ``room.chat`` event), then times a first checkpoint (it walks every event since the last
one, here all), a second one after 100 more events (the periodic case), the SM2 signature alone,
and ``verify_integrity`` (the whole chain against the checkpoints, and the chat cross-check).
Not a test: figures for the notes.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from consult import chat
from consult.actor import Actor
from consult.audit import append
from consult.checkpoints import write_checkpoint
from consult.db import Database
from consult.integrity import verify_integrity
from consult.permissions import Role
from consult.trust import SM2Key
from consult.visits import create_demo_visit


async def main(events: int, messages: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        db = Database(f"sqlite+aiosqlite:///{scratch}/bench.db", field_key="b" * 48)
        await db.start()
        try:
            started = time.perf_counter()
            for n in range(events):
                await append(db, "bench.event", actor_role="system", details={"n": n})
            appended = time.perf_counter() - started
            demo = await create_demo_visit(db)
            patient = Actor(user_id=demo.patient_id, role=Role.PATIENT)
            for n in range(messages):
                await chat.send_message(db, patient, demo.visit_id, text=f"消息 {n}")
            key = SM2Key.generate()
            path = Path(scratch) / "checkpoints.jsonl"
            t0 = time.perf_counter()
            await write_checkpoint(db, path, key)
            first = time.perf_counter() - t0
            for n in range(100):
                await append(db, "bench.event", actor_role="system", details={"n": n})
            t0 = time.perf_counter()
            await write_checkpoint(db, path, key)
            periodic = time.perf_counter() - t0
            t0 = time.perf_counter()
            for _ in range(200):
                key.sign(b"x" * 300)
            sign = (time.perf_counter() - t0) / 200
            t0 = time.perf_counter()
            report = await verify_integrity(db, path, key.public())
            verify = time.perf_counter() - t0
            assert report.ok, report.text()
        finally:
            await db.close()
    total = report.chain.checked
    print(f"events in the chain: {total} ({messages} chat messages)")
    print(f"append: {appended / events * 1e3:.2f} ms/event")
    print(f"first checkpoint (walks all {total - 100} events): {first:.2f} s")
    print(f"periodic checkpoint (100 new events): {periodic * 1e3:.1f} ms")
    print(f"SM2 sign: {sign * 1e6:.0f} us")
    print(
        f"audit verify (chain + checkpoints + chat): {verify:.2f} s, "
        f"{verify / total * 1e6:.0f} us/event"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.messages))
