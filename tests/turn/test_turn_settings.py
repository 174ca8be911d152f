"""TURN settings, credentials and the coturn configuration as text (no coturn needed)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import stat
from pathlib import Path

import pytest

from turn import (
    CredentialError,
    IceServerSource,
    TurnConfigError,
    TurnProvider,
    coturn_config,
    mint_credential,
)
from web.cli import main
from web.config import load_config

SECRET = "s" * 40


def provider(**changes: object) -> TurnProvider:
    values: dict[str, object] = {
        "name": "telecom",
        "host": "turn-a.example.org",
        "listening_ip": "203.0.113.10",
        "allowed_peer_ips": ["203.0.113.20"],
    }
    values.update(changes)
    return TurnProvider.from_mapping(values)


def test_a_credential_is_expiry_colon_id_and_the_hmac_coturn_recomputes():
    credential = mint_credential(SECRET, "user-1", 3600, now=1_000_000)
    assert credential.username == "1003600:user-1"
    assert credential.expires_at == 1_003_600
    expected = hmac.new(SECRET.encode(), b"1003600:user-1", hashlib.sha1).digest()
    assert base64.b64decode(credential.password) == expected


@pytest.mark.parametrize(
    ("secret", "user", "ttl"),
    [
        ("short", "u", 60),
        (SECRET, "a:b", 60),
        (SECRET, "", 60),
        (SECRET, "u\n", 60),
        (SECRET, "u", 0),
    ],
)
def test_credentials_refuse_weak_secrets_odd_ids_and_no_lifetime(secret: str, user: str, ttl: int):
    with pytest.raises(CredentialError):
        mint_credential(secret, user, ttl)


def test_every_provider_gets_an_entry_with_one_credential_per_participant():
    source = IceServerSource(
        static=({"urls": "stun:stun.example.org"},),
        providers=(
            provider(),
            provider(
                name="unicom",
                host="turn-b.example.org",
                listening_ip="198.51.100.10",
                tls_port=443,
                tls_cert="/etc/t/cert.pem",
                tls_key="/etc/t/key.pem",
            ),
        ),
        secret=SECRET,
        ttl_s=600,
    )
    servers = source.for_participant("p1", now=100)
    assert servers[0] == {"urls": "stun:stun.example.org"}
    assert servers[1]["urls"] == ["turn:turn-a.example.org:3478?transport=udp"]
    assert servers[2]["urls"] == [
        "turn:turn-b.example.org:3478?transport=udp",
        "turns:turn-b.example.org:443?transport=tcp",
    ]
    assert servers[1]["username"] == servers[2]["username"] == "700:p1"
    assert IceServerSource().for_participant("p1") == []


def test_the_configuration_denies_private_loopback_link_local_and_mapped_peers():
    text = coturn_config(provider(), SECRET)
    for line in (
        "use-auth-secret",
        f"static-auth-secret={SECRET}",
        "no-multicast-peers",
        "no-tcp-relay",
        "no-cli",
        "denied-peer-ip=0.0.0.0-0.255.255.255",
        "denied-peer-ip=10.0.0.0-10.255.255.255",
        "denied-peer-ip=100.64.0.0-100.127.255.255",
        "denied-peer-ip=127.0.0.0-127.255.255.255",
        "denied-peer-ip=169.254.0.0-169.254.255.255",
        "denied-peer-ip=172.16.0.0-172.31.255.255",
        "denied-peer-ip=192.168.0.0-192.168.255.255",
        "denied-peer-ip=::1",
        "denied-peer-ip=::ffff:0:0-::ffff:ffff:ffff",
        "denied-peer-ip=fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "denied-peer-ip=fe80::-febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "allowed-peer-ip=203.0.113.20",
        "listening-ip=203.0.113.10",
        "relay-ip=203.0.113.10",
        "user-quota=12",
    ):
        assert line in text.splitlines(), line


@pytest.mark.parametrize(
    "changes",
    [
        {"host": "turn.example.org\nallowed-peer-ip=0.0.0.0-255.255.255.255"},
        {"listening_ip": "not-an-ip"},
        {"allowed_peer_ips": ["10.0.0.0/8"]},
        {"port": 70000},
        {"tls_port": 443},  # without a certificate
        {"tls_port": 443, "tls_cert": "cert.pem", "tls_key": "/k.pem"},  # relative path
        {"name": "Telecom!"},
        {"min_port": 60000, "max_port": 50000},
        {"realm": "a b"},
        {"unknown_key": 1},
    ],
)
def test_bad_provider_settings_are_refused_before_anything_is_written(changes: dict[str, object]):
    with pytest.raises(TurnConfigError):
        provider(**changes)


def test_the_secret_cannot_smuggle_lines_into_the_configuration():
    with pytest.raises(TurnConfigError):
        coturn_config(provider(), SECRET + "\nallowed-peer-ip=127.0.0.1")


def _write_toml(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def test_toml_providers_load_and_env_cannot_set_them(tmp_path: Path):
    config_file = _write_toml(
        tmp_path / "c.toml",
        '[[turn_providers]]\nname = "telecom"\nhost = "turn-a.example.org"\n'
        'listening_ip = "203.0.113.10"\n',
    )
    config = load_config(config_file, environ={"TELECONSULT_TURN_PROVIDERS": "[]"})
    assert [p.name for p in config.turn_providers] == ["telecom"]
    with pytest.raises(ValueError, match="turn_secret"):
        load_config(None, environ={"TELECONSULT_TURN_SECRET": "short"})
    with pytest.raises(TurnConfigError):
        load_config(_write_toml(tmp_path / "bad.toml", '[[turn_providers]]\nname = "x"\n'), {})


def test_the_cli_writes_the_configuration_readable_by_its_owner_only(tmp_path: Path):
    config_file = _write_toml(
        tmp_path / "c.toml",
        '[[turn_providers]]\nname = "telecom"\nhost = "turn-a.example.org"\n'
        'listening_ip = "203.0.113.10"\n',
    )
    output = tmp_path / "turnserver.conf"
    output.write_text("old")
    output.chmod(0o644)
    data = tmp_path / "data"
    argv = ["turn", "config", "--config", str(config_file), "--data-dir", str(data)]
    assert main([*argv, "--output", str(output)]) == 0
    assert stat.S_IMODE(output.stat().st_mode) == 0o600
    secret = (data / "turn.key").read_text().strip()
    assert f"static-auth-secret={secret}" in output.read_text().splitlines()
    assert main([*argv, "--provider", "unicom"]) == 2
    no_turn = _write_toml(tmp_path / "none.toml", "")
    assert main(["turn", "config", "--config", str(no_turn), "--data-dir", str(data)]) == 2
