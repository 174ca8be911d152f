"""Signed checkpoints of the audit head and the recording heads, kept outside the database
(R24-R26). The format is described in ``docs/checkpoints.md``.

A checkpoint records the audit chain's head (``seq``, ``digest``) and every recording sealed
since the previous checkpoint (its visit, session and manifest head, as the chain holds them),
signs that with the server's SM2 key (:mod:`consult.trust`) and, where an RFC 3161 authority is
configured, has the signed bytes timestamped. Checkpoints are lines of a file (JSON Lines) the
operator ships off the host; each names the previous one's digest, so lines cannot be dropped
from the middle or reordered unseen.

:func:`write_checkpoint` appends one (the server does so periodically, the ``audit checkpoint``
command on demand); :func:`read_checkpoints` reads and checks a file (signatures, numbering,
links, timestamps); :meth:`CheckpointLog.anchors` gives the audit heads for
:func:`consult.audit_verify.verify_chain`.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from sqlalchemy import select

from consult.audit import event_digest, read_head
from consult.audit_verify import Anchor
from consult.crypto import GENESIS_DIGEST, sm3_hex
from consult.db import Database
from consult.models import AuditEvent
from consult.trust import (
    SIGNATURE_ALGORITHM,
    SM2_ID,
    SM2Key,
    SM2PublicKey,
    TimestampAuthority,
    TrustError,
    verify_timestamp,
)

logger = logging.getLogger(__name__)

FORMAT_VERSION: Final = 1
RECORDING_SEALED: Final = "recording.sealed"


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class SealedRecording:
    """A recording session's sealed head as the audit chain holds it."""

    visit_id: str
    session: str
    head: str
    seq: int
    """The audit event that entered it."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "visit_id": self.visit_id,
            "session": self.session,
            "head": self.head,
            "seq": self.seq,
        }


@dataclass(frozen=True)
class Checkpoint:
    """One verified line of a checkpoint file."""

    n: int
    at: str
    audit_seq: int
    audit_digest: str
    recordings: tuple[SealedRecording, ...]
    link: str
    """SM3 of this line's signed body and signature: the next line's ``prev``."""
    stamped_at: datetime | None = None
    """The authority's time, when the line carries a verified timestamp."""

    @property
    def label(self) -> str:
        return f"checkpoint {self.n} of {self.at}"


@dataclass(frozen=True)
class Finding:
    """A problem with the checkpoint file itself (stable ``code``)."""

    code: str
    line: int
    detail: str

    def describe(self) -> dict[str, Any]:
        return {"code": self.code, "line": self.line, "detail": self.detail}


@dataclass
class CheckpointLog:
    """The checkpoints of a file that verified, and what did not."""

    path: Path
    checkpoints: list[Checkpoint] = field(default_factory=list)
    problems: list[Finding] = field(default_factory=list)

    @property
    def latest(self) -> Checkpoint | None:
        return self.checkpoints[-1] if self.checkpoints else None

    def anchors(self) -> list[Anchor]:
        """Every checkpoint's audit head, for :func:`consult.audit_verify.verify_chain`."""
        return [Anchor(c.audit_seq, c.audit_digest, c.label) for c in self.checkpoints]

    def recording_heads(self) -> dict[tuple[str, str], SealedRecording]:
        """Every sealed recording the checkpoints name, by ``(visit_id, session)``."""
        return {(r.visit_id, r.session): r for c in self.checkpoints for r in c.recordings}


# --- Writing -------------------------------------------------------------------------------------


