"""Network providers (R28, R31): what the server has on each, and how each one is doing.

A hospital server has one address on each of (at least) two network providers. Configuration
names each provider: the media server's address on it (every Transport gathers one ICE host
candidate per provider), the public URL pages reach signaling through on it, and (separately,
``[[turn_providers]]``) its coturn.

``ProviderHealth`` is what operators see: each provider's state, when it last changed, how many
paths failed over off it, and the last failover. It is fed by the media's path monitors (each
Transport probes its path on every provider every 200 ms, media/paths.py): a path that moved
off a provider marks it down, a path on it that answers again marks it up. Each change is
logged.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .coturn import TurnConfigError

logger = logging.getLogger(__name__)

#: Transports' reports kept per provider (the oldest are forgotten first).
MAX_REPORTS = 1000


@dataclass(frozen=True)
class NetworkProvider:
    """One network provider as the server sits on it."""

    name: str
    address: str  # the media server's address on this provider (ICE host candidates)
    signaling_url: str = ""  # e.g. https://a.hospital.example: pages reconnect through it

    @classmethod
    def from_mapping(cls, data: dict[str, object]) -> NetworkProvider:
        """From a ``[[providers]]`` TOML table; refuses unknown keys and bad values."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise TurnConfigError(f"unknown provider keys: {', '.join(sorted(unknown))}")
        name, address = str(data.get("name", "")), str(data.get("address", ""))
        url = str(data.get("signaling_url", ""))
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise TurnConfigError("a provider needs a name of letters, digits, - or _")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise TurnConfigError(f"provider {name}: address must be an IP address") from None
        if url and urlsplit(url).scheme not in ("http", "https"):
            raise TurnConfigError(f"provider {name}: signaling_url must be http(s)")
        return cls(name=name, address=address, signaling_url=url.rstrip("/"))


def check_providers(providers: Sequence[NetworkProvider]) -> None:
    names = [p.name for p in providers]
    addresses = [p.address for p in providers]
    if len(set(names)) != len(names):
        raise TurnConfigError("provider names must be unique")
    if len(set(addresses)) != len(addresses):
        raise TurnConfigError("provider addresses must be unique")


@dataclass
class Failover:
    at: float
    from_provider: str
    to_provider: str
    gap_ms: int
    participant_id: str = ""
    transport: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "from": self.from_provider,
            "to": self.to_provider,
            "gap_ms": self.gap_ms,
            "participant_id": self.participant_id,
            "transport": self.transport,
        }


@dataclass
class _State:
    provider: NetworkProvider
    state: str = "unknown"  # "up" | "down" | "unknown" (no path has reported yet)
    since: float = 0.0
    failovers_from: int = 0
    last_failover: Failover | None = None
    # the last word of each Transport on its paths here (transport id -> they answer)
    reports: OrderedDict[str, bool] = field(default_factory=OrderedDict)


@dataclass
class ProviderHealth:
    """Each provider's state, from the path monitors' reports (one per process)."""

    providers: Sequence[NetworkProvider] = ()
    clock: Callable[[], float] = time.time
    _states: dict[str, _State] = field(default_factory=dict)
    last_failover: Failover | None = None

    def __post_init__(self) -> None:
        check_providers(self.providers)
        now = self.clock()
        self._states = {p.address: _State(p, since=now) for p in self.providers}

    def name_of(self, address: str) -> str:
        """The provider an address of ours is on (the address itself if none is configured)."""
        state = self._states.get(address)
        return state.provider.name if state else address

    def path_switched(
        self,
        from_address: str,
        to_address: str,
        gap_ms: int,
        *,
        participant_id: str = "",
        transport: str = "",
        transport_id: str = "",
    ) -> Failover:
        """A Transport moved off ``from_address``'s provider onto ``to_address``'s."""
        failover = Failover(
            self.clock(),
            self.name_of(from_address),
            self.name_of(to_address),
            gap_ms,
            participant_id,
            transport,
        )
        self.last_failover = failover
        old = self._states.get(from_address)
        if old is not None:
            old.failovers_from += 1
            old.last_failover = failover
        if from_address != to_address and old is not None:
            old.reports[transport_id] = False
            if not any(old.reports.values()):
                self._set(from_address, "down")
        new = self._states.get(to_address)
        if new is not None:
            new.reports[transport_id] = True
        self._set(to_address, "up")
        logger.warning(
            "provider failover",
            extra={
                "from_provider": failover.from_provider,
                "to_provider": failover.to_provider,
                "gap_ms": gap_ms,
                "participant_id": participant_id,
                "transport": transport,
            },
        )
        return failover

    def path_state(self, address: str, alive: bool, transport_id: str = "") -> None:
        """A Transport's paths on ``address``'s provider answer again (or stopped answering).

        The provider is up while any Transport's paths on it answer, down when every Transport
        that reported says its paths there are silent."""
        state = self._states.get(address)
        if state is None:
            return
        state.reports[transport_id] = alive
        state.reports.move_to_end(transport_id)
        while len(state.reports) > MAX_REPORTS:
            state.reports.popitem(last=False)
        self._set(address, "up" if any(state.reports.values()) else "down")

    def _set(self, address: str, state: str) -> None:
        current = self._states.get(address)
        if current is None or current.state == state:
            return
        previous, current.state, current.since = current.state, state, self.clock()
        log = logger.warning if state == "down" else logger.info
        log(
            "provider %s: %s -> %s",
            current.provider.name,
            previous,
            state,
            extra={"provider": current.provider.name, "state": state},
        )

    def snapshot(self) -> list[dict[str, Any]]:
        """What operators see, one entry per provider in configuration order."""
        return [
            {
                "name": s.provider.name,
                "address": s.provider.address,
                "signaling_url": s.provider.signaling_url,
                "state": s.state,
                "since": s.since,
                "failovers_from": s.failovers_from,
                "last_failover": s.last_failover.as_dict() if s.last_failover else None,
            }
            for s in self._states.values()
        ]

    def signaling_urls(self) -> list[dict[str, str]]:
        """Each provider's signaling URL, for the page to reconnect through the other one."""
        return [
            {"provider": p.name, "url": p.signaling_url} for p in self.providers if p.signaling_url
        ]
