"""What reading a UDP socket with the kernel's arrival stamp costs (media/arrival.py), side by side
with asyncio's own reader, in one run.

    .venv/bin/python bench/arrival_cost.py [--datagrams 50000] [--rounds 3]

Two sockets on 127.0.0.1, one read by asyncio's datagram transport as it is, one with
``timestamp_arrivals``; each round sends the same bursts of 1200-byte datagrams to each in turn
and counts the CPU time (``time.process_time``) until the loop has handled them all. The sending
is the same for both, so the difference is the reading. Prints microseconds per datagram and the
ratio. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from media.arrival import arrival_us, timestamp_arrivals

BURST = 50  # 60 kB: well inside the socket's receive buffer (a lost datagram would stall the count)


class Sink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.count = 0
        self.last = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.target = 0
        self.reached = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.count += 1
        self.last = arrival_us()  # what the transport-cc recorder reads per packet
        if self.count >= self.target:
            self.reached.set()


async def _cost(sink: Sink, port: int, datagrams: int, sender: socket.socket) -> float:
    payload = b"\x80" * 1200
    start = time.process_time()
    target = sink.count
    for _ in range(datagrams // BURST):
        for _ in range(BURST):
            sender.sendto(payload, ("127.0.0.1", port))
        target += BURST
        sink.target = target
        if sink.count < target:
            sink.reached.clear()
            await asyncio.wait_for(sink.reached.wait(), 5)
    return (time.process_time() - start) / datagrams * 1e6


async def main(datagrams: int, rounds: int) -> None:
    loop = asyncio.get_running_loop()
    plain_t, plain = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
    stamped_t, stamped = await loop.create_datagram_endpoint(Sink, local_addr=("127.0.0.1", 0))
    assert timestamp_arrivals(stamped), "no kernel timestamps here"
    ports = {
        "asyncio recvfrom": (plain, plain_t.get_extra_info("sockname")[1]),
        "recvmsg + kernel stamp": (stamped, stamped_t.get_extra_info("sockname")[1]),
    }
    best: dict[str, float] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for _ in range(rounds):
            for name, (sink, port) in ports.items():
                cost = await _cost(sink, port, datagrams, sender)
                best[name] = min(best.get(name, cost), cost)
    plain_t.close()
    stamped_t.close()
    for name, cost in best.items():
        print(f"{name:24s} {cost:6.2f} us per datagram (send + read, best of {rounds})")
    base, ours = best["asyncio recvfrom"], best["recvmsg + kernel stamp"]
    print(f"ratio {ours / base:.3f} ({(ours - base):+.2f} us per datagram)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datagrams", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.datagrams, args.rounds))
