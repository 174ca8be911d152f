"""A two-provider network in namespaces: client -- router -- server, two links router--server.

    client (C.0.2) --veth-- (C.0.1) router (C.1.1) --veth "provider A"-- (C.1.2) server
                                           (C.2.1) --veth "provider B"-- (C.2.2) server

Names and the 10.X subnet are random (helpers run side by side). The server routes replies out
of the link their source address belongs to (policy routing), as a host with one address per
provider does. A provider is cut with an nftables blackhole in the router (every packet to or
from the server's address on it dropped), or with its link set down.

``NamespaceLoop`` runs an asyncio loop in a thread that entered a namespace (setns applies to
the calling thread only), so aiortc peers of one test live in different namespaces and the test
process still reads their objects directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

STRICT = os.environ.get("TELECONSULT_STRICT") == "1"
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def _unavailable(reason: str) -> None:
    if STRICT:
        pytest.fail(f"provider rig prerequisites missing (TELECONSULT_STRICT=1): {reason}")
    pytest.skip(reason)


def require_rig() -> None:
    if os.geteuid() != 0:
        _unavailable("needs root to create network namespaces")
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            _unavailable(f"`{tool}` is not installed")


def _run(*argv: str, input: str | None = None) -> None:
    subprocess.run(list(argv), check=True, text=True, input=input, capture_output=True)


@dataclass
class ProviderRig:
    client_ns: str
    router_ns: str
    server_ns: str
    client_address: str
    server_addresses: dict[str, str]  # provider name -> the server's address on it
    router_links: dict[str, str]  # provider name -> the router's device on it

    def cut(self, provider: str, client_ports: tuple[int, ...] = ()) -> None:
        """Blackhole ``provider``: the router drops everything to or from the server's address;
        with ``client_ports``, only the UDP traffic between it and those ports of the client
        (one connection's path on that provider: one direction of a call's media)."""
        address = self.server_addresses[provider]
        only = ""
        if client_ports:
            only = "{" + ", ".join(str(p) for p in client_ports) + "}"
        rules = (
            f"table inet tccut{provider} {{\n"
            "  chain forward {\n"
            "    type filter hook forward priority 0; policy accept;\n"
            + (
                f"    ip daddr {address} udp sport {only} drop\n"
                f"    ip saddr {address} udp dport {only} drop\n"
                if only
                else f"    ip daddr {address} drop\n    ip saddr {address} drop\n"
            )
            + "  }\n"
            "}\n"
        )
        _run("ip", "netns", "exec", self.router_ns, "nft", "-f", "-", input=rules)

    def restore(self, provider: str) -> None:
        _run(
            "ip",
            "netns",
            "exec",
            self.router_ns,
            "nft",
            "delete",
            "table",
            "inet",
            f"tccut{provider}",
        )

    def link(self, provider: str, up: bool) -> None:
        """Set the router's side of ``provider``'s link down (a cable pulled) or up again."""
        _run(
            "ip",
            "-n",
            self.router_ns,
            "link",
            "set",
            self.router_links[provider],
            "up" if up else "down",
        )


@contextmanager
def provider_rig(providers: tuple[str, ...] = ("a", "b")) -> Iterator[ProviderRig]:
    require_rig()
    tag = secrets.token_hex(3)
    prefix = f"10.{16 + secrets.randbelow(200)}"
    third = 10 + secrets.randbelow(200)
    # who made them, on a machine shared by several test runs (TC_NETNS_PREFIX, default "tc-")
    owner = os.environ.get("TC_NETNS_PREFIX", "tc-")
    client_ns, router_ns, server_ns = (f"{owner}{kind}{tag}" for kind in ("pc", "pr", "ps"))
    created: list[str] = []
    try:
        for ns in (client_ns, router_ns, server_ns):
            _run("ip", "netns", "add", ns)
            created.append(ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        _run("ip", "netns", "exec", router_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        client_net = f"{prefix}.{third}"
        _veth(f"tpc{tag}", client_ns, f"{client_net}.2", f"tpr{tag}", router_ns, f"{client_net}.1")
        _run("ip", "-n", client_ns, "route", "add", "default", "via", f"{client_net}.1")
        server_addresses: dict[str, str] = {}
        router_links: dict[str, str] = {}
        for index, name in enumerate(providers, start=1):
            net = f"{prefix}.{third + index}"
            router_dev, server_dev = f"tr{name}{tag}", f"ts{name}{tag}"
            _veth(router_dev, router_ns, f"{net}.1", server_dev, server_ns, f"{net}.2")
            table = str(100 + index)
            _run(
                "ip", "-n", server_ns, "route", "add", "default", "via", f"{net}.1", "table", table
            )
            _run("ip", "-n", server_ns, "rule", "add", "from", f"{net}.2", "table", table)
            server_addresses[name] = f"{net}.2"
            router_links[name] = router_dev
        yield ProviderRig(
            client_ns, router_ns, server_ns, f"{client_net}.2", server_addresses, router_links
        )
    finally:
        for ns in reversed(created):
            result = subprocess.run(
                ["ip", "netns", "pids", ns], capture_output=True, text=True, check=False
            )
            for pid in result.stdout.split():
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError):
                    pass
            subprocess.run(["ip", "netns", "delete", ns], check=False)


def _veth(dev_a: str, ns_a: str, addr_a: str, dev_b: str, ns_b: str, addr_b: str) -> None:
    _run("ip", "link", "add", dev_a, "netns", ns_a, "type", "veth", "peer", dev_b, "netns", ns_b)
    for ns, dev, addr in ((ns_a, dev_a, addr_a), (ns_b, dev_b, addr_b)):
        _run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        _run("ip", "-n", ns, "link", "set", dev, "up")


def _enter_namespace(ns: str) -> None:
    """Move the calling thread into network namespace ``ns``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns failed")
    finally:
        os.close(fd)


