"""TURN and ICE servers for clients, and coturn per network provider (R28, R31).

The embedded default runs no TURN server: clients get no ICE servers and connect directly. With
``turn_providers`` configured, each participant gets, for every provider, a TURN server entry with
its own time-limited credential (``credentials``); ``coturn`` writes each provider's coturn
configuration from the same settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .coturn import TurnConfigError, TurnProvider, coturn_config
from .credentials import CredentialError, TurnCredential, mint_credential
from .providers import Failover, NetworkProvider, ProviderHealth, check_providers

__all__ = [
    "CredentialError",
    "Failover",
    "IceServerSource",
    "NetworkProvider",
    "ProviderHealth",
    "TurnConfigError",
    "TurnCredential",
    "TurnProvider",
    "check_providers",
    "coturn_config",
    "mint_credential",
]


@dataclass(frozen=True)
class IceServerSource:
    """Builds a participant's ``iceServers``: the configured static entries, then one TURN entry
    per provider with a credential minted for that participant."""

    static: tuple[dict[str, Any], ...] = ()
    providers: tuple[TurnProvider, ...] = ()
    secret: str = ""
    ttl_s: int = 12 * 3600

    def __post_init__(self) -> None:
        if self.providers and not self.secret:
            raise TurnConfigError("turn_providers need turn_secret")
        names = [p.name for p in self.providers]
        if len(set(names)) != len(names):
            raise TurnConfigError("TURN provider names must be unique")

    def for_participant(
        self, participant_id: str, *, now: float | None = None
    ) -> list[dict[str, Any]]:
        servers = [dict(s) for s in self.static]
        if not self.providers:
            return servers
        credential = mint_credential(self.secret, participant_id, self.ttl_s, now=now)
        for provider in self.providers:
            urls = [f"turn:{provider.host}:{provider.port}?transport=udp"]
            if provider.tls_port:
                urls.append(f"turns:{provider.host}:{provider.tls_port}?transport=tcp")
            servers.append(
                {
                    "urls": urls,
                    "username": credential.username,
                    "credential": credential.password,
                }
            )
        return servers
