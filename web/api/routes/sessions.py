"""Sign-in, sign-out, the caller's own account, TOTP enrolment and password change (R33)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from consult import accounts
from consult.actor import Actor
from consult.permissions import Role

from ..call import Call
from ..fields import Id, Input, Output, Password, Storable, TotpCode
from ..registry import api

# Sign-in takes any storable username and code, so that a malformed one is a failed (and
# audited) sign-in rather than a validation error.
LoginName = Annotated[str, StringConstraints(min_length=1, max_length=64), Storable]
LoginCode = Annotated[str, StringConstraints(min_length=1, max_length=16), Storable]


class SignIn(Input):
    username: LoginName
    password: Password
    totp_code: LoginCode | None = Field(
        default=None, description="The 6-digit code of the authenticator app (staff: mandatory)."
    )


class Me(Output):
    user_id: Id
    username: str
    display_name: str
    role: Role
    institution_id: str | None
    department_ids: list[str]
    totp_enrolled: bool
    enrolment_only: bool = Field(
        description="A staff session without a confirmed TOTP secret: it may only enrol one."
    )


class SignedIn(Output):
    token: str = Field(description="The bearer token; shown once, rotated at every sign-in.")
    session_id: str
    expires_at: datetime = Field(description="Absolute end of the session.")
    idle_timeout_s: int
    totp_enrolment_required: bool
    me: Me


class TotpEnrolment(Output):
    secret: str = Field(description="Base32 secret, to type into an authenticator app.")
    otpauth_uri: str = Field(description="The otpauth:// URI (what a QR code would carry).")


class TotpConfirm(Input):
    code: TotpCode


class PasswordChange(Input):
    current_password: Password
    new_password: Password


async def me_of(call: Call, actor: Actor) -> Me:
    account = await accounts.my_account(call.db, actor)
    return Me(
        user_id=account.id,
        username=account.username,
        display_name=account.display_name,
        role=account.role,
        institution_id=account.institution_id,
        department_ids=sorted(actor.department_ids),
        totp_enrolled=account.totp_enrolled,
        enrolment_only=actor.enrolment_only,
    )


@api.operation("POST", "/session", action=None, tag="session", status=201)
async def sign_in(call: Call, body: SignIn) -> SignedIn:
    """Sign in with password (and TOTP code); returns a new bearer token."""
    result = await accounts.sign_in(
        call.db, body.username, body.password, body.totp_code, call.source_ip
    )
    actor = await accounts.authenticate(call.db, result.token, call.source_ip)
    return SignedIn(
        token=result.token,
        session_id=result.session_id,
        expires_at=result.expires_at,
        idle_timeout_s=result.idle_timeout_s,
        totp_enrolment_required=result.totp_enrolment_required,
        me=await me_of(call, actor),
    )


@api.operation("DELETE", "/session", action="session.sign_out", tag="session")
async def sign_out(call: Call) -> None:
    """Sign out: the bearer token is revoked."""
    await accounts.sign_out(call.db, call.me)


@api.operation("GET", "/me", action="session.view", tag="session")
async def get_me(call: Call) -> Me:
    """Who the bearer token belongs to."""
    return await me_of(call, call.me)


@api.operation("POST", "/me/totp", action="account.enrol_totp", tag="session", status=201)
async def enrol_totp(call: Call) -> TotpEnrolment:
    """Start TOTP enrolment: a new secret, shown once."""
    enrolment = await accounts.enrol_totp(call.db, call.me)
    return TotpEnrolment(secret=enrolment.secret, otpauth_uri=enrolment.provisioning_uri)


@api.operation("POST", "/me/totp/confirm", action="account.confirm_totp", tag="session")
async def confirm_totp(call: Call, body: TotpConfirm) -> Me:
    """Confirm the pending TOTP secret with a current code; the session becomes a full one."""
    await accounts.confirm_totp(call.db, call.me, body.code)
    assert call.bearer is not None
    return await me_of(call, await accounts.authenticate(call.db, call.bearer, call.source_ip))


@api.operation("POST", "/me/password", action="account.change_password", tag="session")
async def change_password(call: Call, body: PasswordChange) -> None:
    """Change one's own password; the account's other sessions end."""
    await accounts.change_password(call.db, call.me, body.current_password, body.new_password)