@contextmanager
def _locked(path: Path) -> Iterator[int]:
    """An exclusive ``flock`` on ``path`` (created 0644): one writer at a time, any process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # releases the lock


def _last_line(path: Path) -> dict[str, Any] | None:
    last = None
    with open(path, "rb") as f:
        for raw in f:
            if raw.strip():
                last = raw
    if last is None:
        return None
    try:
        record = json.loads(last)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return record if isinstance(record, dict) else None


def _link(body: dict[str, Any], signature: bytes) -> str:
    return sm3_hex(_canonical(body) + signature)


async def sealed_recordings(db: Database, after_seq: int, upto_seq: int) -> list[SealedRecording]:
    """The ``recording.sealed`` events with ``after_seq < seq <= upto_seq``, in order."""
    async with db.session() as session:
        rows = (
            await session.scalars(
                select(AuditEvent)
                .where(
                    AuditEvent.action == RECORDING_SEALED,
                    AuditEvent.seq > after_seq,
                    AuditEvent.seq <= upto_seq,
                )
                .order_by(AuditEvent.seq)
            )
        ).all()
    found = []
    for row in rows:
        try:
            details = json.loads(row.details)
        except json.JSONDecodeError:
            continue
        if row.object_id and details.get("session") and details.get("head"):
            found.append(
                SealedRecording(
                    row.object_id, str(details["session"]), str(details["head"]), row.seq
                )
            )
    return found


class CheckpointRefused(Exception):
    """The chain no longer holds the last checkpoint's head: it is not signed again."""

    code = "checkpoint_refused"


async def _follows(db: Database, prev_seq: int, prev_digest: str) -> str | None:
    """Why the chain after ``prev_seq`` does not follow from ``prev_digest`` (None: it does).

    Checks only the events since the last checkpoint, so a periodic checkpoint costs what was
    appended since the one before.
    """
    async with db.session() as session:
        if prev_seq:
            stored = await session.scalar(
                select(AuditEvent.digest).where(AuditEvent.seq == prev_seq)
            )
            if stored != prev_digest:
                return f"the event at seq {prev_seq} is not the one the last checkpoint signed"
        expected_seq, expected_prev = prev_seq + 1, prev_digest
        while True:
            rows = (
                await session.scalars(
                    select(AuditEvent)
                    .where(AuditEvent.seq >= expected_seq)
                    .order_by(AuditEvent.seq)
                    .limit(1000)
                )
            ).all()
            if not rows:
                return None
            for event in rows:
                if event.seq != expected_seq or event.prev_digest != expected_prev:
                    return f"the chain is broken at seq {event.seq}"
                if event_digest(event.prev_digest, event) != event.digest:
                    return f"the event at seq {event.seq} does not match its digest"
                expected_seq, expected_prev = event.seq + 1, event.digest
            session.expunge_all()


async def write_checkpoint(
    db: Database,
    path: Path,
    key: SM2Key,
    tsa: TimestampAuthority | None = None,
    *,
    force: bool = False,
) -> dict[str, Any] | None:
    """Append a checkpoint of the current heads to ``path``; return the line written.

    Nothing is written (None) when the audit head has not moved since the last checkpoint,
    unless ``force``. A timestamp that cannot be had leaves the line unstamped (``tst`` null,
    ``tsa_error`` its code) rather than no checkpoint at all.
    """
    with _locked(path) as fd:
        previous = _last_line(path)
        found = previous.get("body") if previous else None
        prev_body: dict[str, Any] = found if isinstance(found, dict) else {}
        found = prev_body.get("audit")
        prev_audit: dict[str, Any] = found if isinstance(found, dict) else {}
        prev_seq = int(prev_audit.get("seq", 0) or 0)
        seq, digest = await read_head(db)
        if not force and previous is not None and prev_audit.get("digest") == digest:
            return None
        broken = await _follows(db, prev_seq, str(prev_audit.get("digest") or GENESIS_DIGEST))
        if broken is not None:
            # Never sign a chain that no longer leads through the last signed head.
            raise CheckpointRefused(broken)
        if previous is not None:
            try:
                prev_link = _link(prev_body, base64.b64decode(previous["sig"]["value"]))
            except (KeyError, TypeError, ValueError, binascii.Error):
                prev_link = "unreadable"
        else:
            prev_link = GENESIS_DIGEST
        recordings = await sealed_recordings(db, min(prev_seq, seq), seq)
        body = {
            "v": FORMAT_VERSION,
            "n": int(prev_body.get("n", 0) or 0) + 1,
            "at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "audit": {"seq": seq, "digest": digest},
            "recordings": [r.as_dict() for r in recordings],
            "prev": prev_link,
        }
        signed = _canonical(body)
        record: dict[str, Any] = {
            "body": body,
            "sig": {
                "alg": SIGNATURE_ALGORITHM,
                "id": SM2_ID.decode(),
                "key": key.key_id,
                "value": base64.b64encode(key.sign(signed)).decode(),
            },
            "tst": None,
        }
        if tsa is not None:
            try:
                record["tst"] = base64.b64encode(await tsa.stamp(signed)).decode()
            except TrustError as exc:
                logger.warning("checkpoint %s not timestamped: %s", body["n"], exc.code)
                record["tsa_error"] = exc.code
        os.write(fd, _canonical(record) + b"\n")
        os.fsync(fd)
    logger.info("audit checkpoint %s at seq %s", body["n"], seq)
    return record


