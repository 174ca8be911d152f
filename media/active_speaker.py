"""Active speaker: who is loudest in a room, from the audio-level header extension (RFC 6464).

Publishers (browsers, aiortc) put each audio packet's level in dBov into a header extension, so
the server learns it without decoding. Every interval the observer averages each audio
Producer's levels and names the loudest one above a threshold; a new speaker must be clearly
louder than the current one (hysteresis), so the event does not flicker between two voices.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .producer import Producer

INTERVAL_S = 0.3
#: Quieter than this (dBov) is silence.
THRESHOLD_DBOV = -50.0
#: A new speaker must be this much louder (dB) than a current one who is still speaking.
HYSTERESIS_DB = 3.0


class ActiveSpeakerObserver:
    """Calls ``on_change(producer or None)`` when the room's loudest audio Producer changes."""

    def __init__(
        self,
        producers: Callable[[], list[Producer]],
        on_change: Callable[[Producer | None], None],
        interval_s: float = INTERVAL_S,
    ) -> None:
        self._producers = producers
        self._on_change = on_change
        self._interval = interval_s
        self._current: Producer | None = None
        self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def current(self) -> Producer | None:
        return self._current

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)  # a sampling period, not a wait for a condition
            self.observe()

    def observe(self) -> None:
        levels = {
            p: level
            for p in self._producers()
            if p.kind == "audio" and not p.closed and (level := p.take_audio_level()) is not None
        }
        loudest = max(levels, key=lambda p: levels[p], default=None)
        if loudest is not None and levels[loudest] < THRESHOLD_DBOV:
            loudest = None
        current = self._current
        current_level = levels.get(current) if current is not None else None
        speaking = current_level is not None and current_level >= THRESHOLD_DBOV
        chosen: Producer | None
        if loudest is None or loudest is current or not speaking:
            chosen = loudest
        elif levels[loudest] >= current_level + HYSTERESIS_DB:  # type: ignore[operator]
            chosen = loudest
        else:
            chosen = current
        if chosen is not self._current:
            self._current = chosen
            self._on_change(chosen)

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
