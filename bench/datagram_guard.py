"""What the datagram guard costs per datagram, side by side with aioice's own receive path.

    .venv/bin/python bench/datagram_guard.py [--datagrams 20000]

One call (a publisher through a RoomMedia, aiortc peers on loopback). A 1200-byte media datagram
from the verified peer goes once through aioice's unguarded ``datagram_received`` (which tries
to parse every media packet as STUN first) and once through the guarded one; then the guard's
cost for what it drops (a stranger's media, an empty datagram). Best of three, microseconds per
datagram, synchronous part only (DTLS and SRTP come after either way). Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "fuzz"))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))  # before tests/, whose media/ folder would shadow the package

import targets  # noqa: E402

from media import _aiortc_seam  # noqa: E402


def per_datagram(
    fn: Callable[[bytes, Any], None], data: bytes, addr: Any, n: int, drain: Any
) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            fn(data, addr)
        best = min(best, (time.perf_counter() - start) / n)
        while not drain.empty():
            drain.get_nowait()
    return best * 1e6


async def main(n: int) -> None:
    _aiortc_seam.restrict_host_addresses(["127.0.0.1"])
    call = await targets.start_call()
    try:
        transport = call.publish
        protocol = call.protocol(transport)
        queue = targets._dtls(transport).transport._connection._queue
        peer, stranger = call.peer_addr(transport), ("127.0.0.1", 9)
        media = bytes([0x80, 97]) + os.urandom(1190)
        unguarded = type(protocol).datagram_received.__get__(protocol)
        rows = [
            ("aioice, unguarded: media from the peer", unguarded, media, peer),
            ("guarded: media from the peer", protocol.datagram_received, media, peer),
            (
                "guarded: media from a stranger (dropped)",
                protocol.datagram_received,
                media,
                stranger,
            ),
            ("guarded: empty datagram (dropped)", protocol.datagram_received, b"", stranger),
        ]
        for label, fn, data, addr in rows:
            print(f"{label:45s} {per_datagram(fn, data, addr, n, queue):6.2f} us")
    finally:
        await call.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datagrams", type=int, default=20000)
    asyncio.run(main(parser.parse_args().datagrams))
