"""Path monitor: keep every network path of one ICE session alive and move off a dead one fast.

The server has one address per network provider (R28, R31), so each Transport's ICE session
has a path (local socket -> remote candidate) per provider. aioice sends only on the selected
pair and checks its consent every ~5 s, declaring it dead after ~30 s; stock aiortc lost 3.6 s /
6.3 s of media on a provider cut or never recovered (research note). This monitor:

* probes every path with a signed binding request every ``interval_s`` (200 ms): the standby
  paths stay alive (their NAT bindings and the peer's consent) and we know which ones answer;
* declares the selected path dead when, for ``dead_after_s`` (400 ms), neither a probe was
  answered on it nor any datagram came in on its socket ("no media and no response to its own
  probes");
* then selects, at once, a path on another socket (another provider) that answered a probe
  round after the selected one last showed life: aioice sends only on the selected pair and
  receives on every socket, so DTLS and SRTP carry on untouched;
* audio first: every audio packet is also sent on the best standby path (one that answered
  within :data:`USABLE_S`: on a loaded machine answers come late, and a standby judged by the
  400 ms alone dropped out of use, stopping the copies), so a cut costs audio little while
  the dead path is being noticed (the receiver's SRTP replay check drops the second copy);
  video resumes on the standby after the switch (and a keyframe);
* reports each switch (from, to, how long the old path had been silent) and each local
  address's state (alive when any of its paths answers), which signaling turns into provider
  health and a timeline event.

A path that comes back is not switched back to: it is the standby from then on, so the next cut
(of the other provider) fails back to it.

Costs: one ~100-byte request and response per path per interval (about 4 kbit/s each way per
path), each audio stream sent twice (~40-50 kbit/s of Opus more per stream), one task per
Transport.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import _aiortc_seam as seam
from . import _ice_seam as ice

logger = logging.getLogger(__name__)

#: How often each path is probed.
PROBE_INTERVAL_S = 0.2
#: Silence (no answered probe, no datagram) after which the selected path is dead.
DEAD_AFTER_S = 0.4
#: How long a browser takes to move its own sending path after ours moved (Chrome: its 2.5 s
#: receive timeout, up to ~3.6 s measured).
PEER_MOVE_S = 4.0
#: A path whose last answer is at most this old still takes the audio copies and may be moved
#: to. An answer counts as fresh (the path is "up" for provider health) only within
#: ``dead_after_s``, but on a loaded machine answers come late (our loop, or the page, behind):
#: judged by that alone, the standby flickered out of use, the copies stopped, and a cut then
#: cost audio until the next answer. A copy sent down a path that did die meanwhile costs ~50
#: kbit/s for this long.
USABLE_S = 2.0
#: A judgment timed for the moment the selected path would have been silent ``dead_after_s``
#: is skipped when it runs later than this (our loop stalled: its sockets are read behind).
ON_TIME_S = 0.05


@dataclass(frozen=True)
class Switch:
    """The selected path moved: local addresses (one per provider) and the silence before."""

    from_address: str
    to_address: str
    silent_s: float
    at: float  # time.time()


@dataclass
class _Path:
    socket: ice.Socket
    remote: tuple[str, int]
    last_ok: float | None = None
    in_flight: int = 0


@dataclass
class _SocketClock:
    last_rx: dict[tuple[str, int], float] = field(default_factory=dict)  # by source address


@dataclass
class PathState:
    alive: bool | None = None  # None until first known
    changed_at: float = field(default_factory=time.time)


class PathMonitor:
    """Watches the ICE paths of one connection; see the module docstring.

    ``connection()`` returns the aioice connection or None while there is none yet;
    ``on_switch(switch)`` and ``on_state(address, alive)`` are called from the monitor's task.
    """

    def __init__(
        self,
        connection: Callable[[], Any],
        *,
        on_switch: Callable[[Switch], None] | None = None,
        on_state: Callable[[str, bool], None] | None = None,
        interval_s: float = PROBE_INTERVAL_S,
        dead_after_s: float = DEAD_AFTER_S,
        duplicate: Callable[[bytes], bool] | None = None,
    ) -> None:
        self._connection = connection
        self._duplicate = duplicate
        self._standby: _Path | None = None
        self._on_switch = on_switch
        self._on_state = on_state
        self._interval_s = interval_s
        self._dead_after_s = dead_after_s
        self._paths: dict[tuple[str, int, str, int], _Path] = {}
        self._sockets: dict[tuple[str, int], _SocketClock] = {}
        self._states: dict[str, PathState] = {}
        self._task: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Task[None]] = set()
        self._started_at = 0.0
        self._sending = False
        self._last_tick: float | None = None
        self._judge_timer: asyncio.TimerHandle | None = None
        self.lagged_passes = 0
        self.switches: list[Switch] = []

    # --- reading -------------------------------------------------------------------------------

    def selected(self) -> tuple[str, int, str, int] | None:
        """The pair media is sent on now: (local host, port, remote host, port)."""
        connection = self._connection()
        return None if connection is None else ice.selected(connection)

    def states(self) -> dict[str, bool | None]:
        """Each local address: whether any of its paths answers (None: not known yet)."""
        return {address: s.alive for address, s in self._states.items()}

    # --- running -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._started_at = time.monotonic()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._probes) if t is not None]
        self._task = None
        if self._judge_timer is not None:
            self._judge_timer.cancel()
            self._judge_timer = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._probes.clear()

    async def _run(self) -> None:
        while True:
            try:
                self.tick(time.monotonic())
            except Exception:  # one bad pass must not end the watch
                logger.exception("path monitor pass failed")
            await asyncio.sleep(self._interval_s)

    def tick(self, now: float) -> None:
        """One pass: refresh the paths, send this round's probes, judge the selected path."""
        connection = self._connection()
        if connection is None or not ice.sending(connection):
            return
        if not self._sending:
            self._sending = True
            self._started_at = now  # silence counts from when there is a path to watch
        # A loop that stalled (a busy process) has not read its sockets either: what looks like
        # silence is then no evidence; probe, and judge on the next pass.
        lagged = self._last_tick is not None and (
            now - self._last_tick > self._interval_s + self._dead_after_s / 2
        )
        self._last_tick = now
        self._refresh(connection)
        if self._duplicate is not None:
            ice.copy_sends(connection, self._copy_to)
        for path in self._paths.values():
            if path.in_flight < 3:
                self._send_probe(connection, path)
        if lagged:
            self.lagged_passes += 1
        else:
            self._judge(connection, now)
            self._judge_when_due(connection, now)
        self._standby = self._choose_standby(connection, now)

    def _judge_when_due(self, connection: Any, now: float) -> None:
        """Judge the selected path again when it will have been silent ``dead_after_s``, if that
        comes before the next pass: a dead path is then left 0.4 s after it went quiet, not up
        to a probe interval later (measured in the rig: the move came 0.45-0.6 s after a cut,
        the largest part of a video stall)."""
        current = ice.selected(connection)
        on = self._paths.get(current) if current is not None else None
        if on is None or self._judge_timer is not None:
            return
        wait = self._heard(on) + self._dead_after_s - now
        if not 0 < wait < self._interval_s:
            return  # dead already (judged), or the next pass comes first
        due = now + wait + 0.005
        self._judge_timer = asyncio.get_running_loop().call_later(
            wait + 0.005, self._judge_on_time, due
        )

    def _judge_on_time(self, due: float) -> None:
        self._judge_timer = None
        now = time.monotonic()
        connection = self._connection()
        if connection is None or not ice.sending(connection):
            return
        if now - due > ON_TIME_S:
            self.lagged_passes += 1  # our loop stalled: what looks like silence is no evidence
            return
        try:
            self._judge(connection, now)
            self._standby = self._choose_standby(connection, now)
        except Exception:  # one bad pass must not end the watch
            logger.exception("path monitor pass failed")

    def answering(self, now: float | None = None) -> bool:
        """Some path of this connection answers our probes now (the peer is there)."""
        at = time.monotonic() if now is None else now
        return any(self._alive(path, at) for path in self._paths.values())

    def moving(self, within_s: float) -> bool:
        """The peer may be moving its own sending path: one of our paths answers now, or this
        side switched within ``within_s`` + :data:`PEER_MOVE_S`."""
        last = self.switches[-1].at if self.switches else None
        return self.answering() or (
            last is not None and time.time() - last < within_s + PEER_MOVE_S
        )

    def standby(self) -> tuple[str, int, str, int] | None:
        """The live path copies go on (another provider than the selected one), if any."""
        path = self._standby
        return None if path is None else (path.socket.host, path.socket.port, *path.remote)

    def _copy_to(self, data: bytes) -> tuple[ice.Socket, tuple[str, int]] | None:
        path = self._standby
        if path is None or self._duplicate is None or not self._duplicate(data):
            return None
        return path.socket, path.remote

    def _others(self, current: tuple[str, int, str, int], now: float) -> list[_Path]:
        """Live paths other than ``current``: another local address (ours on another provider)
        or another remote address (the peer's on another provider), whichever this side has;
        the ones that differ in both first, then the freshest."""
        others = [
            p
            for p in self._paths.values()
            if self._usable(p, now) and (p.socket.host != current[0] or p.remote[0] != current[2])
        ]
        others.sort(
            key=lambda p: (p.socket.host != current[0] and p.remote[0] != current[2], p.last_ok),
            reverse=True,
        )
        return others

    def _choose_standby(self, connection: Any, now: float) -> _Path | None:
        current = ice.selected(connection)
        if current is None:
            return None
        others = self._others(current, now)
        return others[0] if others else None

    def _refresh(self, connection: Any) -> None:
        for socket in ice.local_sockets(connection):
            key = (socket.host, socket.port)
            if key not in self._sockets:
                clock = _SocketClock()
                self._sockets[key] = clock
                ice.count_datagrams(socket, functools.partial(_touch, clock))
                self._states.setdefault(socket.host, PathState())
            for remote in ice.remote_addresses(connection):
                if (":" in socket.host) != (":" in remote[0]):
                    continue
                path_key = (socket.host, socket.port, *remote)
                if path_key not in self._paths:
                    self._paths[path_key] = _Path(socket, remote)

    def _send_probe(self, connection: Any, path: _Path) -> None:
        path.in_flight += 1

        async def run() -> None:
            try:
                if await ice.probe(connection, path.socket, path.remote):
                    path.last_ok = time.monotonic()
            finally:
                path.in_flight -= 1

        task = asyncio.get_running_loop().create_task(run())
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    def _heard(self, path: _Path) -> float:
        """When this path last showed life: an answered probe, or a datagram from its remote
        address on its socket."""
        clock = self._sockets.get((path.socket.host, path.socket.port))
        rx = clock.last_rx.get(path.remote) if clock else None
        times = [t for t in (path.last_ok, rx) if t is not None]
        return max(times) if times else self._started_at

    def _alive(self, path: _Path, now: float) -> bool:
        return path.last_ok is not None and now - path.last_ok < self._dead_after_s

    def _usable(self, path: _Path, now: float) -> bool:
        """Answered recently enough to carry the copies or be moved to (:data:`USABLE_S`)."""
        window = max(USABLE_S, self._dead_after_s)
        return path.last_ok is not None and now - path.last_ok < window

    def _judge(self, connection: Any, now: float) -> None:
        by_host: dict[str, bool] = {}
        for path in self._paths.values():
            by_host[path.socket.host] = by_host.get(path.socket.host, False) or self._alive(
                path, now
            )
        for host, alive in by_host.items():
            self._set_state(host, alive, now)

        current = ice.selected(connection)
        if current is None:
            return
        on = self._paths.get(current)
        silent = now - (self._heard(on) if on else self._started_at)
        if silent < self._dead_after_s:
            return
        # a path to move to answered a probe round after the current one last showed life:
        # evidence that it works while this one does not (a peer that froze stopped on every
        # path at once, and two silent paths are not swapped back and forth)
        since = now - silent + self._interval_s / 2
        candidates = [
            p for p in self._others(current, now) if p.last_ok is not None and p.last_ok >= since
        ]
        if not candidates:
            return
        best = candidates[0]
        if not ice.select(connection, best.socket, best.remote):
            return
        switch = Switch(current[0], best.socket.host, silent, time.time())
        self.switches.append(switch)
        logger.warning(
            "ICE path switched",
            extra={
                "from_address": switch.from_address,
                "to_address": switch.to_address,
                "silent_ms": round(silent * 1000),
            },
        )
        if self._on_switch is not None:
            self._on_switch(switch)

    def _set_state(self, host: str, alive: bool, now: float) -> None:
        state = self._states.setdefault(host, PathState())
        if state.alive is alive:
            return
        if state.alive is None and not alive and now - self._started_at < self._dead_after_s:
            return  # not probed long enough to call it dead
        state.alive = alive
        state.changed_at = time.time()
        if self._on_state is not None:
            self._on_state(host, alive)


