"""RoomMedia: one room's media, addressed by participant id.

This is the whole API the signaling layer uses, the same whether the room's Router lives in this
process or in a media worker process (media/pool.py): every argument and result is plain data.
Who is subscribed to whom is decided here, next to the Router, so that a worker can fan out a new
Producer to every subscriber without a round trip.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Literal

from .active_speaker import ActiveSpeakerObserver
from .consumer import Consumer, codecs_match
from .errors import InvalidState, ServerBusy
from .liveness import SILENCE_S, LivenessWatch, Lost
from .paths import Switch
from .producer import Producer
from .router import Router
from .tap import TapFactory
from .transport import Transport

logger = logging.getLogger(__name__)

#: ``on_event(name, data)``: "negotiation_needed" {participant_id} when a subscriber's tracks
#: changed; "active_speaker" {participant_id | None}; "media_lost" {participant_id, role,
#: reason, silent_ms} when a participant's path died (its Transports are then closed, as for a
#: participant expected back); "media_connected" {participant_id} when, after that, one of its
#: new Transports connected; "video_paused" {participant_id (the subscriber), publisher_id,
#: paused} when a subscriber's video of a publisher stops, or starts again, because its network
#: cannot carry it; "path_switched" {participant_id, role, transport_id, from_address,
#: to_address, silent_ms, at} when one of its Transports moved off a dead network path onto
#: another provider's; "path_state" {address, alive, transport_id} when a Transport's paths on
#: one of our addresses stop or start answering its probes.
EventSink = Callable[[str, dict[str, Any]], None]

#: How long a reconnecting participant's streams wait for it before they are renegotiated away.
REJOIN_GRACE_S = 10.0


class RoomMedia:
    """Publish and subscribe Transports per participant on one Router."""

    def __init__(
        self,
        router: Router,
        on_event: EventSink,
        *,
        tap_factory: TapFactory | None = None,
        tap_options: dict[str, Any] | None = None,
        busy: Callable[[], bool] | None = None,
        silence_s: float = SILENCE_S,
    ) -> None:
        self.router = router
        self._busy = busy
        self._on_event = on_event
        self._tap_factory = tap_factory
        self._tap_options = dict(tap_options or {})
        self._publish: dict[str, Transport] = {}
        self._subscribe: dict[str, Transport] = {}
        self._speaker = ActiveSpeakerObserver(lambda: router.producers, self._speaker_changed)
        # Consumers of a participant who is expected back, by (participant id, kind): when it
        # publishes again they carry its new tracks on the same streams (no jump, no new tile).
        self._orphans: dict[tuple[str, str], list[Consumer]] = {}
        self._orphan_timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._muted: dict[str, set[str]] = {}  # kind -> participant ids
        self._liveness = LivenessWatch(self._transports, self._transport_lost, silence_s=silence_s)
        self._recovering: set[str] = set()  # participants whose media was lost

    def _transports(self) -> list[Transport]:
        return [*self._publish.values(), *self._subscribe.values()]

    def _new_transport(
        self, participant_id: str, role: Literal["publish", "subscribe"]
    ) -> Transport:
        transport = self.router.create_transport(role, app_data={"participant_id": participant_id})
        self._liveness.watch(transport)
        transport.on_connection_state(self._transport_state)
        transport.on_path_switch(self._path_switched)
        transport.on_path_state(self._path_state)
        return transport

    def _path_state(self, transport: Transport, address: str, alive: bool) -> None:
        if self._current(transport) is not None and not self.closed:
            self._on_event(
                "path_state", {"address": address, "alive": alive, "transport_id": transport.id}
            )

    def _path_switched(self, transport: Transport, switch: Switch) -> None:
        """The Transport moved off a dead path onto another provider's (media/paths.py)."""
        participant_id = self._current(transport)
        if participant_id is None or self.closed:
            return
        self._on_event(
            "path_switched",
            {
                "participant_id": participant_id,
                "role": transport.role,
                "transport_id": transport.id,
                "from_address": switch.from_address,
                "to_address": switch.to_address,
                "silent_ms": round(switch.silent_s * 1000),
                "at": switch.at,
            },
        )

    def _current(self, transport: Transport) -> str | None:
        """The participant whose current Transport ``transport`` is, else None."""
        participant_id = str(transport.app_data.get("participant_id"))
        transports = self._publish if transport.role == "publish" else self._subscribe
        return participant_id if transports.get(participant_id) is transport else None

    def _transport_lost(self, transport: Transport, lost: Lost) -> None:
        """A participant's path died: close its Transports (the others keep its streams, paused,
        for when it is back) and say so; its page makes new connections."""
        participant_id = self._current(transport)
        if participant_id is None or self.closed:
            return
        logger.warning(
            "media path lost: participant %s %s transport %s: %s after %.1f s of silence "
            "(%d datagrams received, connection %s, dtls %s)",
            participant_id,
            transport.role,
            transport.id,
            lost.reason,
            lost.silent_s,
            lost.packets,
            transport.connection_state,
            transport.dtls_state,
        )
        self._recovering.add(participant_id)
        detached = self._detach(participant_id, returning=True)
        self._on_event(
            "media_lost",
            {
                "participant_id": participant_id,
                "role": transport.role,
                "reason": lost.reason,
                "silent_ms": round(lost.silent_s * 1000),
            },
        )
        for closing in detached:
            self._spawn(closing.close())

    def _transport_state(self, transport: Transport, state: str) -> None:
        if state != "connected":
            return
        participant_id = self._current(transport)
        if participant_id is not None and participant_id in self._recovering:
            self._recovering.discard(participant_id)
            self._on_event("media_connected", {"participant_id": participant_id})

    def knows(self, participant_id: str) -> bool:
        """The participant has (or had a moment ago, and is expected back) media here."""
        return (
            participant_id in self._publish
            or participant_id in self._subscribe
            or participant_id in self._recovering
            or any(key[0] == participant_id for key in self._orphans)
        )

    async def admit(self, participant_id: str) -> None:
        """Refuse a new participant while this worker is overloaded (``server_busy``); those
        already in the room (or coming back to it) are never refused."""
        if self._busy is not None and not self.knows(participant_id) and self._busy():
            raise ServerBusy("the media server is busy; try again shortly")

    def _speaker_changed(self, producer: Producer | None) -> None:
        participant = producer.app_data.get("participant_id") if producer is not None else None
        self._on_event("active_speaker", {"participant_id": participant})

    @property
    def id(self) -> str:
        return self.router.id

    @property
    def closed(self) -> bool:
        return self.router.closed

    async def publish(self, participant_id: str, offer_sdp: str) -> str:
        """Apply a participant's (re-)offer; new tracks go to every other subscriber."""
        transport = self._publish.get(participant_id)
        if transport is None or transport.closed:
            transport = self._new_transport(participant_id, "publish")
            self._publish[participant_id] = transport
        result = await self.router.publish(transport, offer_sdp)
        for producer in result.added:
            producer.app_data["participant_id"] = participant_id
            if self._tap_factory is not None:
                tap = self._tap_factory(producer, self._tap_options)
                if tap is not None:
                    producer.add_tap(tap)
            adopted = self._adopt_orphans(participant_id, producer)
            for subscriber_id, subscription in self._subscribe.items():
                if subscriber_id != participant_id and subscription.id not in adopted:
                    self._consume(subscription, producer)
            if participant_id in self._muted.get(producer.kind, set()):
                producer.pause()
        return result.answer_sdp

    def _adopt_orphans(self, participant_id: str, producer: Producer) -> set[str]:
        """Hand ``producer`` to the Consumers its participant's previous track left behind.

        Returns the ids of the subscribe Transports served that way.
        """
        served: set[str] = set()
        orphans = self._orphans.pop((participant_id, producer.kind), [])
        for consumer in orphans:
            if consumer.closed or not codecs_match(consumer.producer.codec, producer.codec):
                self._spawn(consumer.close())
                continue
            consumer.switch_producer(producer)
            consumer.resume()
            served.add(consumer.transport_id)
        if not any(key[0] == participant_id for key in self._orphans):
            timer = self._orphan_timers.pop(participant_id, None)
            if timer is not None:
                timer.cancel()
        return served

    async def subscribe(self, participant_id: str) -> None:
        """Start receiving every other participant's tracks, now and as they come."""
        if participant_id in self._subscribe:
            raise InvalidState("already subscribed")
        transport = self._new_transport(participant_id, "subscribe")
        self._subscribe[participant_id] = transport
        transport.on_negotiation_needed(
            lambda _t: self._on_event("negotiation_needed", {"participant_id": participant_id})
        )
        for producer in self.router.producers:
            if producer.app_data.get("participant_id") != participant_id:
                self._consume(transport, producer)

    def _consume(self, transport: Transport, producer: Producer) -> None:
        if transport.closed or producer.closed:
            return
        consumer = self.router.consume(
            transport,
            producer,
            app_data={"participant_id": producer.app_data.get("participant_id")},
        )
        subscriber = transport.app_data.get("participant_id")
        consumer.on_congestion(
            lambda c, paused: self._on_event(
                "video_paused",
                {
                    "participant_id": subscriber,
                    "publisher_id": c.producer.app_data.get("participant_id"),
                    "paused": paused,
                },
            )
        )

    async def needs_offer(self, participant_id: str) -> bool:
        transport = self._subscribe.get(participant_id)
        return transport is not None and not transport.closed and transport.needs_negotiation

    async def create_offer(self, participant_id: str) -> dict[str, Any] | None:
        """The next subscribe offer ``{sdp, tracks}``, or None while there is nothing to send."""
        transport = self._subscription(participant_id)
        if not transport.consumers and not transport.inactive_mids():
            return None
        sdp = await transport.create_offer()
        return {"sdp": sdp, "tracks": describe_tracks(transport)}

    async def apply_answer(self, participant_id: str, answer_sdp: str) -> None:
        await self._subscription(participant_id).apply_answer(answer_sdp)

    async def add_ice_candidate(
        self,
        participant_id: str,
        target: Literal["publish", "subscribe"],
        candidate: dict[str, Any] | None,
    ) -> None:
        transports = self._publish if target == "publish" else self._subscribe
        transport = transports.get(participant_id)
        if transport is None or transport.closed:
            raise InvalidState(f"no {target} connection yet")
        await transport.add_ice_candidate(candidate)

    def _subscription(self, participant_id: str) -> Transport:
        transport = self._subscribe.get(participant_id)
        if transport is None or transport.closed:
            raise InvalidState("not subscribed")
        return transport

    async def set_muted(self, participant_id: str, kind: str, muted: bool) -> None:
        """Stop (or restart) forwarding the participant's tracks of ``kind``: a mute is kept
        by the server, whatever the client still sends."""
        muted_ids = self._muted.setdefault(kind, set())
        if muted:
            muted_ids.add(participant_id)
        else:
            muted_ids.discard(participant_id)
        transport = self._publish.get(participant_id)
        for producer in transport.producers if transport is not None else []:
            if producer.kind == kind:
                producer.pause() if muted else producer.resume()

    async def restart(self, participant_id: str) -> None:
        """The participant's page found its connections dead: close them as a lost path is
        closed (the others keep its streams), so that it can make new ones."""
        self._recovering.add(participant_id)
        for transport in self._detach(participant_id, returning=True):
            await transport.close()

    async def leave(self, participant_id: str, *, returning: bool = False) -> None:
        """Close the participant's Transports; the others renegotiate its tracks away.

        ``returning``: the participant is expected back (a reconnect). For
        :data:`REJOIN_GRACE_S` the others' Consumers of its tracks stay, paused, and carry its
        tracks again when it publishes; only then, if it did not, are they renegotiated away.
        """
        for transport in self._detach(participant_id, returning=returning):
            await transport.close()
        if not returning:
            self._recovering.discard(participant_id)
            for kind in self._muted.values():
                kind.discard(participant_id)

    def _detach(self, participant_id: str, *, returning: bool) -> list[Transport]:
        """Take the participant's Transports out of the room (the caller closes them)."""
        detached = []
        publish = self._publish.pop(participant_id, None)
        if publish is not None:
            if returning:
                self._keep_orphans(participant_id, publish)
            detached.append(publish)
        subscribe = self._subscribe.pop(participant_id, None)
        if subscribe is not None:
            detached.append(subscribe)
        return detached

    def _keep_orphans(self, participant_id: str, publish: Transport) -> None:
        for producer in publish.producers:
            kept = self._orphans.setdefault((participant_id, producer.kind), [])
            for consumer in producer.consumers:
                consumer.pause()
                producer._remove_consumer(consumer)
                kept.append(consumer)
        previous = self._orphan_timers.pop(participant_id, None)
        if previous is not None:
            previous.cancel()
        self._orphan_timers[participant_id] = asyncio.get_running_loop().call_later(
            REJOIN_GRACE_S, self._expire_orphans, participant_id
        )

    def _expire_orphans(self, participant_id: str) -> None:
        self._orphan_timers.pop(participant_id, None)
        for key in [k for k in self._orphans if k[0] == participant_id]:
            for consumer in self._orphans.pop(key):
                self._spawn(consumer.close())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def datagram_stats(self) -> dict[str, dict[str, dict[str, int]]]:
        """Datagrams dropped at each participant's transports, by reason
        (``{participant_id: {"publish": {...}, "subscribe": {...}}}``; docs/hostile-input.md)."""
        stats: dict[str, dict[str, dict[str, int]]] = {}
        for role, transports in (("publish", self._publish), ("subscribe", self._subscribe)):
            for participant_id, transport in transports.items():
                stats.setdefault(participant_id, {})[role] = transport.datagram_stats()
        return stats

    def dump(self) -> dict[str, Any]:
        return {
            **self.router.dump(),
            "publishers": sorted(self._publish),
            "subscribers": sorted(self._subscribe),
        }

    async def close(self) -> None:
        await self._liveness.close()
        await self._speaker.close()
        for timer in self._orphan_timers.values():
            timer.cancel()
        self._orphan_timers.clear()
        for consumers in self._orphans.values():
            for consumer in consumers:
                await consumer.close()
        self._orphans.clear()
        for task in tuple(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._publish.clear()
        self._subscribe.clear()
        await self.router.close()


def describe_tracks(transport: Transport) -> list[dict[str, Any]]:
    """Which subscribe mid carries whose track, for the client to build its tiles."""
    tracks = [
        {
            "mid": c.mid,
            "participant_id": c.app_data.get("participant_id"),
            "kind": c.kind,
            "active": True,
        }
        for c in transport.consumers
    ]
    tracks += [
        {"mid": mid, "participant_id": None, "kind": None, "active": False}
        for mid in transport.inactive_mids()
    ]
    return tracks
