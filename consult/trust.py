"""Trusted signatures and time (R26): SM2 signatures and RFC 3161 timestamps.

One module for everything that signs or stamps: the audit and recording checkpoints
(:mod:`consult.checkpoints`) use it now, the consultation reports will.

SM2 (GB/T 32918, with SM3) goes through the system's OpenSSL 3 ``libcrypto`` by ``ctypes``:
the ``cryptography`` wheel has no SM2, and Debian's libcrypto gets security updates and is
constant-time. The distinguishing ID is always passed explicitly, ``1234567812345678`` (GB/T
35276): OpenSSL 3.0 defaults to an empty one, 3.2+ to this one, so leaving it implicit would
make signatures that other tools (and a later OpenSSL) reject. A signature is the DER
``SEQUENCE {r, s}`` OpenSSL makes, interoperable with ``openssl pkeyutl -sign -rawin -digest sm3
-pkeyopt distid:1234567812345678``.

Timestamps come from an RFC 3161 time-stamping authority (``rfc3161-client``): the request's
imprint is SHA-256 of the stamped bytes; the reply (DER ``TimeStampResp``) is kept whole and
verified against the authority's CA certificates.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import ctypes.util
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Final

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from rfc3161_client import (
    TimestampRequestBuilder,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)
from rfc3161_client.base import HashAlgorithm

from consult.crypto import sm3_hex

SM2_ID: Final = b"1234567812345678"
"""The SM2 distinguishing ID of GB/T 35276, passed explicitly to every sign and verify."""
SIGNATURE_ALGORITHM: Final = "SM2-with-SM3"
TSA_TIMEOUT_S: Final = 10.0
_BIO_CTRL_INFO: Final = 3


class TrustError(Exception):
    """A key that cannot be read or made, a failed signature, or an unreachable authority."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# --- libcrypto -----------------------------------------------------------------------------------


@cache
def _libcrypto() -> ctypes.CDLL:
    name = ctypes.util.find_library("crypto") or "libcrypto.so.3"
    lib = ctypes.CDLL(name)
    p, i, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "OpenSSL_version_num": (ctypes.c_ulong, []),
        "ERR_get_error": (ctypes.c_ulong, []),
        "ERR_error_string_n": (None, [ctypes.c_ulong, ctypes.c_char_p, sz]),
        "ERR_clear_error": (None, []),
        "BIO_s_mem": (p, []),
        "BIO_new": (p, [p]),
        "BIO_new_mem_buf": (p, [ctypes.c_char_p, i]),
        "BIO_ctrl": (ctypes.c_long, [p, i, ctypes.c_long, p]),
        "BIO_free": (i, [p]),
        "EVP_PKEY_CTX_new_from_name": (p, [p, ctypes.c_char_p, ctypes.c_char_p]),
        "EVP_PKEY_CTX_new": (p, [p, p]),
        "EVP_PKEY_CTX_free": (None, [p]),
        "EVP_PKEY_CTX_set1_id": (i, [p, ctypes.c_char_p, i]),
        "EVP_PKEY_keygen_init": (i, [p]),
        "EVP_PKEY_generate": (i, [p, ctypes.POINTER(p)]),
        "EVP_PKEY_free": (None, [p]),
        "EVP_PKEY_is_a": (i, [p, ctypes.c_char_p]),
        "PEM_write_bio_PrivateKey": (i, [p, p, p, p, i, p, p]),
        "PEM_write_bio_PUBKEY": (i, [p, p]),
        "PEM_read_bio_PrivateKey": (p, [p, p, p, p]),
        "PEM_read_bio_PUBKEY": (p, [p, p, p, p]),
        "EVP_MD_CTX_new": (p, []),
        "EVP_MD_CTX_free": (None, [p]),
        "EVP_MD_CTX_set_pkey_ctx": (None, [p, p]),
        "EVP_sm3": (p, []),
        "EVP_DigestSignInit": (i, [p, p, p, p, p]),
        "EVP_DigestSign": (i, [p, ctypes.c_char_p, ctypes.POINTER(sz), ctypes.c_char_p, sz]),
        "EVP_DigestVerifyInit": (i, [p, p, p, p, p]),
        "EVP_DigestVerify": (i, [p, ctypes.c_char_p, sz, ctypes.c_char_p, sz]),
    }
    for function, (restype, argtypes) in signatures.items():
        symbol = getattr(lib, function)
        symbol.restype = restype
        symbol.argtypes = argtypes
    if lib.OpenSSL_version_num() < 0x3000000F:
        raise TrustError("sm2_unavailable", "SM2 needs OpenSSL 3 (libcrypto.so.3)")
    return lib


def _openssl_error(lib: ctypes.CDLL, what: str) -> TrustError:
    code = lib.ERR_get_error()
    buffer = ctypes.create_string_buffer(256)
    if code:
        lib.ERR_error_string_n(code, buffer, len(buffer))
    lib.ERR_clear_error()
    return TrustError("sm2_failed", f"{what}: {buffer.value.decode(errors='replace')}")


