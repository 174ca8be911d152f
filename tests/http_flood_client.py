"""An abusive REST API client in a process of its own (issue 13 tests and bench/flood_latency.py):
its own CPU work must not count as the server's, as it would on the test's event loop.

    python http_flood_client.py URL forbidden TOKEN CONCURRENCY (--count N | --seconds S)
    python http_flood_client.py URL sign_in ADDRESS CONCURRENCY (--count N | --seconds S)
        USERNAME [USERNAME ...]

``forbidden``: ``GET /api/v1/audit/events`` with a patient's bearer TOKEN (auditors only).
``sign_in``: ``POST /api/v1/session`` from ADDRESS (a loopback address of its own) with wrong
passwords, every other try for one of the USERNAMEs (real accounts), the others for unknown
names. CONCURRENCY requests are in flight at once, until N were sent or S seconds passed.

Prints ``ready`` once its client is made, then one JSON line: ``{"STATUS CODE": count, ...}``
(``CODE`` is the error code of the body, ``None`` for a success).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp


async def main(args: argparse.Namespace) -> dict[str, int]:
    counts: dict[str, int] = {}
    api = args.url.rstrip("/") + "/api/v1"
    if args.kind == "sign_in":
        connector = aiohttp.TCPConnector(local_addr=(args.secret, 0), limit=args.concurrency)
    else:
        connector = aiohttp.TCPConnector(limit=args.concurrency)
    until = time.monotonic() + args.seconds if args.seconds else None
    left = args.count

    def more() -> bool:
        nonlocal left
        if until is not None:
            return time.monotonic() < until
        left -= 1
        return left >= 0

    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker(n: int) -> None:
            i = 0
            while more():
                if args.kind == "forbidden":
                    request = http.get(
                        api + "/audit/events", headers={"Authorization": f"Bearer {args.secret}"}
                    )
                else:
                    names = args.usernames
                    name = names[(n + i) % len(names)] if i % 2 else f"ghost-{n}-{i}"
                    request = http.post(
                        api + "/session",
                        json={"username": name, "password": f"Wrong-{n}-{i}-Pass"},
                    )
                async with request as reply:
                    body = await reply.json(content_type=None)
                error = body.get("error") if isinstance(body, dict) else None
                code = error.get("code") if isinstance(error, dict) else None
                key = f"{reply.status} {code}"
                counts[key] = counts.get(key, 0) + 1
                i += 1

        print("ready", flush=True)
        await asyncio.gather(*(worker(n) for n in range(args.concurrency)))
    return counts


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("kind", choices=("forbidden", "sign_in"))
    parser.add_argument("secret", help="the bearer token (forbidden) or the address (sign_in)")
    parser.add_argument("concurrency", type=int)
    parser.add_argument("usernames", nargs="*")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=0.0)
    print(json.dumps(asyncio.run(main(parser.parse_intermixed_args()))), flush=True)
