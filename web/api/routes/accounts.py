"""Account administration (R34): admin creates, lists, deactivates, unlocks and resets."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field

from consult import accounts, enrolment
from consult.accounts import AccountView
from consult.permissions import Role

from ..call import Call
from ..fields import Id, Input, Name, Output, Password, Username
from ..registry import api


class AccountCreate(Input):
    username: Username
    display_name: Name
    role: Role
    password: Password | None = Field(
        default=None, description="Omit for an account that cannot sign in with a password."
    )
    institution_id: Id | None = None
    department_id: Id | None = None
    operator_department_ids: Annotated[list[Id], Field(max_length=50)] = Field(
        default_factory=list, description="An operator's department scope (R34)."
    )


class Account(Output):
    id: str
    username: str
    display_name: str
    role: Role
    institution_id: str | None
    department_id: str | None
    department_ids: list[str]
    is_active: bool
    locked_until: datetime | None
    totp_enrolled: bool
    created_at: datetime


class AccountList(Output):
    accounts: list[Account]


class AccountQuery(Input):
    role: Role | None = None
    limit: int = Field(default=200, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class AccountPath(Input):
    user_id: Id


class PasswordReset(Input):
    new_password: Password


def account_of(view: AccountView) -> Account:
    return Account(
        id=view.id,
        username=view.username,
        display_name=view.display_name,
        role=view.role,
        institution_id=view.institution_id,
        department_id=view.department_id,
        department_ids=sorted(view.department_ids),
        is_active=view.is_active,
        locked_until=view.locked_until,
        totp_enrolled=view.totp_enrolled,
        created_at=view.created_at,
    )


@api.operation("POST", "/accounts", action="account.create", tag="accounts", status=201)
async def create_account(call: Call, body: AccountCreate) -> Account:
    """Create an account with one role."""
    view = await accounts.create_user(
        call.db,
        call.me,
        username=body.username,
        display_name=body.display_name,
        role=body.role,
        password=body.password,
        institution_id=body.institution_id,
        department_id=body.department_id,
        operator_department_ids=body.operator_department_ids,
    )
    return account_of(view)


@api.operation("GET", "/accounts", action="account.list", tag="accounts")
async def list_accounts(call: Call, query: AccountQuery) -> AccountList:
    """Accounts by username."""
    views = await accounts.list_accounts(
        call.db, call.me, role=query.role, limit=query.limit, offset=query.offset
    )
    return AccountList(accounts=[account_of(view) for view in views])


@api.operation("GET", "/accounts/{user_id}", action="account.view", tag="accounts")
async def get_account(call: Call, path: AccountPath) -> Account:
    """One account."""
    return account_of(await accounts.get_account(call.db, call.me, path.user_id))


@api.operation(
    "POST", "/accounts/{user_id}/deactivate", action="account.deactivate", tag="accounts"
)
async def deactivate_account(call: Call, path: AccountPath) -> None:
    """Deactivate an account (staff leaving) and end its sessions."""
    await accounts.deactivate_user(call.db, call.me, path.user_id)


@api.operation("POST", "/accounts/{user_id}/unlock", action="account.unlock", tag="accounts")
async def unlock_account(call: Call, path: AccountPath) -> None:
    """Lift a lockout now."""
    await accounts.unlock_user(call.db, call.me, path.user_id)


@api.operation(
    "POST", "/accounts/{user_id}/reset-totp", action="account.reset_totp", tag="accounts"
)
async def reset_totp(call: Call, path: AccountPath) -> None:
    """Forget the account's TOTP secret (lost phone); it must enrol again."""
    await accounts.reset_totp(call.db, call.me, path.user_id)


class EnrolmentLinkIssued(Output):
    token: str = Field(description="The link's secret: shown once, give it to the person only.")
    url: str = Field(description="The page that takes it (the secret in the fragment).")
    expires_at: datetime


class EnrolmentRedeem(Input):
    token: Annotated[str, Field(min_length=16, max_length=128)]
    new_password: Password


@api.operation(
    "POST",
    "/accounts/{user_id}/enrolment-link",
    action="account.reset_password",
    tag="accounts",
    status=201,
)
async def issue_enrolment_link(call: Call, path: AccountPath) -> EnrolmentLinkIssued:
    """Reset the account's password and second factor and issue a one-time enrolment link
    (R34: the person sets their own credentials; the admin never knows them)."""
    issued = await enrolment.issue_enrolment_link(call.db, call.me, path.user_id)
    return EnrolmentLinkIssued(
        token=issued.token, url=f"/enrol#{issued.token}", expires_at=issued.expires_at
    )


@api.operation("POST", "/enrolment", action=None, tag="accounts")
async def redeem_enrolment_link(call: Call, body: EnrolmentRedeem) -> None:
    """Set one's password with an enrolment link (once, before it expires); then sign in and
    enrol the second factor."""
    await enrolment.redeem_enrolment_link(call.db, body.token, body.new_password, call.source_ip)


@api.operation(
    "POST", "/accounts/{user_id}/password", action="account.reset_password", tag="accounts"
)
async def reset_password(call: Call, path: AccountPath, body: PasswordReset) -> None:
    """Set a new password for the account and end its sessions."""
    await accounts.reset_password(call.db, call.me, path.user_id, body.new_password)
