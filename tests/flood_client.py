"""A flooding room participant in a process of its own (issue 13 tests): its own CPU work must
not count as the server's, as it would on the test's event loop.

    python flood_client.py URL TOKEN VISIT_ID SECONDS EVENT JSON_PAYLOAD COUNT [EVENT JSON COUNT]

Connects, joins, sends the events spread evenly over SECONDS (interleaved, as a script in a loop
would; ``call``, waiting for every ack) and prints one JSON line: ``{"EVENT": [ack error code or
null, ...], ...}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import socketio


async def main(url: str, token: str, visit_id: str, seconds: float, specs: list[str]) -> None:
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=10)
    ack = await client.call("join", {"visit": visit_id}, timeout=10)
    assert ack["ok"], ack
    kinds = [
        [(specs[i], json.loads(specs[i + 1]))] * int(specs[i + 2]) for i in range(0, len(specs), 3)
    ]
    jobs: list[tuple[str, Any]] = []  # interleaved, in proportion to the counts
    total = sum(len(k) for k in kinds)
    taken = [0] * len(kinds)
    for _ in range(total):
        i = min(range(len(kinds)), key=lambda k: (taken[k] + 1) / (len(kinds[k]) or 1e-9))
        jobs.append(kinds[i][taken[i]])
        taken[i] += 1
    print("ready", flush=True)
    pending = []
    gap = seconds / max(1, len(jobs))
    began = asyncio.get_running_loop().time()
    for number, (event, payload) in enumerate(jobs):
        pending.append(asyncio.ensure_future(client.call(event, payload, timeout=60)))
        delay = began + number * gap - asyncio.get_running_loop().time()
        if delay > 0:
            await asyncio.sleep(delay)
    acks = await asyncio.gather(*pending)
    result: dict[str, list[str | None]] = {}
    for (event, _payload), answer in zip(jobs, acks, strict=True):
        code = None if answer.get("ok") else answer.get("error", {}).get("code")
        result.setdefault(event, []).append(code)
    print(json.dumps(result), flush=True)
    await client.disconnect()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5:]))
