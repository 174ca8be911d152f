"""Router: one room's media. Holds its Transports, Producers and Consumers."""

from __future__ import annotations

import logging
from typing import Any

from .consumer import Consumer
from .errors import ClosedError
from .producer import Producer
from .tracking import track
from .transport import PublishResult, Role, Transport

logger = logging.getLogger(__name__)


class Router:
    """The media of one room, as mediasoup has it: ``producer -> consumers`` and back."""

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
        self._consumers: dict[str, Consumer] = {}
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

    def create_transport(self, role: Role, app_data: dict[str, Any] | None = None) -> Transport:
        self._check_open()
        transport = Transport(
            role,
            ice_servers=self._ice_servers,
            ice_addresses=self._ice_addresses,
            app_data=app_data,
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
            producer.on_close(lambda p: self._producers.pop(p.id, None))
        return result

    def consume(
        self, transport: Transport, producer: Producer, app_data: dict[str, Any] | None = None
    ) -> Consumer:
        self._check_open()
        if producer.id not in self._producers:
            raise ClosedError(f"producer {producer.id} is not in router {self.id}")
        consumer = transport.consume(producer, app_data=app_data)
        self._consumers[consumer.id] = consumer
        consumer.on_close(lambda c: self._consumers.pop(c.id, None))
        return consumer

    def dump(self) -> dict[str, Any]:
        """What this Router holds, for diagnostics and leak checks."""
        return {
            "id": self.id,
            "closed": self._closed,
            "transports": sorted(self._transports),
            "producers": {p.id: sorted(c.id for c in p.consumers) for p in self.producers},
            "consumers": {c.id: c.producer.id for c in self._consumers.values()},
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
        self._consumers.clear()
        logger.info("router closed", extra={"room_id": self.id})
