"""Random loss on the publishers' leg: what our SFU receives, recovers and forwards.

    sudo .venv/bin/python bench/publisher_loss.py [--loss 5] [--seconds 20] [--publishers 2]
        [--subscribers 2] [--warmup 3] [--audio]

Root only: it builds a rig of its own and takes it down when it ends (also on Ctrl-C/SIGTERM):

    root namespace                              namespace tcb-<random>
    publishers  10.213.X.1 --+                  +-- 10.213.X.2  bench/sfu_server.py --engine ours
    subscribers 10.213.X.3 --+-- veth pair -----+   (ICE and control channel on .2 only)
                                                    nft table inet tcb_bench (this namespace's):
                                                    UDP from .1 -> numgen random mod 100 < N drop

The kernel here has no netem, so the loss is an nftables rule in the namespace's own table
(the root namespace's ruleset is never touched; the table goes with the namespace). It drops
only UDP the publishers send to the server (source .1); subscribers (.3) and the control
channel (TCP) cross the same link without loss. Every peer gathers ICE on its one veth
address only and no STUN/TURN server is used: no test packet leaves the veth pair.

Two windows of --seconds, side by side: the loss rule off, then on. For each subscribed stream
it prints the packets the publisher sent (its sender's packetsSent: originals only), the packets
the server's Producer received (``packets_received``, recovered ones included) and recovered,
the packets the subscriber counted and the loss the subscriber saw (sequence gaps). Upstream
NACKs and RTX are counted on both sides: the Producer's counters (read with a default, so this
runs before and after media/ has them) and, independently, at the publisher's aiortc peer
(NACKs it received, packets it sent again). Subscribers only count packets, so they never NACK:
what they miss is what the SFU did not recover.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import random
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiortc
from aiortc.rtp import RTCP_RTPFB_NACK, RtcpRtpfbPacket, is_rtcp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from encoded_media import EncodedClip, encode_opus, encode_vp8  # noqa: E402
from load_clients import (  # noqa: E402
    Control,
    Publisher,
    Subscriber,
    close_all,
    start_publisher,
    start_subscriber,
    wait_until_flowing,
)
from sfu_forwarding import start_server, stop_server  # noqa: E402
from stream_counter import CounterSnapshot, window_loss  # noqa: E402

from media import _aiortc_seam as seam  # noqa: E402

NFT_TABLE = "tcb_bench"


# --- the rig: namespace, veth pair, the namespace's nft table ---------------------------------


def run(*command: str) -> str:
    """Run a command; raise with its stderr if it fails."""
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed: {done.stderr.strip()}")
    return done.stdout


def sh(command: str) -> str:
    """``run`` for a command line whose words hold no spaces."""
    return run(*command.split())


def _networks_in_use() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the root namespace has an address in or a route to."""
    nets = []
    for line in run("ip", "-4", "-o", "addr", "show").splitlines():
        fields = line.split()
        if "inet" in fields:
            nets.append(ipaddress.ip_interface(fields[fields.index("inet") + 1]).network)
    route_types = {
        "unicast",
        "broadcast",
        "local",
        "anycast",
        "multicast",
        "unreachable",
        "prohibit",
        "blackhole",
        "throw",
        "nat",
    }
    for line in run("ip", "-4", "route", "show", "table", "all").splitlines():
        words = line.split()
        if words and words[0] in route_types:
            words = words[1:]
        if not words or words[0] == "default":
            continue  # the default route covers everything; it is not an address in use
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.ip_network(words[0], strict=False))
    return nets


