"""Recordings encrypted at rest (R36): SM4-CTR files under a per-session data key.

Every segment and the composite of a session are written encrypted under the session's own
random 16-byte SM4 key. That key is never stored in the clear: ``session.json`` keeps it wrapped
by the configured key (a :class:`KeyWrapper` handed in by ``web``: SM4-GCM under the field key,
bound to the room and session). ``recording`` holds no configured key itself.

File format (``MAGIC`` + IV + ciphertext)::

    b"TCSM4CTR" (8 bytes) || IV (16 bytes, random per file) || SM4-CTR(key, IV, plain bytes)

CTR mode is a stream: byte ``i`` of the plain file is byte ``i`` of the ciphertext, so

- the muxer can seek back and rewrite a header while writing (Matroska does), and a killed
  process leaves a file that decrypts up to its last written byte (no block to complete, no tag
  to write at the end), as the plain files did;
- a player's Range request decrypts just the bytes asked for.

Integrity is not CTR's job here: each segment's SM3 digest over its stored bytes enters the
manifest chain, and the chain heads the audit chain and the signed checkpoints (R24-R26), so
``verify`` needs no key. A file without the magic is a plain one from before this format and
is read as it is.
"""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

MAGIC: Final = b"TCSM4CTR"
IV_BYTES: Final = 16
HEADER_BYTES: Final = len(MAGIC) + IV_BYTES
KEY_BYTES: Final = 16
_BLOCK: Final = 16


def key_context(room: str, session: str) -> str:
    """What a wrapped session key is bound to: a copy in another session fails to unwrap."""
    return f"recording.session_key/{room}/{session}"


@dataclass(frozen=True)
class KeyWrapper:
    """Wraps and unwraps session keys under the configured key (``(data, context)`` calls)."""

    wrap: Callable[[bytes, str], str]
    unwrap: Callable[[str, str], bytes]


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def _xor(key: bytes, iv: bytes, offset: int, data: bytes) -> bytes:
    """``data`` XOR the SM4-CTR keystream from byte ``offset`` on."""
    if not data:
        return b""
    block, skip = divmod(offset, _BLOCK)
    counter = (int.from_bytes(iv, "big") + block) % (1 << 128)
    context = Cipher(algorithms.SM4(key), modes.CTR(counter.to_bytes(16, "big"))).encryptor()
    if skip:
        context.update(bytes(skip))
    return context.update(data)


def is_encrypted(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


class EncryptedWriter(io.RawIOBase):
    """A seekable, write-only file that stores what is written SM4-CTR-encrypted (mode 0600).

    Every write goes straight to the file (``os.pwrite``), so a kill loses nothing written.
    """

    def __init__(self, path: Path, key: bytes) -> None:
        super().__init__()
        self._key = key
        self._iv = secrets.token_bytes(IV_BYTES)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(self._fd, MAGIC + self._iv)
        self._position = 0
        self._size = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        raw = bytes(data)
        os.pwrite(
            self._fd, _xor(self._key, self._iv, self._position, raw), HEADER_BYTES + self._position
        )
        self._position += len(raw)
        self._size = max(self._size, self._position)
        return len(raw)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError("negative seek position")
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


class DecryptedReader(io.RawIOBase):
    """A seekable, read-only view of an encrypted file as its plain bytes."""

    def __init__(self, path: Path, key: bytes) -> None:
        super().__init__()
        self._file = open(path, "rb")  # closed in close()
        header = self._file.read(HEADER_BYTES)
        if len(header) < HEADER_BYTES or header[: len(MAGIC)] != MAGIC:
            self._file.close()
            raise ValueError("not an encrypted recording file")
        self._key = key
        self._iv = header[len(MAGIC) :]
        self.size = os.fstat(self._file.fileno()).st_size - HEADER_BYTES
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        self._file.seek(HEADER_BYTES + self._position)
        data = self._file.read(len(view))
        plain = _xor(self._key, self._iv, self._position, data)
        view[: len(plain)] = plain
        self._position += len(plain)
        return len(plain)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError("negative seek position")
        self._position = base + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


def open_plain(path: Path, key: bytes | None) -> BinaryIO:
    """``path`` as its plain bytes: decrypted with ``key`` when it is an encrypted file."""
    if is_encrypted(path):
        if key is None:
            raise ValueError("the file is encrypted and no session key was given")
        return io.BufferedReader(DecryptedReader(path, key), buffer_size=1 << 16)
    return open(path, "rb")


def plain_size(path: Path) -> int:
    """The plain length of ``path`` (encrypted or not)."""
    size = path.stat().st_size
    return size - HEADER_BYTES if is_encrypted(path) else size


def encrypt_file(source: Path, target: Path, key: bytes, *, chunk: int = 1 << 20) -> None:
    """Write ``source`` encrypted to ``target`` (which must not exist)."""
    writer = EncryptedWriter(target, key)
    try:
        with open(source, "rb") as f:
            while data := f.read(chunk):
                writer.write(data)
        os.fsync(writer.fileno())
    finally:
        writer.close()


def decrypt_to(source: Path, target: Path, key: bytes | None, *, chunk: int = 1 << 20) -> None:
    """Write the plain bytes of ``source`` to ``target`` (for export to a player or ffprobe)."""
    with open_plain(source, key) as reader, open(target, "wb") as out:
        while data := reader.read(chunk):
            out.write(data)