def _bio_bytes(lib: ctypes.CDLL, bio: int) -> bytes:
    data = ctypes.c_void_p()
    length = lib.BIO_ctrl(bio, _BIO_CTRL_INFO, 0, ctypes.byref(data))
    return ctypes.string_at(data, length) if length > 0 and data.value else b""


_PasswordCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p
)


@_PasswordCallback
def _no_password(_buf: int, _size: int, _rwflag: int, _u: int) -> int:
    """A passphrase-protected key is refused, never prompted for on the terminal."""
    return -1


def _read_pem(pem: bytes, *, private: bool) -> int:
    lib = _libcrypto()
    bio = lib.BIO_new_mem_buf(pem, len(pem))
    try:
        read = lib.PEM_read_bio_PrivateKey if private else lib.PEM_read_bio_PUBKEY
        pkey = read(bio, None, _no_password, None)
    finally:
        lib.BIO_free(bio)
    if not pkey:
        lib.ERR_clear_error()
        raise TrustError("key_invalid", "not a PEM key")
    if lib.EVP_PKEY_is_a(pkey, b"SM2") != 1:
        lib.EVP_PKEY_free(pkey)
        raise TrustError("key_invalid", "not an SM2 key")
    return int(pkey)


class _Key:
    """An ``EVP_PKEY`` handle, freed with the object."""

    def __init__(self, pkey: int) -> None:
        self._pkey = pkey

    def __del__(self) -> None:
        pkey, self._pkey = getattr(self, "_pkey", 0), 0
        if pkey:
            with contextlib.suppress(Exception):  # at interpreter exit the library may be gone
                _libcrypto().EVP_PKEY_free(pkey)

    def _digest_ctx(self, sign: bool) -> tuple[int, int]:
        """An ``EVP_MD_CTX`` set up for SM2-with-SM3 under :data:`SM2_ID`, and its pkey ctx."""
        lib = _libcrypto()
        md_ctx = lib.EVP_MD_CTX_new()
        pkey_ctx = lib.EVP_PKEY_CTX_new(self._pkey, None)
        if not md_ctx or not pkey_ctx:
            lib.EVP_MD_CTX_free(md_ctx)
            lib.EVP_PKEY_CTX_free(pkey_ctx)
            raise _openssl_error(lib, "context")
        init = lib.EVP_DigestSignInit if sign else lib.EVP_DigestVerifyInit
        if (
            lib.EVP_PKEY_CTX_set1_id(pkey_ctx, SM2_ID, len(SM2_ID)) != 1
            or lib.EVP_MD_CTX_set_pkey_ctx(md_ctx, pkey_ctx) is not None
            or init(md_ctx, None, lib.EVP_sm3(), None, self._pkey) != 1
        ):
            lib.EVP_MD_CTX_free(md_ctx)
            lib.EVP_PKEY_CTX_free(pkey_ctx)
            raise _openssl_error(lib, "init")
        return md_ctx, pkey_ctx

    def verify(self, data: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's SM2 signature of ``data``."""
        lib = _libcrypto()
        md_ctx, pkey_ctx = self._digest_ctx(sign=False)
        try:
            ok = lib.EVP_DigestVerify(md_ctx, signature, len(signature), data, len(data)) == 1
        finally:
            lib.EVP_MD_CTX_free(md_ctx)
            lib.EVP_PKEY_CTX_free(pkey_ctx)
            lib.ERR_clear_error()
        return ok

    def public_pem(self) -> bytes:
        """The public key as PEM ``SubjectPublicKeyInfo``."""
        lib = _libcrypto()
        bio = lib.BIO_new(lib.BIO_s_mem())
        try:
            if lib.PEM_write_bio_PUBKEY(bio, self._pkey) != 1:
                raise _openssl_error(lib, "public key")
            return _bio_bytes(lib, bio)
        finally:
            lib.BIO_free(bio)

    @property
    def key_id(self) -> str:
        """SM3 of the public key's DER ``SubjectPublicKeyInfo`` (hex): names the key."""
        body = b"".join(
            line for line in self.public_pem().splitlines() if line and not line.startswith(b"-")
        )
        der = base64.b64decode(body)
        return sm3_hex(der)


class SM2PublicKey(_Key):
    """A public SM2 key, to verify signatures."""

    @classmethod
    def from_pem(cls, pem: bytes) -> SM2PublicKey:
        return cls(_read_pem(pem, private=False))


class SM2Key(_Key):
    """A private SM2 key (signs; verifies too)."""

    @classmethod
    def generate(cls) -> SM2Key:
        lib = _libcrypto()
        ctx = lib.EVP_PKEY_CTX_new_from_name(None, b"SM2", None)
        pkey = ctypes.c_void_p()
        try:
            if not ctx or lib.EVP_PKEY_keygen_init(ctx) != 1:
                raise _openssl_error(lib, "keygen")
            if lib.EVP_PKEY_generate(ctx, ctypes.byref(pkey)) != 1 or not pkey.value:
                raise _openssl_error(lib, "keygen")
        finally:
            lib.EVP_PKEY_CTX_free(ctx)
        return cls(int(pkey.value))

    @classmethod
    def from_pem(cls, pem: bytes) -> SM2Key:
        return cls(_read_pem(pem, private=True))

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (keep it mode 0600)."""
        lib = _libcrypto()
        bio = lib.BIO_new(lib.BIO_s_mem())
        try:
            if lib.PEM_write_bio_PrivateKey(bio, self._pkey, None, None, 0, None, None) != 1:
                raise _openssl_error(lib, "private key")
            return _bio_bytes(lib, bio)
        finally:
            lib.BIO_free(bio)

    def public(self) -> SM2PublicKey:
        return SM2PublicKey.from_pem(self.public_pem())

    def sign(self, data: bytes) -> bytes:
        """The SM2 signature (DER) of ``data``, SM3 with :data:`SM2_ID`."""
        lib = _libcrypto()
        md_ctx, pkey_ctx = self._digest_ctx(sign=True)
        try:
            size = ctypes.c_size_t(0)
            if lib.EVP_DigestSign(md_ctx, None, ctypes.byref(size), data, len(data)) != 1:
                raise _openssl_error(lib, "sign")
            buffer = ctypes.create_string_buffer(size.value)
            if lib.EVP_DigestSign(md_ctx, buffer, ctypes.byref(size), data, len(data)) != 1:
                raise _openssl_error(lib, "sign")
            return buffer.raw[: size.value]
        finally:
            lib.EVP_MD_CTX_free(md_ctx)
            lib.EVP_PKEY_CTX_free(pkey_ctx)


def load_or_create_key(path: Path) -> SM2Key:
    """The SM2 key kept at ``path`` (PEM, mode 0600), made on first use.

    Written to a temporary file and linked into place, so two processes starting together end
    up with the same key (the second link fails and both read the first).
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(SM2Key.generate().private_pem())
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    return SM2Key.from_pem(path.read_bytes())


# --- RFC 3161 ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stamp:
    """A verified timestamp: when the authority saw the imprint, and its serial number."""

    at: datetime
    serial: int


class TimestampAuthority:
    """An RFC 3161 time-stamping authority reached over HTTP (``application/timestamp-query``)."""

    def __init__(self, url: str, *, timeout_s: float = TSA_TIMEOUT_S) -> None:
        self.url = url
        self.timeout_s = timeout_s

    async def stamp(self, data: bytes) -> bytes:
        """The authority's DER ``TimeStampResp`` for SHA-256 of ``data`` (its certificate in).

        Raises :class:`TrustError` (``tsa_unreachable``, ``tsa_refused``) when no good reply
        comes; the reply is checked to carry this imprint and nonce.
        """
        request = (
            TimestampRequestBuilder()
            .data(data)
            .hash_algorithm(HashAlgorithm.SHA256)
            .cert_request(cert_request=True)
            .nonce(nonce=True)
            .build()
        )
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(
                    self.url,
                    data=request.as_bytes(),
                    headers={"Content-Type": "application/timestamp-query"},
                ) as reply,
            ):
                body = await reply.read()
                status = reply.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TrustError("tsa_unreachable", f"{type(exc).__name__}") from None
        if status != 200:
            raise TrustError("tsa_refused", f"HTTP {status}")
        try:
            response = decode_timestamp_response(body)
        except ValueError:
            raise TrustError("tsa_refused", "not a TimeStampResp") from None
        if response.status != 0 or response.tst_info.nonce != request.nonce:
            raise TrustError("tsa_refused", f"status {response.status}")
        if response.tst_info.message_imprint.message != _sha256(data):
            raise TrustError("tsa_refused", "imprint")
        return response.as_bytes()


def _sha256(data: bytes) -> bytes:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize()


def load_certificates(pem: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle."""
    return x509.load_pem_x509_certificates(pem)


def verify_timestamp(response_der: bytes, data: bytes, roots: list[x509.Certificate]) -> Stamp:
    """Check a ``TimeStampResp`` over ``data`` against the authority's CA ``roots``.

    Raises :class:`TrustError` (``timestamp_invalid``) when it does not hold.
    """
    if not roots:
        raise TrustError("timestamp_invalid", "no CA certificate configured for the authority")
    try:
        response = decode_timestamp_response(response_der)
        builder = VerifierBuilder()
        for root in roots:
            builder = builder.add_root_certificate(root)
        builder.build().verify_message(response, data)
    except (ValueError, VerificationError) as exc:
        raise TrustError("timestamp_invalid", str(exc)[:200]) from None
    return Stamp(response.tst_info.gen_time, response.tst_info.serial_number)
