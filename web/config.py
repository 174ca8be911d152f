"""Configuration. Defaults need nothing: SQLite and data under ./data, one process, no Redis,
no TURN, no STUN (``iceServers=[]``). A TOML file, then environment variables, then command-line
options override them."""

from __future__ import annotations

import os
import secrets
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from cryptography import x509

from consult.consultations.signing import SigningAuthority
from consult.trust import (
    SM2Key,
    SM2PublicKey,
    TimestampAuthority,
    load_certificates,
    load_or_create_key,
)
from recording.session import MIN_RETENTION_DAYS, SEGMENT_S_RANGE
from turn import (
    IceServerSource,
    NetworkProvider,
    ProviderHealth,
    TurnProvider,
    check_providers,
)

ENV_PREFIX = "TELECONSULT_"


@dataclass(frozen=True)
class Config:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    #: SQLAlchemy async URL; default ``sqlite+aiosqlite:///<data_dir>/teleconsult.db``.
    database_url: str = ""
    #: Signs join tokens; default: a random key kept in ``<data_dir>/secret.key``.
    token_secret: str = ""
    token_ttl_s: int = 12 * 3600
    #: Encrypts patients' identifiers (SM4) and keys their blind indexes (HMAC-SM3); at least 32
    #: bytes, never stored in the database. Default: a random key kept in ``<data_dir>/field.key``.
    #: Losing it makes the encrypted fields unreadable: back it up apart from the database. With
    #: several processes on several machines, set it explicitly (all must share one key).
    field_key: str = ""
    #: Local addresses to gather ICE candidates on; empty = the providers' addresses, or with
    #: no providers every interface but loopback.
    ice_addresses: tuple[str, ...] = ()
    #: The network providers (TOML ``[[providers]]`` tables: name, address, signaling_url;
    #: docs/providers.md). With two, every Transport has a path on each and moves off a dead one.
    providers: tuple[NetworkProvider, ...] = ()
    #: STUN/TURN servers as RTCIceServer dicts (urls, username, credential).
    ice_servers: tuple[dict[str, Any], ...] = ()
    #: One coturn per network provider (TOML ``[[turn_providers]]`` tables, docs/turn.md); each
    #: participant gets a time-limited credential for each.
    turn_providers: tuple[TurnProvider, ...] = ()
    #: coturn's static-auth-secret; default: a random key kept in ``<data_dir>/turn.key``.
    turn_secret: str = ""
    turn_credential_ttl_s: int = 12 * 3600
    #: Where npm installed the browser libraries (socket.io-client); default: found by search.
    node_modules: str = ""
    #: Where ``scripts/build-viewer.mjs`` put the Cornerstone3D bundle; default: found by search
    #: (``build/viewer`` beside the source or in the working directory).
    viewer_bundle: str = ""
    redis_url: str = ""
    #: Media worker processes: 0 keeps every Router in this process (the embedded default);
    #: N > 0 runs N worker processes; "auto" one per core.
    media_workers: int | str = 0
    #: A media worker whose event loop lags past this (ms, in two 1 s windows in a row) takes no
    #: new room or participant (``server_busy``) until it keeps up again; 0 never refuses.
    media_busy_lag_ms: int = 200
    #: Record every room (R22, R23); segments, manifests and composites go under
    #: ``recordings_dir`` (default ``<data_dir>/recordings``).
    recording: bool = True
    recordings_dir: Path | None = None
    recording_segment_s: float = 5.0
    #: At least 3 years (R23); nothing is removed before a recording's keep-until date.
    recording_retention_days: int = MIN_RETENTION_DAYS
    #: Build the playback composite (ffmpeg) after each session.
    recording_composite: bool = True
    composite_fps: int = 30
    #: The server's SM2 private key (PEM, mode 0600) that signs the audit checkpoints (R26);
    #: default ``<data_dir>/signing.key``, generated at first start. Never in the repository.
    signing_key_file: Path | None = None
    #: Signed checkpoints of the audit and recording heads (JSON Lines, ``docs/checkpoints.md``);
    #: default ``<data_dir>/checkpoints.jsonl``. Ship it off the host.
    checkpoint_file: Path | None = None
    #: How often the server writes a checkpoint when the chain moved; 0 turns it off.
    checkpoint_interval_s: float = 300.0
    #: An RFC 3161 time-stamping authority (HTTP) that stamps each checkpoint; empty: none.
    tsa_url: str = ""
    #: The authority's CA certificates (PEM), to verify its stamps.
    tsa_ca_file: Path | None = None
    #: The hospital's SM2 CA that issues practitioners' report-signing certificates (issue 14,
    #: R26, R27): its certificate and its private key (PEM, mode 0600). Without them, reports
    #: cannot be signed (``signing_unavailable``).
    signing_ca_cert_file: Path | None = None
    signing_ca_key_file: Path | None = None
    #: How often (seconds) the server makes the reminders that are due and sends them (issue 14:
    #: invitations to answer, sessions about to start, answers told); 0 turns the task off.
    reminder_interval_s: float = 60.0
    #: The hospital's SMS/WeChat gateway: each reminder is POSTed there as signed JSON
    #: (docs/consultations.md, Reminders); empty: in-app reminders only.
    reminder_webhook_url: str = ""
    #: The webhook's HMAC-SHA256 key (at least 32 bytes); default: a random key kept in
    #: ``<data_dir>/reminder_webhook.key``, made when a webhook URL is set. Never in the repository.
    reminder_webhook_secret: str = ""
    #: Attempts per reminder before it is given up (the waits double from 30 s, at most 1 h).
    reminder_webhook_attempts: int = 5
    #: One webhook request's time limit (seconds).
    reminder_webhook_timeout_s: float = 10.0
    log_level: str = "INFO"
    #: A connection must deliver a request's headers within this many seconds of opening (or of
    #: its previous response); slow ones are closed (slowloris). Also the keep-alive idle time.
    header_timeout_s: float = 15.0
    #: A request body (up to the 2 MiB JSON limit) must arrive within this many seconds; a
    #: streamed upload (DICOM STOW-RS) must not fall silent for longer than this.
    body_timeout_s: float = 20.0
    #: Imaging store (DICOM files) directory; default ``<data_dir>/imaging``.
    imaging_dir: Path | None = None
    #: The largest DICOM instance the store accepts (STOW-RS part, C-STORE dataset).
    imaging_max_instance_mb: int = 512
    #: Worker processes that render PNGs (``consult/imaging/workers.py``); 0 (the default)
    #: renders in the store's threads. Worth it where cores stand idle beside the event loop:
    #: on a busy 2-core machine the processes measured slower (docs/imaging.md, Figures).
    imaging_render_workers: int = 0
    #: C-STORE SCP port; 0 (the embedded default) keeps it off.
    dicom_port: int = 0
    #: Address the C-STORE SCP listens on.
    dicom_host: str = "127.0.0.1"
    dicom_ae_title: str = "TELECONSULT"
    #: Calling AE titles allowed to store, each with the institution id its studies belong to
    #: (TOML table ``[dicom_peers]``, ``AE = "institution id"``); nobody else may associate.
    dicom_peers: dict[str, str] = field(default_factory=dict)
    #: Associations the SCP holds at once (pynetdicom's ``maximum_associations``), and at most
    #: this many of them from one peer address: one host cannot take every slot (R33).
    dicom_max_associations: int = 10
    dicom_max_associations_per_address: int = 4
    #: An association that has sent no C-STORE nor C-FIND for this long is aborted (C-ECHO
    #: does not count: a peer echoing every minute would otherwise hold its slot for ever).
    dicom_idle_s: int = 300

    @property
    def imaging(self) -> Path:
        return self.imaging_dir or self.data_dir / "imaging"

    @property
    def recordings(self) -> Path:
        return self.recordings_dir or self.data_dir / "recordings"

    @property
    def signing_key_path(self) -> Path:
        return self.signing_key_file or self.data_dir / "signing.key"

    @property
    def checkpoints(self) -> Path:
        return self.checkpoint_file or self.data_dir / "checkpoints.jsonl"

    def signing_key(self) -> SM2Key:
        """The checkpoint-signing SM2 key; created on first use and kept in the data directory."""
        return load_or_create_key(self.signing_key_path)

    def public_key(self) -> SM2PublicKey | None:
        """The signing key's public half, or None when no key was made yet (nothing signed)."""
        path = self.signing_key_path
        return SM2Key.from_pem(path.read_bytes()).public() if path.exists() else None

    def timestamp_authority(self) -> TimestampAuthority | None:
        return TimestampAuthority(self.tsa_url) if self.tsa_url else None

    def report_signing(self) -> SigningAuthority | None:
        """The CA that issues practitioners' certificates, with the TSA; ``None`` unconfigured."""
        if self.signing_ca_cert_file is None or self.signing_ca_key_file is None:
            return None
        return SigningAuthority(
            ca_key=SM2Key.from_pem(self.signing_ca_key_file.read_bytes()),
            ca_certificate_pem=self.signing_ca_cert_file.read_bytes(),
            tsa=self.timestamp_authority(),
            tsa_roots=tuple(self.tsa_roots() or ()),
        )

    def tsa_roots(self) -> list[x509.Certificate] | None:
        if self.tsa_ca_file is None:
            return None
        return load_certificates(self.tsa_ca_file.read_bytes())

    def existing_field_secret(self) -> str | None:
        """The field key if configured or already made (never creates one)."""
        if self.field_key:
            return self.field_key
        path = self.data_dir / "field.key"
        return path.read_text().strip() if path.exists() else None

    @property
    def database(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'teleconsult.db').resolve()}"

    def secret(self) -> str:
        """The token-signing key; created on first use and kept in the data directory."""
        return self.token_secret or self._key_file("secret.key")

    def field_secret(self) -> str:
        """The field-encryption key; created on first use and kept in the data directory."""
        return self.field_key or self._key_file("field.key")

    def reminder_webhook_key(self) -> str:
        """The reminder webhook's signing key; made on first use, kept in the data directory."""
        return self.reminder_webhook_secret or self._key_file("reminder_webhook.key")

    def media_addresses(self) -> list[str]:
        """The addresses every Transport gathers on: ``ice_addresses``, else the providers'."""
        return list(self.ice_addresses) or [p.address for p in self.providers]

    def provider_health(self) -> ProviderHealth:
        return ProviderHealth(self.providers)

    def client_ice_servers(self) -> IceServerSource:
        """What each participant is told to use for ICE (static servers, then TURN per provider)."""
        return IceServerSource(
            static=self.ice_servers,
            providers=self.turn_providers,
            secret=(self.turn_secret or self._key_file("turn.key")) if self.turn_providers else "",
            ttl_s=self.turn_credential_ttl_s,
        )

    def _key_file(self, name: str) -> str:
        """A random key kept in ``<data_dir>/<name>`` (mode 0600), created on first use.

        Written to a temporary file and linked into place, so that two processes starting
        together never read a half-written key: the second link fails and both use the first.
        """
        path = self.data_dir / name
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{name}.{secrets.token_hex(8)}")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(secrets.token_urlsafe(48))
                os.link(temporary, path)
            except FileExistsError:
                pass
            finally:
                temporary.unlink()
        return path.read_text().strip()