class NamespaceLoop:
    """An asyncio loop running in a thread inside network namespace ``ns`` (None: this
    process's own namespace, e.g. peers whose loop must not stall when the server's does)."""

    def __init__(self, ns: str | None) -> None:
        self.ns = ns
        self.loop = asyncio.new_event_loop()
        self._ready = concurrent.futures.Future[None]()
        self._thread = threading.Thread(target=self._main, name=f"loop-{ns}", daemon=True)
        self._thread.start()
        self._ready.result(timeout=10)

    def _main(self) -> None:
        try:
            if self.ns is not None:
                _enter_namespace(self.ns)
        except BaseException as exc:
            self._ready.set_exception(exc)
            return
        asyncio.set_event_loop(self.loop)
        self._ready.set_result(None)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def run_from_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        """``run`` for a caller on another event loop: awaits instead of blocking it."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def call(self, fn: Any, *args: Any) -> Any:
        """Run a plain function on the loop's thread and return its result."""

        async def wrapper() -> Any:
            return fn(*args)

        return self.run(wrapper())

    def close(self) -> None:
        async def stop_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.run(stop_all(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            if not self.loop.is_running():
                self.loop.close()


def count_media_packets(
    pc: Any, arrivals: dict[str, list[float]], keyframes: list[float] | None = None
) -> None:
    """Note, by kind, when each media packet (not RTX, not padding) reaches a receiver of the
    aiortc peer ``pc``: what gets to the client, as inbound statistics would say. (aiortc's own
    getStats() keeps one inbound entry per receiver, which the server's RTX padding probes
    overwrite, and its VP8 decoder trips over those probes: decoded frames are no measure.)
    ``keyframes``: when each VP8 keyframe's first packet arrived. Call before the remote
    description is applied."""
    from media import _aiortc_seam as seam
    from media.keyframes import vp8_keyframe_start

    def on_track(track: Any) -> None:
        transceiver = next(t for t in pc.getTransceivers() if t.receiver.track is track)
        kind, receiver = transceiver.kind, transceiver.receiver
        media_types = {
            c.payloadType
            for c in seam.negotiated_codecs(transceiver)
            if c.mimeType.lower() != f"{kind}/rtx"
        }
        times = arrivals.setdefault(kind, [])
        handle = receiver._handle_rtp_packet

        async def counted(packet: Any, arrival_time_ms: int) -> None:
            if packet.payload_type in media_types and packet.payload:
                times.append(time.monotonic())
                if keyframes is not None and kind == "video":
                    if vp8_keyframe_start(packet.payload):
                        keyframes.append(times[-1])
            await handle(packet, arrival_time_ms)

        receiver._handle_rtp_packet = counted

    pc.on("track", on_track)
