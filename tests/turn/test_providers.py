"""Network providers: configuration, health as operators see it, and the REST view (R28, R31)."""

from __future__ import annotations

from pathlib import Path

import pytest

from turn import NetworkProvider, ProviderHealth, TurnConfigError
from web.config import load_config


def test_providers_come_from_toml_and_give_the_media_its_addresses(tmp_path: Path):
    toml = tmp_path / "teleconsult.toml"
    toml.write_text(
        "[[providers]]\nname = 'telecom'\naddress = '10.0.0.1'\n"
        "signaling_url = 'https://a.example/'\n"
        "[[providers]]\nname = 'unicom'\naddress = '10.1.0.1'\n"
    )
    config = load_config(toml, environ={"TELECONSULT_PROVIDERS": "ignored"})
    assert config.providers == (
        NetworkProvider("telecom", "10.0.0.1", "https://a.example"),
        NetworkProvider("unicom", "10.1.0.1", ""),
    )
    assert config.media_addresses() == ["10.0.0.1", "10.1.0.1"]
    assert config.provider_health().signaling_urls() == [
        {"provider": "telecom", "url": "https://a.example"}
    ]
    # explicit ICE addresses win
    toml.write_text(
        "ice_addresses = ['10.9.0.1']\n[[providers]]\nname = 'telecom'\naddress = '10.0.0.1'\n"
    )
    assert load_config(toml, environ={}).media_addresses() == ["10.9.0.1"]


@pytest.mark.parametrize(
    "body, message",
    [
        ("name = 'a'\naddress = 'not-an-ip'\n", "IP address"),
        ("name = 'a b'\naddress = '10.0.0.1'\n", "name"),
        ("name = 'a'\naddress = '10.0.0.1'\nsignaling_url = 'ftp://x'\n", "http"),
        ("name = 'a'\naddress = '10.0.0.1'\ncolour = 'red'\n", "unknown provider keys"),
    ],
)
def test_bad_provider_settings_are_refused(tmp_path: Path, body: str, message: str):
    toml = tmp_path / "teleconsult.toml"
    toml.write_text("[[providers]]\n" + body)
    with pytest.raises(ValueError, match=message):
        load_config(toml, environ={})


def test_names_and_addresses_are_unique():
    with pytest.raises(TurnConfigError):
        ProviderHealth((NetworkProvider("a", "10.0.0.1"), NetworkProvider("a", "10.0.0.2")))
    with pytest.raises(TurnConfigError):
        ProviderHealth((NetworkProvider("a", "10.0.0.1"), NetworkProvider("b", "10.0.0.1")))


def test_health_follows_the_paths_reports():
    now = [1000.0]
    health = ProviderHealth(
        (NetworkProvider("a", "10.0.0.1"), NetworkProvider("b", "10.1.0.1")), clock=lambda: now[0]
    )
    assert [p["state"] for p in health.snapshot()] == ["unknown", "unknown"]
    health.path_state("10.0.0.1", True, "t1")
    health.path_state("10.1.0.1", True, "t1")
    health.path_state("10.0.0.1", True, "t2")
    # one Transport's paths on a go silent: a stays up while another's answer
    now[0] = 1001.0
    health.path_state("10.0.0.1", False, "t1")
    assert health.snapshot()[0]["state"] == "up"
    # t2 fails over off a: now nobody's paths on a answer
    now[0] = 1002.0
    failover = health.path_switched(
        "10.0.0.1", "10.1.0.1", 420, participant_id="p", transport="publish", transport_id="t2"
    )
    assert (failover.from_provider, failover.to_provider, failover.gap_ms) == ("a", "b", 420)
    a, b = health.snapshot()
    assert (a["state"], a["since"], a["failovers_from"]) == ("down", 1002.0, 1)
    assert a["last_failover"] == {
        "at": 1002.0,
        "from": "a",
        "to": "b",
        "gap_ms": 420,
        "participant_id": "p",
        "transport": "publish",
    }
    assert (b["state"], b["failovers_from"]) == ("up", 0)
    # a answers again: up, and it is the standby now
    now[0] = 1003.0
    health.path_state("10.0.0.1", True, "t2")
    assert health.snapshot()[0]["state"] == "up" and health.last_failover is failover
    # an address of ours that is no provider is named by itself and changes nothing
    assert health.name_of("127.0.0.1") == "127.0.0.1"
    health.path_state("127.0.0.1", False, "t3")


def test_health_changes_are_logged(caplog: pytest.LogCaptureFixture):
    health = ProviderHealth((NetworkProvider("a", "10.0.0.1"), NetworkProvider("b", "10.1.0.1")))
    health.path_state("10.0.0.1", True, "t")
    with caplog.at_level("INFO", logger="turn.providers"):
        health.path_switched("10.0.0.1", "10.1.0.1", 500, transport_id="t")
    messages = [r.getMessage() for r in caplog.records]
    assert "provider failover" in messages and "provider a: up -> down" in messages
