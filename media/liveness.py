"""Liveness: notice a Transport whose path died, instead of waiting for ICE consent to expire.

A Transport is lost when, while packets should flow on it, none came for a while, or when its
ICE or DTLS transport failed (consent expired, a DTLS error). Measured under overload before
this existed: consent expired on 188 of 256 connections and nobody was told.

When do packets *have to* flow? Only then is silence evidence of a dead path:

* a **publish** Transport that carries at least one Producer receives its RTP. A muted
  publisher still sends: the page disables the track (a browser then sends black frames and
  silence) and the server pauses the Producer, so the packets still arrive. Its RTCP sender
  reports come too.
* a **subscribe** Transport with at least one accepted stream receives the subscriber's RTCP
  receiver reports, whether or not media reaches it (a browser reports each receive stream on
  a timer: about every second for video, about every 5 s, randomised by 0.5-1.5x, for audio;
  aiortc every 0.5-1.5 s). With audio streams only, the allowed silence is therefore longer.
* before "connected", or with nothing to carry, nothing is expected (ICE and DTLS have their
  own timeouts); the silence clock starts when packets become expected, so a Transport that
  just connected or just got its first stream has the whole interval.

The counter read is aiortc's own per-transport datagram count (media/_aiortc_seam.py): nothing
is added to the receive path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .transport import Transport

logger = logging.getLogger(__name__)

#: Silence after which a Transport that should receive packets is declared lost.
SILENCE_S = 2.0
#: The same for a subscribe Transport that carries audio streams only (browsers report audio
#: reception every ~5 s, randomised up to 7.5 s).
AUDIO_ONLY_SILENCE_S = 8.0
#: More silence allowed while another provider's path answers (a browser is moving onto it).
FAILOVER_GRACE_S = 2.5
#: How often the counters are read.
CHECK_INTERVAL_S = 0.25
#: A check that comes this much later than its interval found the event loop stalled (a busy
#: machine, a long close): the datagrams of that time wait unread in the socket buffers, so the
#: stall is not the peer's silence and is taken off every clock.
STALL_S = 0.5


@dataclass(frozen=True)
class Lost:
    """Why a Transport was declared lost."""

    reason: str  # "silence" | "ice_failed" | "dtls_failed" | "connection_closed"
    silent_s: float = 0.0
    packets: int = 0  # datagrams received over the Transport's life


def expected_silence(
    transport: Transport,
    *,
    silence_s: float = SILENCE_S,
    audio_only_s: float = AUDIO_ONLY_SILENCE_S,
) -> float | None:
    """How long ``transport`` may stay silent now, or None while no packet has to come."""
    if transport.closed or transport.connection_state != "connected":
        return None
    # The peer still answers on another provider's path (media/paths.py): a browser moves its
    # own sending path there by itself, which takes Chrome up to ~3.6 s; give it that time
    # rather than close connections that are about to carry media again.
    # (Also after our side moved: the peer answers our probes on the new path while its own
    # packets still go to the dead one.)
    paths = transport.paths
    grace = FAILOVER_GRACE_S if paths is not None and paths.moving(silence_s) else 0.0
    if transport.role == "publish":
        return silence_s + grace if any(not p.closed for p in transport.producers) else None
    accepted = [c for c in transport.consumers if c.ready and not c.closed]
    if not accepted:
        return None
    return (silence_s if any(c.kind == "video" for c in accepted) else audio_only_s) + grace


def failure_reason(transport: Transport, state: str) -> str | None:
    """The loss a connection state means, or None if it is not one (or we closed it).

    "closed" without our close: the peer ended DTLS (a page that closed its connection), or
    aioice closed the ICE connection when consent expired; aiortc then closes the whole peer
    connection and the two are no longer told apart.
    """
    if transport.closed or state not in ("failed", "closed"):
        return None
    if state == "closed":
        return "connection_closed"
    return "dtls_failed" if transport.dtls_state == "failed" else "ice_failed"


@dataclass
class _Clock:
    packets: int
    since: float  # when the count last moved, or packets became expected


class LivenessWatch:
    """Reads the packet counters of a set of Transports and reports the silent ones once.

    ``transports()`` lists what to watch (read on every check); ``on_lost(transport, lost)`` is
    called once per Transport, from the watch's task or from a state callback.
    """

    def __init__(
        self,
        transports: Callable[[], Iterable[Transport]],
        on_lost: Callable[[Transport, Lost], None],
        *,
        silence_s: float = SILENCE_S,
        audio_only_s: float = AUDIO_ONLY_SILENCE_S,
        interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        self._transports = transports
        self._on_lost = on_lost
        self._silence_s = silence_s
        self._audio_only_s = audio_only_s
        self._interval_s = interval_s
        self._clocks: dict[str, _Clock] = {}
        self._reported: set[str] = set()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._last_check: float | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def watch(self, transport: Transport) -> None:
        """Also report ``transport`` when its ICE or DTLS transport fails; start the task."""
        transport.on_connection_state(self._state_changed)
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _state_changed(self, transport: Transport, state: str) -> None:
        reason = failure_reason(transport, state)
        if reason is not None:
            self._report(transport, Lost(reason, packets=transport.datagrams_received))

    def _report(self, transport: Transport, lost: Lost) -> None:
        if transport.id in self._reported or self._closed:
            return
        self._reported.add(transport.id)
        self._on_lost(transport, lost)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            self.check(time.monotonic())

    def check(self, now: float) -> None:
        """One pass over the counters (the task calls it; tests may too)."""
        if self._last_check is not None:
            stalled = now - self._last_check - self._interval_s
            if stalled >= STALL_S:
                logger.info("liveness check %.1f s late: the event loop stalled", stalled)
                for late in self._clocks.values():
                    late.since += stalled
        self._last_check = now
        seen: set[str] = set()
        for transport in tuple(self._transports()):
            seen.add(transport.id)
            allowed = expected_silence(
                transport, silence_s=self._silence_s, audio_only_s=self._audio_only_s
            )
            if allowed is None:
                self._clocks.pop(transport.id, None)
                continue
            packets = transport.datagrams_received
            clock = self._clocks.get(transport.id)
            if clock is None or packets != clock.packets:
                self._clocks[transport.id] = _Clock(packets, now)
                continue
            silent = now - clock.since
            if silent >= allowed:
                self._clocks.pop(transport.id, None)
                self._report(transport, Lost("silence", silent_s=silent, packets=packets))
        for gone in set(self._clocks) - seen:
            del self._clocks[gone]
        self._reported &= seen

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._clocks.clear()