def _touch(clock: _SocketClock, source: tuple[str, int]) -> None:
    clock.last_rx[source] = time.monotonic()


def use_addresses(pc: Any, addresses: list[str] | tuple[str, ...]) -> None:
    """Make the aiortc peer connection ``pc`` gather host candidates on ``addresses`` only
    (before it has offered or answered). For peers built outside a Transport, e.g. a client."""
    ice.gather_on(pc, addresses)


def monitor_peer_connection(pc: Any, **options: Any) -> PathMonitor:
    """A PathMonitor over the (bundled) ICE connection of the aiortc peer connection ``pc``,
    copying its audio onto the standby path; call ``start()`` once it is connected.
    ``options`` as PathMonitor's."""

    def connection() -> Any:
        transports = seam.dtls_transports(pc)
        return ice.ice_connection(transports[0]) if transports else None

    options.setdefault("duplicate", audio_packets(pc))
    return PathMonitor(connection, **options)


def audio_packets(pc: Any) -> Callable[[bytes], bool]:
    """A test for the datagrams ``pc`` sends: is this an RTP packet of an audio stream? (The RTP
    header's payload type is not encrypted by SRTP.)"""
    cache: dict[str, Any] = {"key": None, "types": frozenset()}

    def is_audio(data: bytes) -> bool:
        if len(data) < 12 or not 128 <= data[0] <= 191 or 192 <= data[1] <= 223:
            return False  # not RTP (DTLS, STUN, or RTCP)
        transceivers = pc.getTransceivers()
        key = tuple((t.mid, t.kind, len(seam.negotiated_codecs(t))) for t in transceivers)
        if key != cache["key"]:
            cache["key"] = key
            cache["types"] = frozenset(
                codec.payloadType
                for t in transceivers
                if t.kind == "audio"
                for codec in seam.negotiated_codecs(t)
            )
        return (data[1] & 0x7F) in cache["types"]

    return is_audio
