"""``audit verify`` as a whole (R22, R24-R26): the chain against its signed checkpoints, and the
chat record against the chain.

* the checkpoint file is read and checked (:func:`consult.checkpoints.read_checkpoints`);
* the chain is verified with every checkpoint's head as an anchor, so a cut tail (``truncated``)
  and a consistent rewrite (``rewritten``) are named, not only a broken link;
* every chat message and block is cross-checked with its ``room.chat`` event: a row deleted past
  the triggers is ``chat_missing``, a row no event accounts for ``chat_unaudited``, a row whose
  room, number, kind or text (HMAC-SM3, when the field key is at hand) differs from what the
  chain recorded ``chat_altered``.

Every problem has a stable ``code``; the report holds no message text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from sqlalchemy import select

from consult import chat
from consult.audit_verify import VerifyReport, verify_chain
from consult.checkpoints import CheckpointLog, read_checkpoints
from consult.crypto import FieldDecryptError
from consult.db import Database
from consult.models import AuditEvent, AuditResult, ChatBlock, ChatMessage
from consult.trust import SM2PublicKey


@dataclass(frozen=True)
class Finding:
    """One problem, with a stable ``code``."""

    code: str
    detail: str
    seq: int | None = None
    """The audit event concerned, when there is one."""
    object_id: str | None = None
    """A message, block or visit id (never a text)."""

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class IntegrityReport:
    chain: VerifyReport
    checkpoints: CheckpointLog | None
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Warnings that are not problems (no checkpoint yet)."""

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def exit_status(self) -> int:
        return 0 if self.ok else 1

    def text(self) -> str:
        lines = [self.chain.text()]
        if self.checkpoints is not None:
            latest = self.checkpoints.latest
            lines.append(
                f"checkpoints: {len(self.checkpoints.checkpoints)} in {self.checkpoints.path}"
                + (f", latest {latest.label} at seq {latest.audit_seq}" if latest else "")
            )
        lines += [f"note: {note}" for note in self.notes]
        lines += [f"{f.code}: {f.detail}" for f in self.findings]
        if not self.ok:
            lines.append(f"integrity BROKEN: {len(self.findings)} problem(s)")
        return "\n".join(lines)

    def describe(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "head_seq": self.chain.head_seq,
            "head_digest": self.chain.head_digest,
            "checked": self.chain.checked,
            "anchored_seq": self.chain.anchored_seq,
            "problems": [f.describe() for f in self.findings],
            "notes": self.notes,
        }


async def verify_integrity(
    db: Database,
    checkpoint_file: Path | None,
    public_key: SM2PublicKey | None,
    tsa_roots: list[x509.Certificate] | None = None,
) -> IntegrityReport:
    """The chain against the checkpoints in ``checkpoint_file`` (when given), then the chat."""
    log = None
    findings: list[Finding] = []
    notes: list[str] = []
    if checkpoint_file is not None and public_key is not None:
        log = read_checkpoints(checkpoint_file, public_key, tsa_roots)
        findings += [Finding(p.code, f"line {p.line}: {p.detail}") for p in log.problems]
        if not log.checkpoints:
            notes.append(
                f"no checkpoint in {checkpoint_file} yet: a cut tail or a recomputed chain "
                "cannot be told (write one with 'teleconsult audit checkpoint')"
            )
    chain = await verify_chain(db, anchors=log.anchors() if log else ())
    if not chain.ok:
        findings.insert(
            0,
            Finding(
                str(chain.problem),
                f"seq {chain.broken_seq}: {chain.detail}",
                seq=chain.broken_seq,
                object_id=chain.broken_id,
            ),
        )
    findings += await check_chat(db)
    return IntegrityReport(chain, log, findings, notes)


async def check_chat(db: Database) -> list[Finding]:
    """Every chat message and block against its ``room.chat`` event (see the module text)."""
    try:
        cipher_ready = db.cipher is not None
    except RuntimeError:
        cipher_ready = False
    messages: dict[str, tuple[int, str | None, dict[str, Any]]] = {}
    blocks: dict[str, tuple[int, str | None, dict[str, Any]]] = {}
    async with db.session() as session:
        events = await session.stream(
            select(AuditEvent.seq, AuditEvent.object_id, AuditEvent.result, AuditEvent.details)
            .where(AuditEvent.action == "room.chat")
            .order_by(AuditEvent.seq)
        )
        async for seq, object_id, result, raw in events:
            try:
                details = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if result == AuditResult.OK.value and details.get("message_id"):
                messages[str(details["message_id"])] = (seq, object_id, details)
            elif result == AuditResult.REFUSED.value and details.get("block_id"):
                blocks[str(details["block_id"])] = (seq, object_id, details)
        findings: list[Finding] = []
        seen: set[str] = set()
        rows = await session.stream_scalars(select(ChatMessage).order_by(ChatMessage.created_at))
        async for row in rows:
            seen.add(row.id)
            recorded = messages.get(row.id)
            if recorded is None:
                findings.append(
                    Finding("chat_unaudited", "a message no room.chat event records", None, row.id)
                )
                continue
            seq, visit_id, details = recorded
            differs = [
                name
                for name, stored, expected in (
                    ("room", row.room_id, visit_id),
                    ("seq", row.seq, details.get("seq")),
                    ("kind", row.kind, details.get("kind")),
                )
                if stored != expected
            ]
            if cipher_ready and not differs and _mac_differs(db, row, details):
                differs.append("text")
            if differs:
                findings.append(
                    Finding("chat_altered", f"message differs in {', '.join(differs)}", seq, row.id)
                )
        for message_id in messages.keys() - seen:
            seq, _visit_id, _details = messages[message_id]
            findings.append(Finding("chat_missing", "a recorded message is gone", seq, message_id))
        block_rows = await session.stream_scalars(select(ChatBlock))
        seen.clear()
        async for block in block_rows:
            seen.add(block.id)
            recorded = blocks.get(block.id)
            if recorded is None:
                findings.append(
                    Finding("chat_unaudited", "a block no room.chat event records", None, block.id)
                )
            elif recorded[1] != block.room_id or (
                cipher_ready and _mac_differs(db, block, recorded[2])
            ):
                findings.append(Finding("chat_altered", "block differs", recorded[0], block.id))
        for block_id in blocks.keys() - seen:
            findings.append(
                Finding(
                    "chat_missing",
                    "a recorded blocked message is gone",
                    blocks[block_id][0],
                    block_id,
                )
            )
    return sorted(findings, key=lambda f: (f.seq or 0, f.object_id or ""))


def _mac_differs(db: Database, row: ChatMessage | ChatBlock, details: dict[str, Any]) -> bool:
    try:
        text = chat.stored_text(db, row)
    except FieldDecryptError:
        return True
    expected = details.get("text_mac")
    if text is None:
        return expected is not None
    return expected != chat.text_mac(db, text)
