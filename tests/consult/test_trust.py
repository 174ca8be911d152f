"""R26: SM2 signatures through the system libcrypto, and RFC 3161 timestamps from an authority.

SM2 signatures interoperate with Debian's ``openssl pkeyutl`` both ways under the explicit ID
1234567812345678; a local ``openssl ts`` authority stamps and the stamps verify.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from timestamping import make_authority, need_openssl, serve_authority

from consult.trust import (
    SM2Key,
    SM2PublicKey,
    TimestampAuthority,
    TrustError,
    load_certificates,
    load_or_create_key,
    verify_timestamp,
)


def test_r26_sm2_signs_and_verifies_and_refuses_another_message() -> None:
    key = SM2Key.generate()
    signature = key.sign(b"checkpoint body")
    assert key.verify(b"checkpoint body", signature)
    assert key.public().verify(b"checkpoint body", signature)
    assert not key.verify(b"checkpoint bodY", signature)
    assert not SM2Key.generate().verify(b"checkpoint body", signature)
    assert not key.verify(b"checkpoint body", signature[:-1] + bytes([signature[-1] ^ 1]))
    assert not key.verify(b"checkpoint body", b"")
    assert key.key_id == key.public().key_id and len(key.key_id) == 64


def test_r26_sm2_interoperates_with_openssl_both_ways(tmp_path: Path) -> None:
    """Signatures use the GB/T 35276 ID explicitly: OpenSSL 3.0 would default to an empty one."""
    openssl = need_openssl()
    key = SM2Key.generate()
    (tmp_path / "key.pem").write_bytes(key.private_pem())
    (tmp_path / "pub.pem").write_bytes(key.public_pem())
    (tmp_path / "msg").write_bytes(b"audit head 42")
    (tmp_path / "ours.sig").write_bytes(key.sign(b"audit head 42"))
    common = ["-rawin", "-digest", "sm3", "-pkeyopt", "distid:1234567812345678"]
    verified = subprocess.run(
        [openssl, "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", *common,
         "-in", "msg", "-sigfile", "ours.sig"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0 and "Verified Successfully" in verified.stdout, verified
    subprocess.run(
        [openssl, "pkeyutl", "-sign", "-inkey", "key.pem", *common, "-in", "msg", "-out",
         "theirs.sig"],
        cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip
    public = SM2PublicKey.from_pem((tmp_path / "pub.pem").read_bytes())
    assert public.verify(b"audit head 42", (tmp_path / "theirs.sig").read_bytes())
    # a key made by the CLI loads too
    subprocess.run(
        [openssl, "genpkey", "-algorithm", "SM2", "-out", "cli.pem"],
        cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip
    cli_key = SM2Key.from_pem((tmp_path / "cli.pem").read_bytes())
    assert cli_key.verify(b"x", cli_key.sign(b"x"))


def test_r26_the_key_file_is_made_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "data" / "signing.key"
    first = load_or_create_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = load_or_create_key(path)
    assert again.key_id == first.key_id
    assert again.verify(b"m", first.sign(b"m"))


@pytest.mark.parametrize(
    "pem",
    [b"", b"not a key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"],
)
def test_r26_a_bad_key_is_a_stable_error(pem: bytes) -> None:
    with pytest.raises(TrustError) as info:
        SM2Key.from_pem(pem)
    assert info.value.code == "key_invalid"
    with pytest.raises(TrustError):
        SM2PublicKey.from_pem(pem)


def test_r26_an_ec_or_locked_key_is_not_a_usable_sm2_key(tmp_path: Path) -> None:
    openssl = need_openssl()
    subprocess.run(
        [openssl, "genpkey", "-algorithm", "SM2", "-aes256", "-pass", "pass:secret", "-out",
         "locked.pem"],
        cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip
    with pytest.raises(TrustError) as info:  # refused, never prompted for
        SM2Key.from_pem((tmp_path / "locked.pem").read_bytes())
    assert info.value.code == "key_invalid"
    subprocess.run(
        [openssl, "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ec.pem"],
        cwd=tmp_path, check=True, capture_output=True,
    )  # fmt: skip
    with pytest.raises(TrustError) as info:
        SM2Key.from_pem((tmp_path / "ec.pem").read_bytes())
    assert info.value.code == "key_invalid"


async def test_r26_a_local_authority_stamps_and_the_stamp_verifies(tmp_path: Path) -> None:
    authority = make_authority(tmp_path / "tsa")
    roots = load_certificates(authority.ca_file.read_bytes())
    async with serve_authority(authority) as url:
        response = await TimestampAuthority(url).stamp(b"signed checkpoint")
    stamp = verify_timestamp(response, b"signed checkpoint", roots)
    assert stamp.at.tzinfo is not None and stamp.serial > 0
    with pytest.raises(TrustError) as info:
        verify_timestamp(response, b"another checkpoint", roots)
    assert info.value.code == "timestamp_invalid"
    other = make_authority(tmp_path / "other")  # a stamp checked against another CA
    with pytest.raises(TrustError):
        verify_timestamp(
            response, b"signed checkpoint", load_certificates(other.ca_file.read_bytes())
        )
    with pytest.raises(TrustError):
        verify_timestamp(b"\x30\x03garbage", b"signed checkpoint", roots)


async def test_r26_an_unreachable_authority_is_a_stable_error() -> None:
    with pytest.raises(TrustError) as info:
        await TimestampAuthority("http://127.0.0.1:9/", timeout_s=2).stamp(b"x")
    assert info.value.code == "tsa_unreachable"
