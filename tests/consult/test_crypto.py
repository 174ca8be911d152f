"""R36: SM4-GCM field encryption, HMAC-SM3 blind indexes, SM3 digests."""

from __future__ import annotations

import base64

import pytest

from consult.crypto import FieldCipher, FieldDecryptError, hmac_sm3, sm3_hex

KEY = "crypto-test-field-key-" + "x" * 32
OTHER_KEY = "crypto-test-other-key-" + "y" * 32
CTX = "patients.id_number"
ID_NUMBER = "11010519491231002X"


def test_r36_sm3_matches_the_standard_vector() -> None:
    # GB/T 32905-2016, example 1: SM3("abc").
    assert sm3_hex(b"abc") == "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
    assert sm3_hex("abc") == sm3_hex(b"abc")


def test_r36_hmac_sm3_is_keyed() -> None:
    assert hmac_sm3(b"k" * 32, b"x") != hmac_sm3(b"l" * 32, b"x")
    assert len(hmac_sm3(b"k" * 32, b"x")) == 32


def test_r36_round_trip_and_fresh_nonce() -> None:
    cipher = FieldCipher(KEY)
    first, second = cipher.encrypt(ID_NUMBER, CTX), cipher.encrypt(ID_NUMBER, CTX)
    assert first != second  # random nonce per value
    assert first.startswith("1.")  # versioned format
    assert ID_NUMBER not in first
    assert cipher.decrypt(first, CTX) == cipher.decrypt(second, CTX) == ID_NUMBER
    assert cipher.decrypt(cipher.encrypt("张三 13800138000", CTX), CTX) == "张三 13800138000"
    assert cipher.decrypt(cipher.encrypt("", CTX), CTX) == ""


def test_r36_keys_are_derived_not_the_secret() -> None:
    assert "x" * 32 not in repr(FieldCipher(KEY))


def test_r36_other_key_or_context_fails() -> None:
    token = FieldCipher(KEY).encrypt(ID_NUMBER, CTX)
    with pytest.raises(FieldDecryptError):
        FieldCipher(OTHER_KEY).decrypt(token, CTX)
    with pytest.raises(FieldDecryptError):
        FieldCipher(KEY).decrypt(token, "patients.phone")


def test_r36_tampering_is_detected() -> None:
    cipher = FieldCipher(KEY)
    token = cipher.encrypt(ID_NUMBER, CTX)
    raw = bytearray(base64.urlsafe_b64decode(token[2:] + "=" * (-len(token[2:]) % 4)))
    for position in (0, 12, len(raw) - 1):  # nonce, body, tag
        flipped = bytearray(raw)
        flipped[position] ^= 1
        forged = "1." + base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode()
        with pytest.raises(FieldDecryptError):
            cipher.decrypt(forged, CTX)


@pytest.mark.parametrize("garbage", ["", "1.", "2.abcd", "abc", "1.!!!!", "1.AAAA", None, 42])
def test_r36_malformed_ciphertexts_fail_cleanly(garbage: object) -> None:
    with pytest.raises(FieldDecryptError):
        FieldCipher(KEY).decrypt(garbage, CTX)  # type: ignore[arg-type]


def test_r36_blind_index_is_deterministic_keyed_and_per_column() -> None:
    cipher = FieldCipher(KEY)
    index = cipher.blind_index(ID_NUMBER, CTX)
    assert index == cipher.blind_index(ID_NUMBER, CTX)
    assert len(index) == 64
    assert index != FieldCipher(OTHER_KEY).blind_index(ID_NUMBER, CTX)
    assert index != cipher.blind_index(ID_NUMBER, "patients.phone")
    assert index != sm3_hex(ID_NUMBER)  # not a bare hash that anyone could recompute
    assert cipher.index_matches(index, ID_NUMBER, CTX)
    assert not cipher.index_matches(index, "110105194912310029", CTX)


@pytest.mark.parametrize("secret", ["", "short", "z" * 31])
def test_r36_short_key_is_a_configuration_error(secret: str) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        FieldCipher(secret)