_BOOLS = {"recording", "recording_composite"}
_INTS = {
    "port",
    "token_ttl_s",
    "recording_retention_days",
    "composite_fps",
    "imaging_max_instance_mb",
    "imaging_render_workers",
    "dicom_port",
    "dicom_max_associations",
    "dicom_max_associations_per_address",
    "dicom_idle_s",
    "turn_credential_ttl_s",
    "media_busy_lag_ms",
    "reminder_webhook_attempts",
}
#: Lists of tables: TOML only, never from an environment variable.
_TOML_ONLY = {"ice_servers", "turn_providers", "dicom_peers", "providers"}


def _coerce(name: str, value: Any) -> Any:
    if name in _INTS:
        return int(value)
    if name in _BOOLS:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(f"{name} must be true or false")
            return lowered in ("1", "true", "yes", "on")
        return bool(value)
    if name in (
        "recording_segment_s",
        "checkpoint_interval_s",
        "reminder_interval_s",
        "reminder_webhook_timeout_s",
    ):
        return float(value)
    if name in (
        "recordings_dir",
        "imaging_dir",
        "signing_key_file",
        "checkpoint_file",
        "tsa_ca_file",
        "signing_ca_cert_file",
        "signing_ca_key_file",
    ):
        return Path(value) if value else None
    if name == "dicom_peers":
        if not isinstance(value, dict):
            raise ValueError("dicom_peers is a table of AE title = institution id (TOML)")
        peers = {str(k).strip(): str(v) for k, v in value.items()}
        if any(not 0 < len(k) <= 16 for k in peers):
            raise ValueError("an AE title is 1 to 16 characters")
        return peers
    if name == "media_workers":
        if str(value).strip().lower() == "auto":
            return os.cpu_count() or 1
        workers = int(value)
        if workers < 0:
            raise ValueError("media_workers must be 0, a positive number or 'auto'")
        return workers
    if name == "data_dir":
        return Path(value)
    if name == "ice_addresses":
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return tuple(str(v) for v in value)
    if name == "ice_servers":
        return tuple(dict(v) for v in value)
    if name == "turn_providers":
        return tuple(TurnProvider.from_mapping(dict(v)) for v in value)
    if name == "providers":
        return tuple(NetworkProvider.from_mapping(dict(v)) for v in value)
    return value


