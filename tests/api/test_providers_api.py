"""Provider health over REST: operators and admins see it (the console's network tab), others
do not (R28, R31, R34)."""

from __future__ import annotations

from pathlib import Path

from apiclient import Clinic
from harness import start_server

from turn import NetworkProvider


async def test_operators_see_provider_health_over_rest_patients_do_not(tmp_path: Path):
    providers = (NetworkProvider("a", "127.0.0.1"), NetworkProvider("b", "127.0.0.2"))
    server = await start_server(tmp_path, providers=providers)
    try:
        clinic = await Clinic.open(server)
        operator = await clinic.person("operator")
        patient = await clinic.person("patient")
        health = server.signaling.providers
        health.path_state("127.0.0.1", True, "t")
        health.path_switched("127.0.0.1", "127.0.0.2", 450, transport="subscribe", transport_id="t")
        body = await operator.ok("GET", "/providers")
        assert [(p["name"], p["state"]) for p in body["providers"]] == [("a", "down"), ("b", "up")]
        assert body["last_failover"]["from_provider"] == "a"
        assert body["last_failover"]["gap_ms"] == 450
        # each provider's own view: since when, failovers off it, its last failover
        a, b = body["providers"]
        assert (a["failovers_from"], b["failovers_from"]) == (1, 0)
        assert a["last_failover"]["to_provider"] == "b" and b["last_failover"] is None
        assert a["last_failover"]["transport"] == "subscribe"
        assert a["since"] >= body["last_failover"]["at"] - 1
        # the administrators see it too (the console's network tab); no one else
        assert (await clinic.admin.ok("GET", "/providers"))["providers"] == body["providers"]
        for person in (patient, await clinic.person("doctor"), await clinic.person("nurse")):
            refused = await person.call("GET", "/providers")
            assert refused.status == 403, (person.role, refused)
        await clinic.close()
    finally:
        await server.stop()
