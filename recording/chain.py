"""SM3 digests and the hash chain that binds a recording's manifest entries together.

``recording`` imports only ``media``, so it carries its own few lines of SM3 (from
``cryptography``, the same primitive ``consult.crypto`` uses for the audit chain).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes

#: Stands before the first link of every chain.
GENESIS = "0" * 64

_CHUNK = 1 << 20


def sm3_hex(data: bytes | str) -> str:
    digest = hashes.Hash(hashes.SM3())
    digest.update(data.encode() if isinstance(data, str) else data)
    return digest.finalize().hex()


def sm3_file(path: Path) -> tuple[str, int]:
    """The SM3 digest (hex) and byte size of the file at ``path``."""
    digest = hashes.Hash(hashes.SM3())
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.finalize().hex(), size


def canonical(record: dict[str, Any]) -> str:
    """One stable text per record: sorted keys, no spaces, UTF-8."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def link(previous: str, record: dict[str, Any]) -> str:
    """The chain digest of ``record`` (without its own ``chain`` field) after ``previous``."""
    body = {k: v for k, v in record.items() if k != "chain"}
    return sm3_hex(previous + canonical(body))
