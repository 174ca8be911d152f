"""Helpers of the imaging tests: DICOMweb clients run in threads, audit events of a study."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web
from apiclient import Person
from dicomweb_client.api import DICOMwebClient
from sqlalchemy import select

from consult.models import AuditEvent
from web.keys import DATABASE

T = TypeVar("T")


def client(url: str, person: Person) -> DICOMwebClient:
    return DICOMwebClient(url=url, headers={"Authorization": f"Bearer {person.token}"})


async def off_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """dicomweb-client is blocking (requests); the server runs on this test's loop."""
    return await asyncio.to_thread(fn, *args, **kwargs)


async def imaging_events(app: web.Application) -> list[AuditEvent]:
    """The chain's imaging events (each retrieval is committed before its answer)."""
    async with app[DATABASE].session() as session:
        rows = await session.scalars(
            select(AuditEvent).where(AuditEvent.action.like("imaging.%")).order_by(AuditEvent.seq)
        )
        return list(rows.all())