# --- Reading -------------------------------------------------------------------------------------


def read_checkpoints(
    path: Path,
    public_key: SM2PublicKey,
    tsa_roots: list[x509.Certificate] | None = None,
) -> CheckpointLog:
    """Read ``path`` and check every line: its signature under ``public_key``, its number and
    link to the line before, and its timestamp where it has one and ``tsa_roots`` are given.

    A line that fails is a :class:`Finding` (``checkpoint_invalid``: unreadable or badly
    signed; ``checkpoint_unlinked``: a line dropped or reordered before it;
    ``timestamp_invalid``) and is not used as an anchor. A missing file is no checkpoint.
    """
    log = CheckpointLog(path)
    if not path.exists():
        return log
    key_id = public_key.key_id
    expected_prev, expected_n, last_seq = GENESIS_DIGEST, 1, 0
    with open(path, "rb") as f:
        lines = f.read().splitlines()
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
            body, sig = record["body"], record["sig"]
            signature = base64.b64decode(sig["value"], validate=True)
            audit_head = body["audit"]
            seq, digest = int(audit_head["seq"]), str(audit_head["digest"])
            n = int(body["n"])
            recordings = tuple(
                SealedRecording(
                    str(r["visit_id"]), str(r["session"]), str(r["head"]), int(r["seq"])
                )
                for r in body.get("recordings", [])
            )
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
            log.problems.append(Finding("checkpoint_invalid", number, "unreadable line"))
            continue
        signed = _canonical(body)
        if sig.get("key") != key_id or sig.get("id") != SM2_ID.decode():
            log.problems.append(Finding("checkpoint_invalid", number, "signed by another key"))
            continue
        if not public_key.verify(signed, signature):
            log.problems.append(Finding("checkpoint_invalid", number, "bad signature"))
            continue
        link = _link(body, signature)
        if body.get("prev") != expected_prev or n != expected_n or seq < last_seq:
            log.problems.append(
                Finding(
                    "checkpoint_unlinked",
                    number,
                    f"checkpoint {n} does not follow checkpoint {expected_n - 1}: "
                    "checkpoints were removed or reordered",
                )
            )
        stamped_at = None
        if record.get("tst") and tsa_roots:
            try:
                token = base64.b64decode(record["tst"], validate=True)
                stamped_at = verify_timestamp(token, signed, tsa_roots).at
            except (TrustError, ValueError, binascii.Error) as exc:
                code = exc.code if isinstance(exc, TrustError) else "timestamp_invalid"
                log.problems.append(Finding(code, number, "the timestamp does not verify"))
        log.checkpoints.append(
            Checkpoint(n, str(body.get("at")), seq, digest, recordings, link, stamped_at)
        )
        expected_prev, expected_n, last_seq = link, n + 1, seq
    return log
