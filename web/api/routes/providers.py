"""Network providers for operators (R28, R31): each provider's state and the last failover."""

from __future__ import annotations

from typing import Literal

from consult.authorization import authorize

from ...keys import SIGNALING
from ..call import Call
from ..fields import Output
from ..registry import api


class FailoverOut(Output):
    at: float
    from_provider: str
    to_provider: str
    gap_ms: int
    participant_id: str
    transport: str


class ProviderOut(Output):
    name: str
    address: str
    signaling_url: str
    state: Literal["up", "down", "unknown"]
    since: float
    failovers_from: int
    last_failover: FailoverOut | None


class ProviderList(Output):
    providers: list[ProviderOut]
    last_failover: FailoverOut | None


def _failover(data: dict[str, object] | None) -> FailoverOut | None:
    if data is None:
        return None
    return FailoverOut(
        at=float(data["at"]),  # type: ignore[arg-type]
        from_provider=str(data["from"]),
        to_provider=str(data["to"]),
        gap_ms=int(data["gap_ms"]),  # type: ignore[call-overload]
        participant_id=str(data["participant_id"]),
        transport=str(data["transport"]),
    )


@api.operation("GET", "/providers", action="system.providers", tag="meta")
async def list_providers(call: Call) -> ProviderList:
    """Each network provider of this process: up, down or unknown (no path reported yet), since
    when, how many media paths failed over off it, and the last failover (times are Unix
    seconds)."""
    await authorize(call.db, call.me, "system.providers", object_type="network_providers")
    health = call.request.app[SIGNALING].providers
    last = health.last_failover
    return ProviderList(
        providers=[
            ProviderOut(
                name=p["name"],
                address=p["address"],
                signaling_url=p["signaling_url"],
                state=p["state"],
                since=p["since"],
                failovers_from=p["failovers_from"],
                last_failover=_failover(p["last_failover"]),
            )
            for p in health.snapshot()
        ],
        last_failover=_failover(last.as_dict() if last else None),
    )
