"""National-algorithm cryptography for data at rest (R36): SM4 field encryption, SM3 digests.

One secret from configuration (``field_key``, at least 32 bytes; never stored in the database)
yields, through HKDF-SM3, two independent keys: an SM4 key that encrypts fields and an HMAC-SM3
key for blind indexes (equality lookup of an encrypted value without decrypting every row).

Ciphertext format, version 1 (a string, safe in any text column)::

    "1." + base64url_nopad(nonce[12] || SM4-GCM ciphertext || tag[16])

The associated data binds each value to its column (``context``, e.g. ``"patients.id_number"``)
and to the format version, so a ciphertext copied into another column or row kind fails to
decrypt. A fresh random nonce is drawn for every value. A later version number (key rotation,
another mode) gets its own prefix; readers dispatch on it.
"""

from __future__ import annotations

import base64
import binascii
import hmac as std_hmac
import os
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_KEY_BYTES: Final = 32
VERSION: Final = "1"
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
SM4_KEY_BYTES: Final = 16
INDEX_KEY_BYTES: Final = 32
GENESIS_DIGEST: Final = "0" * 64
"""The SM3-sized all-zero digest that stands before the first link of a hash chain."""

_SALT: Final = b"teleconsult field key v1"
_INFO_ENCRYPTION: Final = b"sm4-gcm field encryption"
_INFO_INDEX: Final = b"hmac-sm3 blind index"


class FieldDecryptError(ValueError):
    """A stored ciphertext is malformed, of an unknown version, altered, or under another key.

    This is a server-side integrity or configuration problem (wrong ``field_key``), never a
    client error: let it propagate as a 500 and alert.
    """


def sm3_digest(data: bytes | str) -> bytes:
    """The SM3 digest (32 bytes) of ``data`` (a ``str`` is encoded as UTF-8)."""
    raw = data.encode() if isinstance(data, str) else data
    digest = hashes.Hash(hashes.SM3())
    digest.update(raw)
    return digest.finalize()


def sm3_hex(data: bytes | str) -> str:
    """The SM3 digest of ``data`` as 64 lowercase hex characters."""
    return sm3_digest(data).hex()


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    """HMAC-SM3 of ``data`` under ``key`` (32 bytes)."""
    mac = crypto_hmac.HMAC(key, hashes.SM3())
    mac.update(data)
    return mac.finalize()


def _derive(secret: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SM3(), length=length, salt=_SALT, info=info).derive(secret)


class FieldCipher:
    """Encrypts and indexes sensitive fields under keys derived from one configured secret.

    Raises ``ValueError`` at construction for a secret shorter than 32 bytes: a configuration
    error, not something to run with.
    """

    def __init__(self, field_key: str) -> None:
        if not isinstance(field_key, str) or len(field_key.encode()) < MIN_KEY_BYTES:
            raise ValueError(f"field_key must be at least {MIN_KEY_BYTES} bytes long")
        secret = field_key.encode()
        self._sm4_key = _derive(secret, _INFO_ENCRYPTION, SM4_KEY_BYTES)
        self._index_key = _derive(secret, _INFO_INDEX, INDEX_KEY_BYTES)

    def __repr__(self) -> str:
        return "FieldCipher(<keys hidden>)"

    def encrypt(self, plaintext: str, context: str) -> str:
        """Encrypt ``plaintext`` for the column named by ``context``; a new nonce every call."""
        nonce = os.urandom(NONCE_BYTES)
        encryptor = Cipher(algorithms.SM4(self._sm4_key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(_aad(context))
        body = encryptor.update(plaintext.encode()) + encryptor.finalize()
        packed = nonce + body + encryptor.tag
        return f"{VERSION}.{base64.urlsafe_b64encode(packed).rstrip(b'=').decode()}"

    def decrypt(self, token: str, context: str) -> str:
        """Decrypt a value produced by :meth:`encrypt` with the same ``context``.

        Raises :class:`FieldDecryptError` when the value is malformed, of an unknown version,
        was altered, belongs to another context, or was made under another key.
        """
        version, sep, encoded = token.partition(".") if isinstance(token, str) else ("", "", "")
        if not sep or version != VERSION:
            raise FieldDecryptError("unknown ciphertext format")
        try:
            packed = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError) as exc:
            raise FieldDecryptError("ciphertext is not base64url") from exc
        if len(packed) < NONCE_BYTES + TAG_BYTES:
            raise FieldDecryptError("ciphertext is too short")
        nonce, body, tag = packed[:NONCE_BYTES], packed[NONCE_BYTES:-TAG_BYTES], packed[-TAG_BYTES:]
        decryptor = Cipher(algorithms.SM4(self._sm4_key), modes.GCM(nonce, tag)).decryptor()
        decryptor.authenticate_additional_data(_aad(context))
        try:
            plain = decryptor.update(body) + decryptor.finalize()
        except InvalidTag as exc:
            raise FieldDecryptError("ciphertext failed authentication") from exc
        try:
            return plain.decode()
        except UnicodeDecodeError as exc:  # authenticated, so only a bug could get here
            raise FieldDecryptError("plaintext is not UTF-8") from exc

    def encrypt_bytes(self, plaintext: bytes, context: str) -> bytes:
        """Encrypt binary data (an image): ``VERSION`` byte || nonce || ciphertext || tag.

        The same SM4-GCM and associated data as :meth:`encrypt`, without the base64 text form.
        """
        nonce = os.urandom(NONCE_BYTES)
        encryptor = Cipher(algorithms.SM4(self._sm4_key), modes.GCM(nonce)).encryptor()
        encryptor.authenticate_additional_data(_aad(context))
        body = encryptor.update(plaintext) + encryptor.finalize()
        return VERSION.encode() + nonce + body + encryptor.tag

    def decrypt_bytes(self, packed: bytes, context: str) -> bytes:
        """Decrypt what :meth:`encrypt_bytes` made; :class:`FieldDecryptError` when it fails."""
        if len(packed) < 1 + NONCE_BYTES + TAG_BYTES or packed[:1] != VERSION.encode():
            raise FieldDecryptError("unknown binary ciphertext format")
        nonce = packed[1 : 1 + NONCE_BYTES]
        body, tag = packed[1 + NONCE_BYTES : -TAG_BYTES], packed[-TAG_BYTES:]
        decryptor = Cipher(algorithms.SM4(self._sm4_key), modes.GCM(nonce, tag)).decryptor()
        decryptor.authenticate_additional_data(_aad(context))
        try:
            return decryptor.update(body) + decryptor.finalize()
        except InvalidTag as exc:
            raise FieldDecryptError("ciphertext failed authentication") from exc

    def blind_index(self, value: str, context: str) -> str:
        """A keyed, deterministic HMAC-SM3 of ``value`` for equality lookup (64 hex chars).

        Normalise ``value`` before calling (the same person must give the same string). The
        context keeps indexes of different columns unrelated.
        """
        return hmac_sm3(self._index_key, _aad(context) + b"\x00" + value.encode()).hex()

    def index_matches(self, stored: str, value: str, context: str) -> bool:
        """Compare a stored blind index with ``value``'s in constant time."""
        return std_hmac.compare_digest(stored, self.blind_index(value, context))


def _aad(context: str) -> bytes:
    if not context:
        raise ValueError("a non-empty context is required")
    return f"teleconsult/{VERSION}/{context}".encode()