def load_config(
    path: Path | None = None,
    environ: dict[str, str] | None = None,
    **overrides: Any,
) -> Config:
    """Defaults, then the TOML file at ``path``, then ``TELECONSULT_*`` variables, then
    ``overrides`` (None values ignored)."""
    names = {f.name for f in fields(Config)}
    values: dict[str, Any] = {}
    if path is not None:
        with open(path, "rb") as f:
            data = tomllib.load(f)
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown configuration keys: {', '.join(sorted(unknown))}")
        values.update(data)
    env = os.environ if environ is None else environ
    for name in names:
        key = ENV_PREFIX + name.upper()
        if key in env and name not in _TOML_ONLY:
            values[name] = env[key]
    values.update({k: v for k, v in overrides.items() if v is not None})
    config = replace(Config(), **{k: _coerce(k, v) for k, v in values.items()})
    if config.token_secret and len(config.token_secret.encode()) < 32:
        raise ValueError("token_secret must be at least 32 bytes (HS256, RFC 7518)")
    if config.field_key and len(config.field_key.encode()) < 32:
        raise ValueError("field_key must be at least 32 bytes")
    if config.turn_secret and len(config.turn_secret.encode()) < 32:
        raise ValueError("turn_secret must be at least 32 bytes")
    if config.reminder_webhook_secret and len(config.reminder_webhook_secret.encode()) < 32:
        raise ValueError("reminder_webhook_secret must be at least 32 bytes")
    if config.reminder_interval_s < 0:
        raise ValueError("reminder_interval_s must be 0 (off) or positive")
    if config.reminder_webhook_url and not config.reminder_webhook_url.startswith(
        ("http://", "https://")
    ):
        raise ValueError("reminder_webhook_url must be an http:// or https:// URL")
    if not 1 <= config.reminder_webhook_attempts <= 20:
        raise ValueError("reminder_webhook_attempts must be between 1 and 20")
    if config.reminder_webhook_timeout_s <= 0:
        raise ValueError("reminder_webhook_timeout_s must be positive")
    if config.turn_credential_ttl_s <= 0:
        raise ValueError("turn_credential_ttl_s must be positive")
    check_providers(config.providers)
    if config.recording_retention_days < MIN_RETENTION_DAYS:
        raise ValueError(
            f"recording_retention_days must be at least {MIN_RETENTION_DAYS} (3 years, R23)"
        )
    if not 0 <= config.dicom_port <= 65535:
        raise ValueError("dicom_port must be 0 (off) or a TCP port")
    if not 0 < len(config.dicom_ae_title.strip()) <= 16:
        raise ValueError("dicom_ae_title is 1 to 16 characters")
    if not 1 <= config.dicom_max_associations <= 1000:
        raise ValueError("dicom_max_associations is 1 to 1000")
    if not 1 <= config.dicom_max_associations_per_address <= config.dicom_max_associations:
        raise ValueError("dicom_max_associations_per_address is 1 to dicom_max_associations")
    if config.dicom_idle_s < 1:
        raise ValueError("dicom_idle_s must be at least 1")
    if config.imaging_max_instance_mb < 1:
        raise ValueError("imaging_max_instance_mb must be at least 1")
    if not 0 <= config.imaging_render_workers <= 64:
        raise ValueError("imaging_render_workers is 0 (threads) to 64")
    if config.checkpoint_interval_s < 0:
        raise ValueError("checkpoint_interval_s must be 0 (off) or positive")
    if config.media_busy_lag_ms < 0:
        raise ValueError("media_busy_lag_ms must be 0 (never refuse) or a positive number")
    low, high = SEGMENT_S_RANGE
    if not low <= config.recording_segment_s <= high:
        raise ValueError(f"recording_segment_s must be between {low:g} and {high:g}")
    return config
