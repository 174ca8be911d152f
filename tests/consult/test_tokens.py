"""Join tokens: what verifies, and which error each kind of bad token gets."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest

from consult.errors import ConsultError, TokenExpired, TokenInvalid, TokenMissing
from consult.tokens import (
    AUDIENCE,
    MAX_TOKEN_CHARS,
    ROLES,
    TokenClaims,
    issue_join_token,
    verify_join_token,
)

SECRET = "test-join-secret-" + "0123456789abcdef" * 4  # 80 bytes: enough for HS512 too
OTHER_SECRET = "another-secret-" + "0123456789abcdef" * 4
NOW = 1_700_000_000
TTL = 3600
VISIT = "a" * 32
USER = "b" * 32


def _issue(**overrides: Any) -> str:
    args: dict[str, Any] = {"room_id": VISIT, "user_id": USER, "role": "doctor", "now": NOW}
    args.update(overrides)
    return issue_join_token(SECRET, ttl_s=TTL, **args)


def _payload(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "sub": USER,
        "room": VISIT,
        "role": "patient",
        "iat": NOW,
        "exp": NOW + TTL,
        "jti": "c" * 32,
        "aud": AUDIENCE,
    }
    payload.update(overrides)
    return {key: value for key, value in payload.items() if value is not _DROP}


_DROP = object()


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _expect(exc_type: type[ConsultError], code: str, token: object, now: float = NOW) -> None:
    with pytest.raises(exc_type) as info:
        verify_join_token(SECRET, token, now=now)
    assert info.value.code == code
    assert info.value.message == str(info.value)


def test_roles() -> None:
    assert ROLES == (
        "doctor",
        "patient",
        "guardian",
        "companion",
        "interpreter",
        "inviter",
        "invitee",
        "observer",
    )


@pytest.mark.parametrize("role", ROLES)
def test_round_trip(role: str) -> None:
    token = _issue(role=role)
    claims = verify_join_token(SECRET, token, now=NOW + 10)
    assert isinstance(claims, TokenClaims)
    assert claims.room_id == VISIT
    assert claims.user_id == USER
    assert claims.role == role
    assert claims.expires_at == NOW + TTL
    assert len(claims.token_id) == 32


def test_token_carries_the_documented_claims() -> None:
    token = _issue()
    header = jwt.get_unverified_header(token)
    payload = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "HS256"
    assert set(payload) == {"sub", "room", "role", "iat", "exp", "jti", "aud"}
    assert payload["aud"] == "teleconsult-join"
    assert payload["iat"] == NOW
    assert payload["exp"] == NOW + TTL


def test_each_token_has_its_own_id() -> None:
    first = verify_join_token(SECRET, _issue(), now=NOW)
    second = verify_join_token(SECRET, _issue(), now=NOW)
    assert first.token_id != second.token_id


def test_default_ttl_is_twelve_hours() -> None:
    token = issue_join_token(SECRET, room_id=VISIT, user_id=USER, role="patient", now=NOW)
    assert verify_join_token(SECRET, token, now=NOW).expires_at == NOW + 12 * 3600


def test_valid_until_the_last_second_then_expired() -> None:
    token = _issue()
    assert verify_join_token(SECRET, token, now=NOW + TTL - 1).user_id == USER
    _expect(TokenExpired, "token_expired", token, now=NOW + TTL)
    _expect(TokenExpired, "token_expired", token, now=NOW + TTL + 0.5)


def test_without_now_uses_the_clock() -> None:
    fresh = issue_join_token(SECRET, room_id=VISIT, user_id=USER, role="doctor")
    assert verify_join_token(SECRET, fresh).room_id == VISIT
    with pytest.raises(TokenExpired):
        verify_join_token(SECRET, _issue())  # issued in 2023 for an hour


@pytest.mark.parametrize("token", [None, ""])
def test_missing(token: object) -> None:
    _expect(TokenMissing, "token_missing", token)


def test_forged_payload_keeps_old_signature() -> None:
    header, _, signature = _issue(role="patient").split(".")
    forged = f"{header}.{_b64(_payload(role='doctor'))}.{signature}"
    _expect(TokenInvalid, "token_invalid", forged)


def test_tampered_signature() -> None:
    header, payload, signature = _issue().split(".")
    flipped = ("A" if signature[5] != "A" else "B").join((signature[:5], signature[6:]))
    _expect(TokenInvalid, "token_invalid", f"{header}.{payload}.{flipped}")


def test_signed_with_another_secret() -> None:
    token = issue_join_token(OTHER_SECRET, room_id=VISIT, user_id=USER, role="doctor", now=NOW)
    _expect(TokenInvalid, "token_invalid", token)


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none(alg: str) -> None:
    unsigned = f"{_b64({'alg': alg, 'typ': 'JWT'})}.{_b64(_payload())}."
    _expect(TokenInvalid, "token_invalid", unsigned)


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_other_hmac_algorithms_with_the_right_secret(alg: str) -> None:
    token = jwt.encode(_payload(), SECRET, algorithm=alg)
    _expect(TokenInvalid, "token_invalid", token)


@pytest.mark.parametrize("aud", ["teleconsult-api", "", ["other"], _DROP])
def test_wrong_or_missing_audience(aud: object) -> None:
    _expect(TokenInvalid, "token_invalid", jwt.encode(_payload(aud=aud), SECRET))


def test_hand_built_valid_token_verifies() -> None:
    """Guards the negative cases below: the same construction with good claims is accepted."""
    claims = verify_join_token(SECRET, jwt.encode(_payload(), SECRET), now=NOW)
    assert claims.role == "patient"


@pytest.mark.parametrize("claim", ["sub", "room", "role", "iat", "exp", "jti"])
def test_missing_claim(claim: str) -> None:
    _expect(TokenInvalid, "token_invalid", jwt.encode(_payload(**{claim: _DROP}), SECRET))


@pytest.mark.parametrize(
    "bad",
    [
        {"room": 42},
        {"room": ""},
        {"room": None},
        {"room": ["a"]},
        {"role": "admin"},
        {"role": "Doctor"},
        {"role": ""},
        {"role": 1},
        {"exp": str(NOW + TTL)},
        {"exp": True},
        {"exp": float(NOW + TTL) + 0.5},
        {"iat": "yesterday"},
        {"iat": False},
        {"jti": ""},
    ],
    ids=repr,
)
def test_ill_typed_claim(bad: dict[str, Any]) -> None:
    _expect(TokenInvalid, "token_invalid", jwt.encode(_payload(**bad), SECRET))


@pytest.mark.parametrize(
    "garbage",
    [
        " ",
        "null",
        "abc",
        "a.b.c",
        "..",
        "...",
        "eyJ.eyJ.x",
        "é.é.é",
        "\x00",
        "Bearer " + "x" * 20,
        f"{_b64({'alg': 'HS256'})}.bm90IGpzb24.sig",
        f"{_b64({'alg': 'HS256'})}.{base64.urlsafe_b64encode(b'[1,2]').decode()}.sig",
    ],
)
def test_garbage_strings(garbage: str) -> None:
    _expect(TokenInvalid, "token_invalid", garbage)


@pytest.mark.parametrize("value", [b"a.b.c", 42, 1.5, True, ["token"], {"token": "x"}, object()])
def test_non_string(value: object) -> None:
    _expect(TokenInvalid, "token_invalid", value)


def test_bytes_of_a_valid_token_are_refused() -> None:
    _expect(TokenInvalid, "token_invalid", _issue().encode())


def test_oversized_token_is_refused_even_when_signed() -> None:
    token = jwt.encode(_payload(pad="x" * MAX_TOKEN_CHARS), SECRET)
    assert len(token) > MAX_TOKEN_CHARS
    signed = jwt.decode(token, SECRET, ["HS256"], audience=AUDIENCE, options={"verify_exp": False})
    assert signed["pad"]  # a good signature: only the size is wrong
    _expect(TokenInvalid, "token_invalid", token)


def test_large_token_within_limit_verifies() -> None:
    pad = 2000
    token = jwt.encode(_payload(pad="x" * pad), SECRET)
    while len(token) <= MAX_TOKEN_CHARS:
        largest = token
        pad += 1
        token = jwt.encode(_payload(pad="x" * pad), SECRET)
    assert MAX_TOKEN_CHARS - 4 <= len(largest) <= MAX_TOKEN_CHARS
    assert verify_join_token(SECRET, largest, now=NOW).user_id == USER


def test_issue_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="role"):
        _issue(role="admin")
    with pytest.raises(ValueError, match="ttl_s"):
        issue_join_token(SECRET, room_id=VISIT, user_id=USER, role="doctor", ttl_s=0)
    with pytest.raises(ValueError, match="non-empty"):
        _issue(room_id="")


@pytest.mark.parametrize("secret", ["", "short", "x" * 31])
def test_short_secret_is_a_configuration_error(secret: str) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        issue_join_token(secret, room_id=VISIT, user_id=USER, role="doctor")
    with pytest.raises(ValueError, match="32 bytes"):
        verify_join_token(secret, _issue())