class Rig:
    """A network namespace holding the server, joined to the root namespace by a veth pair."""

    def __init__(self) -> None:
        while True:
            tag = secrets.token_hex(3)
            self.ns = f"tcb-{tag}"
            self.root_if = f"tcb{tag}r"  # interface names: at most 15 characters
            self.ns_if = f"tcb{tag}n"
            taken = [Path(f"/run/netns/{self.ns}"), Path(f"/sys/class/net/{self.root_if}")]
            if not any(path.exists() for path in taken):
                break
        used = _networks_in_use()
        candidates = [ipaddress.ip_network(f"10.213.{x}.0/29") for x in range(256)]
        random.shuffle(candidates)
        net = next((n for n in candidates if not any(n.overlaps(u) for u in used)), None)
        if net is None:
            raise RuntimeError("every 10.213.x.0/29 is in use on this machine")
        hosts = list(net.hosts())
        self.prefix = net.prefixlen
        self.pub_addr, self.server_addr, self.sub_addr = (str(h) for h in hosts[:3])
        self.server_pid: int | None = None
        self._up = False

    def nft(self, *args: str) -> str:
        """nft inside the namespace only: the root namespace's ruleset is never touched."""
        return run("ip", "netns", "exec", self.ns, "nft", *args)

    def setup(self) -> None:
        self._up = True  # from the first command on, teardown has something to undo
        ns, root_if, ns_if, prefix = self.ns, self.root_if, self.ns_if, self.prefix
        sh(f"ip netns add {ns}")
        sh(f"ip link add {root_if} type veth peer name {ns_if} netns {ns}")
        # no IPv6 autoconfiguration chatter on the pair (both settings go with the interfaces)
        with contextlib.suppress(OSError):
            Path(f"/proc/sys/net/ipv6/conf/{root_if}/disable_ipv6").write_text("1")
        with contextlib.suppress(RuntimeError):
            sh(f"ip netns exec {ns} sysctl -qw net.ipv6.conf.{ns_if}.disable_ipv6=1")
        sh(f"ip addr add {self.pub_addr}/{prefix} dev {root_if}")
        sh(f"ip addr add {self.sub_addr}/{prefix} dev {root_if}")
        sh(f"ip -n {ns} addr add {self.server_addr}/{prefix} dev {ns_if}")
        sh(f"ip link set {root_if} up")
        sh(f"ip -n {ns} link set {ns_if} up")
        sh(f"ip -n {ns} link set lo up")
        ruleset = f"""
table inet {NFT_TABLE} {{
    counter publisher_udp {{ }}
    counter publisher_dropped {{ }}
    chain input {{
        type filter hook input priority filter; policy accept;
        ip saddr {self.pub_addr} meta l4proto udp counter name "publisher_udp" jump loss
    }}
    chain loss {{
    }}
}}
"""
        done = subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "-f", "-"],
            input=ruleset,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"nft refused the namespace's table: {done.stderr.strip()}")
        self.set_loss(0)

    def set_loss(self, percent: float) -> None:
        """Drop ``percent`` % of the publishers' UDP at random (0: drop nothing)."""
        self.nft(*f"flush chain inet {NFT_TABLE} loss".split())
        if percent > 0:
            # in 1/10000, so that fractions of a percent work too
            rule = (
                f"add rule inet {NFT_TABLE} loss numgen random mod 10000 < "
                f"{round(percent * 100)} counter name publisher_dropped drop"
            )
            self.nft(*rule.split())

    def counters(self) -> dict[str, int]:
        """Packets counted by the namespace's named counters."""
        listing = json.loads(self.nft("-j", "list", "counters", "table", "inet", NFT_TABLE))
        return {
            item["counter"]["name"]: item["counter"]["packets"]
            for item in listing["nftables"]
            if "counter" in item
        }

    def teardown(self) -> None:
        """Stop the server if it still runs, delete the veth pair and the namespace. Idempotent."""
        if not self._up:
            return
        self._up = False
        if self.server_pid is not None:
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{self.server_pid}/cmdline").read_bytes()
                if b"sfu_server.py" in cmdline:  # still ours, not a reused pid
                    os.kill(self.server_pid, signal.SIGKILL)
        for command in (
            ("ip", "link", "del", self.root_if),  # takes the namespace's end with it
            ("ip", "netns", "del", self.ns),  # and the nft table with the namespace
        ):
            subprocess.run(command, capture_output=True, check=False)
        deadline = time.monotonic() + 5
        while Path(f"/sys/class/net/{self.root_if}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # the kernel removes a namespace's devices asynchronously
        left = [
            what
            for what, present in (
                (f"interface {self.root_if}", Path(f"/sys/class/net/{self.root_if}").exists()),
                (f"namespace {self.ns}", Path(f"/run/netns/{self.ns}").exists()),
            )
            if present
        ]
        if left:
            print(f"warning: could not remove {', '.join(left)}", file=sys.stderr)


# --- what the publisher's own peer sees --------------------------------------------------------


@dataclass(frozen=True)
class ProbeSnapshot:
    sent: dict[str, int]  # producer id -> original packets
    nack_packets: int
    nacked_seqs: int
    resent: int


class PublisherProbe:
    """What one publisher's aiortc peer puts on the wire, and the NACKs it gets back.

    Every RTP packet it sends is classified as it leaves: an original (a sequence number newer
    than any before on its sender's SSRC) or a retransmission (an older one, or any packet on
    another SSRC: RTX). So the figures hold with RTX (the usual case) or without it, and one
    synchronous snapshot gives them all.
    """

    def __init__(self, publisher: Publisher) -> None:
        self.nack_packets = 0
        self.nacked_seqs = 0
        self.resent = 0
        self.originals: dict[int, int] = {}  # media SSRC -> packets
        self._highest: dict[int, int] = {}  # media SSRC -> highest sequence number sent
        self.ssrc_of = {pid: seam.sender_ssrc(s) for pid, s in publisher.senders.items()}
        media_ssrcs = set(self.ssrc_of.values())
        senders = publisher.pc.getSenders()
        for sender in senders:
            seam.intercept_sender_rtcp(sender, self._counting_rtcp(sender._handle_rtcp_packet))
        transport = senders[0].transport  # max-bundle: one DTLS transport for all senders
        original_send = transport._send_rtp

        async def counting_send(data: bytes) -> None:
            await original_send(data)
            if is_rtcp(data):
                return
            ssrc = int.from_bytes(data[8:12], "big")
            seq = int.from_bytes(data[2:4], "big")
            highest = self._highest.get(ssrc)
            if ssrc not in media_ssrcs or (highest is not None and (seq - highest) & 0x8000):
                self.resent += 1
                return
            if highest is not None and seq == highest:
                self.resent += 1
                return
            self._highest[ssrc] = seq
            self.originals[ssrc] = self.originals.get(ssrc, 0) + 1

        transport._send_rtp = counting_send

    def _counting_rtcp(self, original: Any) -> Any:
        async def counting(packet: Any) -> None:
            if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                self.nack_packets += 1
                self.nacked_seqs += len(packet.lost)
            await original(packet)

        return counting

    def snapshot(self) -> ProbeSnapshot:
        return ProbeSnapshot(
            sent={pid: self.originals.get(ssrc, 0) for pid, ssrc in self.ssrc_of.items()},
            nack_packets=self.nack_packets,
            nacked_seqs=self.nacked_seqs,
            resent=self.resent,
        )


# --- one window --------------------------------------------------------------------------------


@dataclass
class Snapshot:
    sent: dict[str, int]  # producer id -> packets its publisher sent (originals)
    producers: dict[str, dict[str, int]]  # producer id -> the Producer's counters
    counters: list[CounterSnapshot]  # per subscribed stream
    probes: list[ProbeSnapshot]  # per publisher
    nft: dict[str, int]
    at: float = field(default_factory=time.perf_counter)


async def snapshot(
    rig: Rig,
    control: Control,
    subscribers: list[Subscriber],
    probes: list[PublisherProbe],
) -> Snapshot:
    """Publishers, then the server, then subscribers: each a few milliseconds after the last."""
    probed = [p.snapshot() for p in probes]
    stats = await control.call("/stats")
    return Snapshot(
        sent={pid: n for p in probed for pid, n in p.sent.items()},
        producers=stats.get("producers", {}),
        counters=[c.snapshot() for s in subscribers for c in s.counters],
        probes=probed,
        nft=rig.counters(),
    )


def delta(a: dict[str, int], b: dict[str, int], key: str) -> int | None:
    if key not in a or key not in b:
        return None
    return b[key] - a[key]


def text(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


@dataclass
class Phase:
    loss: float
    start: Snapshot
    end: Snapshot


def report_phase(
    phase: Phase,
    publishers: list[Publisher],
    subscribers: list[Subscriber],
) -> tuple[int, int]:
    a, b = phase.start, phase.end
    window = b.at - a.at
    rule = f"{phase.loss:g}% random drop" if phase.loss else "none"
    print(f"\nloss rule {rule}; window {window:.1f} s")
    names = {}
    for i, publisher in enumerate(publishers, 1):
        for producer_id in publisher.producer_ids:
            names[producer_id] = f"pub{i}"
    header = (
        f"{'stream':<22}{'pub sent':>10}{'srv recv':>10}{'recovered':>11}{'sub recv':>10}"
        f"{'sub lost':>10}{'sub loss':>10}{'sub dup':>9}"
    )
    print(header)
    print("-" * len(header))
    total_expected = total_lost = 0
    stream = 0
    for si, subscriber in enumerate(subscribers, 1):
        for ci, counter in enumerate(subscriber.counters):
            s0, s1 = a.counters[stream], b.counters[stream]
            stream += 1
            producer_id = subscriber.producer_ids[ci] if ci < len(subscriber.producer_ids) else ""
            p0, p1 = a.producers.get(producer_id, {}), b.producers.get(producer_id, {})
            expected, lost = window_loss(s0, s1)
            total_expected, total_lost = total_expected + expected, total_lost + lost
            label = f"sub{si} <- {names.get(producer_id, '?')} {counter.kind}"
            print(
                f"{label:<22}{text(delta(a.sent, b.sent, producer_id)):>10}"
                f"{text(delta(p0, p1, 'packets_received')):>10}"
                f"{text(delta(p0, p1, 'packets_recovered')):>11}"
                f"{s1.packets - s0.packets:>10,}{lost:>10,}"
                f"{100 * lost / max(1, expected):>9.2f}%"
                f"{s1.duplicates - s0.duplicates:>9,}"
            )
    print(
        f"all subscribed streams: {total_lost:,} of {total_expected:,} packets lost "
        f"({100 * total_lost / max(1, total_expected):.3f}%)"
    )
    udp = delta(a.nft, b.nft, "publisher_udp")
    dropped = delta(a.nft, b.nft, "publisher_dropped")
    if udp:
        print(
            f"nft in the namespace: {udp:,} UDP packets from the publishers, {dropped or 0:,} "
            f"dropped ({100 * (dropped or 0) / udp:.2f}%)"
        )
    print("upstream feedback, per Producer (server) and per publisher (its aiortc peer):")
    for i, publisher in enumerate(publishers, 1):
        for producer_id in publisher.producer_ids:
            p0, p1 = a.producers.get(producer_id, {}), b.producers.get(producer_id, {})
            sender = publisher.senders.get(producer_id)
            kind = sender.kind if sender is not None else "?"
            shown = ("nacks_sent", "packets_recovered", "packets_dropped")
            figures = [f"{key} {text(delta(p0, p1, key))}" for key in shown]
            # any other counter media/ keeps that moved in the window, by its own name
            skip = {*shown, "packets_received", "bitrate"}
            figures += [
                f"{key} {delta(p0, p1, key):,}"
                for key in sorted(p1)
                if key not in skip and delta(p0, p1, key)
            ]
            print(f"  pub{i} {kind} Producer: {', '.join(figures)}")
        q0, q1 = a.probes[i - 1], b.probes[i - 1]
        print(
            f"  pub{i} peer: {q1.nack_packets - q0.nack_packets:,} NACK packets received asking "
            f"for {q1.nacked_seqs - q0.nacked_seqs:,} packets; "
            f"{q1.resent - q0.resent:,} packets sent again (RTX or plain)"
        )
    return total_expected, total_lost


# --- the run -----------------------------------------------------------------------------------


async def measure(rig: Rig, args: argparse.Namespace, clips: list[EncodedClip]) -> None:
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    netns = ("ip", "netns", "exec", rig.ns)
    proc, port = await start_server("ours", False, address=rig.server_addr, prefix=netns)
    rig.server_pid = proc.pid
    control: Control | None = None
    publishers: list[Publisher] = []
    subscribers: list[Subscriber] = []
    phases: list[Phase] = []
    try:
        async with aiohttp.ClientSession() as session:
            control = Control(session, f"http://{rig.server_addr}:{port}")
            try:
                # ICE gathers when the local description is set: publishers on .1, then
                # subscribers on .3 (aioice's address list is process-wide)
                seam.restrict_host_addresses([rig.pub_addr])
                for _ in range(args.publishers):
                    publishers.append(await start_publisher(control, clips))
                probes = [PublisherProbe(p) for p in publishers]
                producer_ids = [i for p in publishers for i in p.producer_ids]
                seam.restrict_host_addresses([rig.sub_addr])
                for _ in range(args.subscribers):
                    subscribers.append(await start_subscriber(control, producer_ids))
                silent = await wait_until_flowing(subscribers, limit_s=15)
                if silent:
                    print(f"warning: {silent} subscribed streams deliver nothing", flush=True)
                await asyncio.sleep(args.warmup)  # pacing the warm-up, not polling
                for loss in (0.0, args.loss):
                    print(f"window with the loss rule at {loss:g}% ...", flush=True)
                    rig.set_loss(loss)
                    start = await snapshot(rig, control, subscribers, probes)
                    await asyncio.sleep(args.seconds)  # the measurement window
                    end = await snapshot(rig, control, subscribers, probes)
                    phases.append(Phase(loss, start, end))
                rig.set_loss(0)
            finally:
                await close_all(publishers, subscribers)
                await stop_server(proc, control)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    print(
        "\npub sent: originals the publisher's peer sent; srv recv: the Producer's "
        "packets_received\n(recovered included); recovered: its packets_recovered; sub recv, "
        "sub lost: counted by the\nsubscriber (sequence gaps; sub dup: packets it got twice, "
        "not counted as received).\nSnapshots are taken publisher, "
        "server, subscriber, a few ms apart."
    )
    results = [report_phase(phase, publishers, subscribers) for phase in phases]
    if len(results) == 2:
        (e0, l0), (e1, l1) = results
        print(
            f"\nsubscriber loss: {100 * l0 / max(1, e0):.3f}% with the rule off, "
            f"{100 * l1 / max(1, e1):.3f}% with {args.loss:g}% random loss on the publishers' leg"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loss", type=float, default=5.0, help="percent dropped, default 5")
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--subscribers", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0, help="each window")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds skipped first")
    parser.add_argument("--audio", action="store_true", help="each publisher adds Opus audio")
    args = parser.parse_args()
    if args.publishers < 1 or args.subscribers < 1 or args.seconds <= 0:
        parser.error("publishers, subscribers and seconds must be positive")
    if not 0 < args.loss < 100:
        parser.error("--loss is a percentage between 0 and 100")
    return args


def main() -> None:
    args = parse_args()
    if os.geteuid() != 0:
        sys.exit("publisher_loss.py must run as root: it creates a network namespace and veths")
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"missing tools: {', '.join(missing)}")
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"aiortc {aiortc.__version__}, {run('nft', '--version').strip()}")
    # SIGTERM outside the event loop unwinds like Ctrl-C, through the teardown below
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    rig = Rig()
    interrupted = False
    try:
        rig.setup()
        print(
            f"rig: namespace {rig.ns}, veth {rig.root_if}/{rig.ns_if}; server {rig.server_addr}, "
            f"publishers {rig.pub_addr}, subscribers {rig.sub_addr}"
        )
        clips = [encode_vp8()]
        if args.audio:
            clips.append(encode_opus())
        print(
            f"load: {args.publishers} publishers x {args.subscribers} subscribers, pre-encoded "
            f"{clips[0].bitrate / 1000:.0f} kbit/s VP8{' + Opus' if args.audio else ''}; "
            f"warm-up {args.warmup:g} s, two windows of {args.seconds:g} s\n",
            flush=True,
        )
        asyncio.run(measure(rig, args, clips))
    except (KeyboardInterrupt, asyncio.CancelledError):
        interrupted = True
    finally:
        rig.teardown()
        print(f"removed namespace {rig.ns} and veth {rig.root_if}", flush=True)
    if interrupted:
        sys.exit("interrupted; the server, the namespace and the veth pair were removed")


if __name__ == "__main__":
    main()
