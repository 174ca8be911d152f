"""Router: one room's media. Holds its Transports, Producers and the media graph.

The graph is mediasoup's: ``producer -> sinks`` and ``sink -> producer``. A sink is a
subscriber's Consumer or a recorder (media/graph.py); the Router attaches and detaches them,
and each Producer forwards to the sinks its Router gave it.
"""

from __future__ import annotations

import logging
from typing import Any

from .consumer import Consumer
from .errors import ClosedError
from .graph import Sink
from .producer import Producer
from .tracking import track
from .transport import PublishResult, Role, Transport

logger = logging.getLogger(__name__)


class Router:
    """The media of one room, as mediasoup has it: ``producer -> sinks`` and back."""

    def __init__(
        self,
        room_id: str,
        *,
        ice_servers: list[dict[str, Any]] | None = None,
        ice_addresses: list[str] | None = None,
    ) -> None:
        self.id = room_id
        self._ice_servers = list(ice_servers or [])
        self._ice_addresses = list(ice_addresses or [])
        self._transports: dict[str, Transport] = {}
        self._producers: dict[str, Producer] = {}
        # the graph: producer id -> {sink id: sink}, sink id -> producer
        self._sinks: dict[str, dict[str, Sink]] = {}
        self._source: dict[str, Producer] = {}
        self._closed = False
        track(self)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def producers(self) -> list[Producer]:
        return list(self._producers.values())

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"router {self.id} is closed")

    @property
    def ice_addresses(self) -> tuple[str, ...]:
        """The addresses Transports gather on by default (one per network provider)."""
        return tuple(self._ice_addresses)

    def create_transport(
        self,
        role: Role,
        app_data: dict[str, Any] | None = None,
        *,
        ice_addresses: list[str] | None = None,
    ) -> Transport:
        """A Transport gathering on ``ice_addresses`` (default: the Router's); one given
        address (a participant's connection per provider) is watched by a path monitor too."""
        self._check_open()
        transport = Transport(
            role,
            ice_servers=self._ice_servers,
            ice_addresses=self._ice_addresses if ice_addresses is None else ice_addresses,
            app_data=app_data,
            watch_paths=ice_addresses is not None,
        )
        self._transports[transport.id] = transport
        transport.on_close(lambda t: self._transports.pop(t.id, None))
        return transport

    async def publish(self, transport: Transport, offer_sdp: object) -> PublishResult:
        """Apply a publisher's offer on ``transport`` and register the Producers it made."""
        self._check_open()
        result = await transport.publish(offer_sdp)
        for producer in result.added:
            if self._closed:
                await producer.close()
                continue
            self._producers[producer.id] = producer
            producer.on_close(self._producer_closed)
        return result

    def _producer_closed(self, producer: Producer) -> None:
        """Its sinks closed with it (or were detached before): forget its part of the graph."""
        self._producers.pop(producer.id, None)
        for sink_id in self._sinks.pop(producer.id, {}):
            if self._source.get(sink_id) is producer:
                del self._source[sink_id]

    def consume(
        self, transport: Transport, producer: Producer, app_data: dict[str, Any] | None = None
    ) -> Consumer:
        self._check_open()
        if producer.id not in self._producers:
            raise ClosedError(f"producer {producer.id} is not in router {self.id}")
        consumer = transport.consume(producer, app_data=app_data)
        consumer.on_close(self.detach)
        self.attach(producer, consumer)
        return consumer

    def attach(self, producer: Producer, sink: Sink) -> None:
        """Feed ``sink`` from ``producer`` (a recorder, say), from its next packet on.

        A sink has one Producer at a time: attached to another, it leaves the previous one. The
        sink closes with the Producer (unless detached before).
        """
        self._check_open()
        if producer.closed or self._producers.get(producer.id) is not producer:
            raise ClosedError(f"producer {producer.id} is not in router {self.id}")
        previous = self._source.get(sink.id)
        if previous is producer:
            return
        if previous is not None:
            self.detach(sink)
        self._source[sink.id] = producer
        sinks = self._sinks.setdefault(producer.id, {})
        sinks[sink.id] = sink
        producer._feed(tuple(sinks.values()))
        if producer.sender_report is not None:
            sink.on_sender_report(*producer.sender_report)

    def detach(self, sink: Sink) -> Producer | None:
        """Stop feeding ``sink`` (closing it is the caller's business); its Producer, if any."""
        producer = self._source.pop(sink.id, None)
        if producer is None:
            return None
        sinks = self._sinks.get(producer.id, {})
        sinks.pop(sink.id, None)
        if not sinks:
            self._sinks.pop(producer.id, None)
        producer._feed(tuple(sinks.values()))
        return producer

    def switch(self, consumer: Consumer, producer: Producer) -> None:
        """Carry ``producer`` on ``consumer``'s stream (the same participant's track after a
        re-join): the subscriber sees one stream go on, numbering continuous."""
        self.attach(producer, consumer)
        consumer._switched_to(producer)

    def producer_of(self, sink: Sink) -> Producer | None:
        return self._source.get(sink.id)

    def sinks_of(self, producer: Producer) -> list[Sink]:
        return list(self._sinks.get(producer.id, {}).values())

    def consumers_of(self, producer: Producer) -> list[Consumer]:
        """The subscribers' Consumers fed by ``producer`` (its other sinks left out)."""
        return [s for s in self.sinks_of(producer) if isinstance(s, Consumer)]

    def dump(self) -> dict[str, Any]:
        """What this Router holds, for diagnostics and leak checks."""
        return {
            "id": self.id,
            "closed": self._closed,
            "transports": sorted(self._transports),
            "producers": {p.id: sorted(self._sinks.get(p.id, {})) for p in self.producers},
            # sink -> producer: the subscribers' Consumers, and the other sinks (recorders)
            "consumers": {
                sink_id: p.id
                for sink_id, p in self._source.items()
                if isinstance(self._sinks[p.id][sink_id], Consumer)
            },
            "sinks": {
                sink_id: p.id
                for sink_id, p in self._source.items()
                if not isinstance(self._sinks[p.id][sink_id], Consumer)
            },
        }

    async def close(self) -> None:
        """Close every Transport (and so every Producer and Consumer). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for transport in tuple(self._transports.values()):
            await transport.close()
        self._transports.clear()
        self._producers.clear()
        self._sinks.clear()
        self._source.clear()
        logger.info("router closed", extra={"room_id": self.id})
