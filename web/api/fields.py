"""Field types shared by the request and response models.

Every string a client sends is bounded and must survive every backend: no NUL character
(PostgreSQL text cannot hold one) and no lone surrogate (it cannot be encoded as UTF-8). Times
must carry a time zone and lie in a sane range, so that no conversion overflows.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Final, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    StringConstraints,
)

EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2100, 1, 1, tzinfo=UTC)


def _storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def _in_range(value: datetime) -> datetime:
    if not EARLIEST <= value <= LATEST:
        raise ValueError("must lie between 2000-01-01 and 2100-01-01")
    return value


def _birth_date(value: date) -> date:
    if not date(1900, 1, 1) <= value <= date(2100, 1, 1):
        raise ValueError("must lie between 1900-01-01 and 2100-01-01")
    return value


Storable = AfterValidator(_storable)
"""Add to any free-text string: refuses NUL characters and lone surrogates."""

#: A primary key: 32 lowercase hex characters (``consult.sqltypes.new_id``).
Id = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
Username = Annotated[
    str,
    StringConstraints(min_length=3, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$"),
]
Password = Annotated[str, StringConstraints(min_length=1, max_length=256), Storable]
TotpCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]
Time = Annotated[AwareDatetime, AfterValidator(_in_range)]
BirthDate = Annotated[date, AfterValidator(_birth_date)]
#: A resident ID number or a mobile number as typed: consult checks and normalises it (the
#: check character, the embedded birth date, a +86 prefix), so only the size is bounded here.
IdNumber = Annotated[str, StringConstraints(min_length=1, max_length=32), Storable]
Phone = Annotated[str, StringConstraints(min_length=1, max_length=32), Storable]
Pin = Annotated[str, StringConstraints(pattern=r"^[0-9]{6,12}$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128), Storable]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200), Storable]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=1000), Storable]


class Input(BaseModel):
    """A request body or query: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Output(BaseModel):
    """A response body."""

    model_config = ConfigDict(frozen=True)


_VIEW_CONFIG: Final = ConfigDict(
    frozen=True,
    # A view dataclass documents its fields with attribute docstrings: the OpenAPI document
    # reads them (web.api.openapi.DocumentedSchemas), not pydantic at import time.
    # Every field of a view is in the JSON, defaults included.
    json_schema_serialization_defaults_required=True,
)

ViewT = TypeVar("ViewT")


class View(RootModel[ViewT]):
    """A response body that is a domain view (a frozen dataclass) as it is: the JSON and the
    document's schema both come from the dataclass, so the API repeats none of its fields.
    Subclass it per view: ``class Report(View[ReportView]): ...``; answer ``Report(view)``."""

    model_config = _VIEW_CONFIG


class Views(Output):
    """A response body listing domain views (fields typed ``list[SomeView]``); documented as
    :class:`View` documents one."""

    model_config = _VIEW_CONFIG


__all__ = [
    "BirthDate",
    "Field",
    "Id",
    "IdNumber",
    "Input",
    "Name",
    "Output",
    "Password",
    "Phone",
    "Pin",
    "Reason",
    "ShortText",
    "Storable",
    "Time",
    "TotpCode",
    "Username",
    "View",
    "Views",
]
