"""RoomMedia: one room's media, addressed by participant id.

It implements the room API (media/room_api.py), the whole of what the signaling layer uses, the
same whether the room's Router lives in this process or in a media worker process
(media/pool.py, media/remote.py): every argument and result is plain data.
Who is subscribed to whom is decided here, next to the Router, so that a worker can fan out a new
Producer to every subscriber without a round trip.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

from .active_speaker import ActiveSpeakerObserver
from .consumer import Consumer, codecs_match
from .errors import InvalidState, ServerBusy
from .graph import TapFactory
from .liveness import SILENCE_S, LivenessWatch, Lost
from .paths import Switch
from .producer import Producer
from .room_api import RoomApi
from .router import Router
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
#: How long closing the room waits for the closes it had started before (then cancels them).
CLOSE_WAIT_S = 5.0
#: A participant publishing on one connection per provider (``publish(path=...)``): its streams
#: move onto the other connection's track of the same kind when the one carrying them has been
#: silent this long and the other one delivers (docs/providers.md, "Hot standby").
LANE_SILENCE_S = 0.15
#: Packets the other connection must have delivered since the current one's last, besides the
#: silence: after an event-loop stall each socket's queued datagrams are read one per loop pass,
#: so the first packet read then may be the other's while the current one's wait their turn.
LANE_MIN_PACKETS = 3


class _LaneWatch:
    """A sink on each Producer of a per-provider publish connection: when it last received,
    and a call on every packet (the room moves the participant's streams when it must)."""

    layers: tuple[int, ...] = (0,)  # the lowest layer is always sent; it is enough to hear
    estimate: int | None = None

    def __init__(self, producer: Producer, on_packet: Callable[[Producer], None]) -> None:
        self.id = uuid.uuid4().hex
        self.heard_at: float | None = None
        self._producer = producer
        self._on_packet = on_packet

    async def on_rtp(self, packet: Any, layer: int, ntp: int, send_time: bytes) -> None:
        self.heard_at = time.monotonic()
        self._on_packet(self._producer)

    def on_sender_report(self, ntp_timestamp: int, rtp_timestamp: int) -> None:
        """Nothing to do."""

    def on_resume(self) -> None:
        """Nothing to do."""

    async def close(self) -> None:
        """Nothing to release."""


class RoomMedia(RoomApi):
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
        # a participant that publishes on one connection per provider: its path 0 connection is
        # in ``_publish``, its path 1 connection here; ``_source`` is, per (participant, kind),
        # the Producer its subscribers' streams carry now (the other one is the hot standby)
        self._standby: dict[str, Transport] = {}
        self._source: dict[tuple[str, str], Producer] = {}
        self._lane_watches: dict[str, _LaneWatch] = {}  # by producer id
        self._lane_of: dict[str, int] = {}  # participant id -> the path its streams are on
        self._others_since: dict[tuple[str, str], int] = {}  # packets of the other path since
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
        self._priority: dict[str, int] = {}  # participant id -> its video's priority

    def _transports(self) -> list[Transport]:
        """What the liveness watch judges by silence: of a participant publishing on a
        connection per provider, only the one its streams are on (the standby may be silent)."""
        publishing = [
            t
            for pid, t in (*self._publish.items(), *self._standby.items())
            if pid not in self._lane_of or self._lane_of[pid] == t.app_data.get("path")
        ]
        return [*publishing, *self._subscribe.values()]

    def _new_transport(
        self,
        participant_id: str,
        role: Literal["publish", "subscribe"],
        path: int | None = None,
    ) -> Transport:
        app_data: dict[str, Any] = {"participant_id": participant_id}
        addresses = None
        if path is not None:
            app_data["path"] = path
            addresses = [self.router.ice_addresses[path]]
        transport = self.router.create_transport(role, app_data=app_data, ice_addresses=addresses)
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
        if transport.role == "publish":
            mine = (self._publish.get(participant_id), self._standby.get(participant_id))
        else:
            mine = (self._subscribe.get(participant_id), None)
        return participant_id if transport in mine else None

    def _other_lane(self, participant_id: str, transport: Transport) -> Transport | None:
        """The participant's other per-provider publish connection, if ``transport`` is one."""
        if transport.role != "publish" or transport.app_data.get("path") is None:
            return None
        lanes = (self._publish.get(participant_id), self._standby.get(participant_id))
        others = [t for t in lanes if t is not None and t is not transport and not t.closed]
        return others[0] if others else None

    def _transport_lost(self, transport: Transport, lost: Lost) -> None:
        """A participant's path died: close its Transports (the others keep its streams, paused,
        for when it is back) and say so; its page makes new connections."""
        participant_id = self._current(transport)
        if participant_id is None or self.closed:
            return
        other = self._other_lane(participant_id, transport)
        if other is not None and other.connection_state == "connected":
            # one provider's connection of the pair: the other carries on; the page builds this
            # one again when its provider is back
            logger.warning(
                "media path lost: participant %s publish path %s: %s; the other provider's "
                "connection carries its media",
                participant_id,
                transport.app_data.get("path"),
                lost.reason,
            )
            self._retire_lane(participant_id, transport)
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
            or participant_id in self._standby
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

    async def media_addresses(self) -> list[str]:
        """The addresses Transports gather on; ``publish(path=p)`` uses the ``p``-th alone."""
        return list(self.router.ice_addresses)

    async def publish(self, participant_id: str, offer_sdp: str, path: int | None = None) -> str:
        """Apply a participant's (re-)offer; new tracks go to every other subscriber.

        ``path``: a new connection on that provider's address alone (0 or 1), one of the
        participant's two publish connections; a previous one on that path is replaced.
        """
        if path is not None:
            return await self._publish_lane(participant_id, offer_sdp, path)
        transport = self._publish.get(participant_id)
        if transport is None or transport.closed:
            transport = self._new_transport(participant_id, "publish")
            self._publish[participant_id] = transport
        result = await self.router.publish(transport, offer_sdp)
        for producer in result.added:
            producer.app_data["participant_id"] = participant_id
            self._tap(producer)
            self._fan_out(participant_id, producer)
            if participant_id in self._muted.get(producer.kind, set()):
                producer.pause()
        return result.answer_sdp

    def _tap(self, producer: Producer) -> None:
        if self._tap_factory is not None:
            tap = self._tap_factory(producer, self._tap_options)
            if tap is not None:
                self.router.attach(producer, tap)

    def _fan_out(self, participant_id: str, producer: Producer) -> None:
        """A new track of the participant's: to its old streams (a re-join), else to everyone."""
        adopted = self._adopt_orphans(participant_id, producer)
        for subscriber_id, subscription in self._subscribe.items():
            if subscriber_id != participant_id and subscription.id not in adopted:
                self._consume(subscription, producer)

    # --- a publish connection per provider (hot standby) -------------------------------------

    async def _publish_lane(self, participant_id: str, offer_sdp: str, path: int) -> str:
        if not 0 <= path < min(len(self.router.ice_addresses), 2):
            raise InvalidState(f"no media path {path}")
        lanes = self._publish if path == 0 else self._standby
        previous = lanes.pop(participant_id, None)
        if previous is not None:  # the page built this path's connection again
            self._retire_lane(participant_id, previous, popped=True)
        transport = self._new_transport(participant_id, "publish", path)
        lanes[participant_id] = transport
        self._lane_of.setdefault(participant_id, path)
        result = await self.router.publish(transport, offer_sdp)
        for producer in result.added:
            producer.app_data["participant_id"] = participant_id
            producer.app_data["path"] = path
            producer.app_data["transport_id"] = transport.id
            self._tap(producer)
            watch = _LaneWatch(producer, self._lane_packet)
            self._lane_watches[producer.id] = watch
            producer.on_close(lambda p: self._lane_watches.pop(p.id, None))
            self.router.attach(producer, watch)
            key = (participant_id, producer.kind)
            current = self._source.get(key)
            if current is None or current.closed:
                self._source[key] = producer
                self._fan_out(participant_id, producer)
            if participant_id in self._muted.get(producer.kind, set()):
                producer.pause()
        return result.answer_sdp

    def _alternate(self, producer: Producer) -> bool:
        """A standby Producer: its participant's streams are carried by the other path's."""
        if producer.app_data.get("path") is None:
            return False
        key = (str(producer.app_data.get("participant_id")), producer.kind)
        return self._source.get(key) is not producer

    def _heard_at(self, producer: Producer) -> float | None:
        watch = self._lane_watches.get(producer.id)
        return None if watch is None else watch.heard_at

    def _lane_packet(self, producer: Producer) -> None:
        """A packet on a per-provider Producer: if the streams of its kind are on the other
        path and that one has been silent for :data:`LANE_SILENCE_S`, move them here."""
        participant_id = str(producer.app_data.get("participant_id"))
        key = (participant_id, producer.kind)
        current = self._source.get(key)
        if current is producer or self.closed:
            self._others_since[key] = 0
            return
        others = self._others_since[key] = self._others_since.get(key, 0) + 1
        now = time.monotonic()
        heard = None if current is None or current.closed else self._heard_at(current)
        if current is not None and heard is not None:
            if now - heard < LANE_SILENCE_S:
                return
            # video goes on one path at a time (the page moves the camera): its packets here
            # are the news; audio goes on both: this path must have kept delivering, and the
            # silent one must have nothing waiting (our loop stalled: it is read behind)
            if producer.kind == "audio" and (
                others < LANE_MIN_PACKETS or self._unread(participant_id, current)
            ):
                return
        silent_s = 0.0 if heard is None else now - heard
        self._others_since[key] = 0
        self._move_streams(key, producer)
        path = int(producer.app_data.get("path") or 0)
        previous = self._lane_of.get(participant_id)
        self._lane_of[participant_id] = path
        if previous is not None and previous != path:
            addresses = self.router.ice_addresses
            self._on_event(
                "path_switched",
                {
                    "participant_id": participant_id,
                    "role": "publish",
                    "transport_id": producer.app_data.get("transport_id", ""),
                    "from_address": addresses[previous],
                    "to_address": addresses[path],
                    "silent_ms": round(silent_s * 1000),
                    "at": time.time(),
                },
            )

    def _unread(self, participant_id: str, producer: Producer) -> bool:
        """Datagrams wait to be read on the connection that carries ``producer``."""
        lanes = (self._publish.get(participant_id), self._standby.get(participant_id))
        return any(t is not None and producer in t.producers and t.unread() for t in lanes)

    def _move_streams(self, key: tuple[str, str], producer: Producer) -> None:
        """Carry the streams of ``key`` from the current Producer on ``producer``."""
        current = self._source.get(key)
        self._source[key] = producer
        consumers = [] if current is None else self.router.consumers_of(current)
        if not consumers:
            self._fan_out(key[0], producer)
            return
        for consumer in consumers:
            self.router.switch(consumer, producer)  # numbering continues; video on a keyframe

    def _retire_lane(
        self, participant_id: str, transport: Transport, *, popped: bool = False
    ) -> None:
        """Close one of the participant's per-provider publish connections; the streams it
        carried move to the other one's tracks (or wait for the participant, as on a re-join)."""
        if not popped:
            for lanes in (self._publish, self._standby):
                if lanes.get(participant_id) is transport:
                    del lanes[participant_id]
        other = self._other_lane(participant_id, transport)
        for producer in transport.producers:
            key = (participant_id, producer.kind)
            if self._source.get(key) is not producer:
                continue
            sibling = next(
                (p for p in (other.producers if other else []) if p.kind == producer.kind),
                None,
            )
            if sibling is not None and not sibling.closed:
                self._move_streams(key, sibling)
                self._lane_of[participant_id] = int(sibling.app_data.get("path") or 0)
            else:
                del self._source[key]
                self._keep_orphans(participant_id, [producer])
        self._spawn(transport.close())

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
            self.router.switch(consumer, producer)
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
            if producer.app_data.get("participant_id") != participant_id and not self._alternate(
                producer
            ):
                self._consume(transport, producer)

    def _consume(self, transport: Transport, producer: Producer) -> None:
        if transport.closed or producer.closed:
            return
        consumer = self.router.consume(
            transport,
            producer,
            app_data={"participant_id": producer.app_data.get("participant_id")},
        )
        consumer.priority = self._priority.get(str(producer.app_data.get("participant_id")), 1)
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
        target: Literal["publish", "subscribe", "standby"],
        candidate: dict[str, Any] | None,
    ) -> None:
        transports = {"publish": self._publish, "standby": self._standby}.get(
            target, self._subscribe
        )
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
        transports = (self._publish.get(participant_id), self._standby.get(participant_id))
        for producer in [p for t in transports if t is not None for p in t.producers]:
            if producer.kind == kind:
                producer.pause() if muted else producer.resume()

    async def set_priority(self, participant_id: str, priority: int) -> None:
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
            raise InvalidState("a priority is an integer from 0 to 9")
        self._priority[participant_id] = priority
        for producer in self.router.producers:
            if producer.app_data.get("participant_id") == participant_id:
                for consumer in self.router.consumers_of(producer):
                    consumer.priority = priority

    async def restart(self, participant_id: str) -> None:
        """The participant's page found its connections dead: close them as a lost path is
        closed (the others keep its streams), so that it can make new ones."""
        self._recovering.add(participant_id)
        for transport in self._detach(participant_id, returning=True):
            await transport.close()

    async def media_intact(self, participant_id: str) -> bool:
        """The participant has connections here and none of them is closed (see the room API);
        a per-provider publish connection being built again beside the other counts as open."""
        if participant_id in self._recovering or self.closed:
            return False
        transports = [
            t
            for t in (
                self._publish.get(participant_id),
                self._standby.get(participant_id),
                self._subscribe.get(participant_id),
            )
            if t is not None
        ]
        return bool(transports) and not any(t.closed for t in transports)

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
            self._priority.pop(participant_id, None)
            for kind in self._muted.values():
                kind.discard(participant_id)

    def _detach(self, participant_id: str, *, returning: bool) -> list[Transport]:
        """Take the participant's Transports out of the room (the caller closes them)."""
        detached = []
        publish = self._publish.pop(participant_id, None)
        standby = self._standby.pop(participant_id, None)
        published = [t for t in (publish, standby) if t is not None]
        if returning and published:
            producers = [p for t in published for p in t.producers if not self._alternate(p)]
            self._keep_orphans(participant_id, producers)
        detached.extend(published)
        for key in [k for k in self._source if k[0] == participant_id]:
            del self._source[key]
            self._others_since.pop(key, None)
        self._lane_of.pop(participant_id, None)
        subscribe = self._subscribe.pop(participant_id, None)
        if subscribe is not None:
            detached.append(subscribe)
        return detached

    def _keep_orphans(self, participant_id: str, producers: list[Producer]) -> None:
        for producer in producers:
            kept = self._orphans.setdefault((participant_id, producer.kind), [])
            for consumer in self.router.consumers_of(producer):
                consumer.pause()
                self.router.detach(consumer)
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

    async def dump(self) -> dict[str, Any]:
        return {
            **self.router.dump(),
            "publishers": sorted(self._publish),
            "standbys": sorted(self._standby),
            "subscribers": sorted(self._subscribe),
            "priorities": dict(sorted(self._priority.items())),
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
        # the closes spawned before (a lost path's Transports, expired Consumers) finish: one
        # cancelled halfway would leave its Producers open for good (a second close of a
        # Transport returns at once)
        pending = tuple(self._tasks)
        if pending:
            _done, late = await asyncio.wait(pending, timeout=CLOSE_WAIT_S)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        self._publish.clear()
        self._standby.clear()
        self._source.clear()
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
