"""The error classes carry the stable codes the client boundary sends."""

from __future__ import annotations

import pytest

from consult.errors import (
    ConsultError,
    NotAParticipant,
    TokenExpired,
    TokenInvalid,
    TokenMissing,
    VisitNotFound,
)


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (TokenMissing, "token_missing"),
        (TokenInvalid, "token_invalid"),
        (TokenExpired, "token_expired"),
        (VisitNotFound, "visit_not_found"),
        (NotAParticipant, "not_a_participant"),
    ],
)
def test_codes_are_stable_and_messages_default(cls: type[ConsultError], code: str) -> None:
    exc = cls()
    assert isinstance(exc, ConsultError)
    assert cls.code == code
    assert exc.code == code
    assert exc.message == str(exc)
    assert exc.message  # a non-empty default text


def test_message_can_be_given() -> None:
    exc = TokenInvalid("The join token is too long.")
    assert exc.message == "The join token is too long."
    assert exc.code == "token_invalid"
