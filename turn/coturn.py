"""coturn configuration for one network provider (R28, R31: one TURN server per provider).

A TURN server relays to whatever address a client names, so an open one is a way into the
hospital's own network and the cloud metadata service. The configuration written here refuses
relays to every private, loopback, link-local, CGNAT, multicast and IPv4-mapped range, allows
only the media server's own addresses among them, needs time-limited credentials (use-auth-secret:
``credentials.mint_credential``), and has no CLI, no TCP relays and per-user quotas.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

#: Peers a relay must never reach (beside multicast, refused by ``no-multicast-peers``).
DENIED_PEER_NETWORKS: tuple[str, ...] = (
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "240.0.0.0/4",
    "::1/128",
    "::ffff:0:0/96",
    "fc00::/7",
    "fe80::/10",
)

_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_REALM = re.compile(r"^[A-Za-z0-9.-]{1,128}$")


class TurnConfigError(ValueError):
    """A provider's TURN settings are not usable."""


@dataclass(frozen=True)
class TurnProvider:
    """One provider's TURN server as clients reach it and as coturn listens.

    ``host`` is what browsers connect to (a name or an address on that provider);
    ``listening_ip`` and ``relay_ip`` are the server's address on that provider (the same one, so
    relayed traffic leaves on the provider it came in on); ``external_ip`` is set when that
    address is behind a 1:1 NAT. ``tls_port`` (0 = none) serves TURN over TLS, for clients whose
    firewall lets only TCP 443 out; it needs ``tls_cert`` and ``tls_key``.
    """

    name: str
    host: str
    listening_ip: str
    relay_ip: str = ""
    external_ip: str = ""
    port: int = 3478
    tls_port: int = 0
    tls_cert: str = ""
    tls_key: str = ""
    min_port: int = 49152
    max_port: int = 65535
    realm: str = "teleconsult"
    user_quota: int = 12
    total_quota: int = 1200
    max_bps: int = 3_000_000
    allowed_peer_ips: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_mapping(cls, data: dict[str, object]) -> TurnProvider:
        """From a ``[[turn_providers]]`` TOML table; refuses unknown keys and bad values."""
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise TurnConfigError(f"unknown TURN provider keys: {', '.join(sorted(unknown))}")
        values = dict(data)
        if "allowed_peer_ips" in values:
            allowed = values["allowed_peer_ips"]
            if not isinstance(allowed, list | tuple):
                raise TurnConfigError("allowed_peer_ips must be a list of addresses")
            values["allowed_peer_ips"] = tuple(str(a) for a in allowed)
        try:
            provider = cls(**values)  # type: ignore[arg-type]
        except TypeError as exc:
            raise TurnConfigError(f"TURN provider: {exc}") from None
        provider.validate()
        return provider

    @property
    def relay_address(self) -> str:
        return self.relay_ip or self.listening_ip

    def validate(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise TurnConfigError("a TURN provider name is 1-32 of a-z 0-9 _ - (lower case)")
        if not _HOST.fullmatch(self.host):
            raise TurnConfigError(f"TURN provider {self.name}: host is not a host name")
        for label, value in (
            ("listening_ip", self.listening_ip),
            ("relay_ip", self.relay_address),
            *((("external_ip", self.external_ip),) if self.external_ip else ()),
            *(("allowed_peer_ips", a) for a in self.allowed_peer_ips),
        ):
            _address(self.name, label, value)
        for label, port in (("port", self.port), ("min_port", self.min_port)):
            _port(self.name, label, port)
        _port(self.name, "max_port", self.max_port)
        if self.tls_port:
            _port(self.name, "tls_port", self.tls_port)
            if not self.tls_cert or not self.tls_key:
                raise TurnConfigError(f"TURN provider {self.name}: tls_port needs tls_cert/key")
        for label, path in (("tls_cert", self.tls_cert), ("tls_key", self.tls_key)):
            if path and ("\n" in path or "\r" in path or not path.startswith("/")):
                raise TurnConfigError(
                    f"TURN provider {self.name}: {label} must be an absolute path"
                )
        if self.min_port > self.max_port:
            raise TurnConfigError(f"TURN provider {self.name}: min_port is above max_port")
        if not _REALM.fullmatch(self.realm):
            raise TurnConfigError(f"TURN provider {self.name}: realm is not a domain-like name")
        for label, number in (
            ("user_quota", self.user_quota),
            ("total_quota", self.total_quota),
            ("max_bps", self.max_bps),
        ):
            if not isinstance(number, int) or number <= 0:
                raise TurnConfigError(f"TURN provider {self.name}: {label} must be positive")


def _address(provider: str, label: str, value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise TurnConfigError(f"TURN provider {provider}: {label} {value!r} is not an IP") from None


def _port(provider: str, label: str, value: int) -> None:
    if not isinstance(value, int) or not 1 <= value <= 65535:
        raise TurnConfigError(f"TURN provider {provider}: {label} must be a port (1-65535)")


def _ip_range(network: str) -> str:
    """coturn wants ``first-last`` ranges (it reads no CIDR prefixes in 4.6)."""
    net = ipaddress.ip_network(network)
    if net.num_addresses == 1:
        return str(net.network_address)
    return f"{net.network_address}-{net.broadcast_address}"


def coturn_config(provider: TurnProvider, secret: str, *, log_file: str = "stdout") -> str:
    """The ``turnserver.conf`` for ``provider``. Holds ``secret``: write it with mode 0600."""
    provider.validate()
    if len(secret.encode()) < 32 or "\n" in secret or "\r" in secret:
        raise TurnConfigError("the TURN secret must be one line of at least 32 bytes")
    if "\n" in log_file or "\r" in log_file:
        raise TurnConfigError("log_file must be one line")
    lines = [
        f"# coturn for network provider {provider.name!r}, written by `teleconsult turn config`.",
        "# Holds the shared TURN secret: keep this file mode 0600, readable by coturn only.",
        f"listening-ip={provider.listening_ip}",
        f"relay-ip={provider.relay_address}",
    ]
    if provider.external_ip:
        lines.append(f"external-ip={provider.external_ip}/{provider.listening_ip}")
    lines += [
        f"listening-port={provider.port}",
        f"min-port={provider.min_port}",
        f"max-port={provider.max_port}",
    ]
    if provider.tls_port:
        lines += [
            f"tls-listening-port={provider.tls_port}",
            f"cert={provider.tls_cert}",
            f"pkey={provider.tls_key}",
            "no-tlsv1",
            "no-tlsv1_1",
        ]
    else:
        lines.append("no-tls")
        lines.append("no-dtls")
    lines += [
        f"realm={provider.realm}",
        "use-auth-secret",
        f"static-auth-secret={secret}",
        "fingerprint",
        "no-cli",
        "no-tcp-relay",
        "no-multicast-peers",
        "no-software-attribute",
        "stale-nonce=600",
        f"user-quota={provider.user_quota}",
        f"total-quota={provider.total_quota}",
        f"max-bps={provider.max_bps}",
        f"log-file={log_file}",
        "simple-log",
    ]
    lines += [f"denied-peer-ip={_ip_range(n)}" for n in DENIED_PEER_NETWORKS]
    # Exceptions for the media servers' own addresses: relays carry media to the SFU only there.
    lines += [f"allowed-peer-ip={a}" for a in provider.allowed_peer_ips]
    return "\n".join(lines) + "\n"
