"""What the DICOMweb handlers share: the caller checked and its budget spent, each retrieval
audited, the route's UIDs, DICOM JSON and ``multipart/related`` answers."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from consult.imaging import access
from consult.imaging.models import ImagingInstance, ImagingStudy
from consult.imaging.store import ImagingStore
from consult.imaging.uids import valid_uid

from ....keys import IMAGING
from ... import auth
from ...call import Call
from ...errors import ApiError
from ...limits import API_LIMITS, dicomweb_classes, spend_classes
from ...openapi import PREFIX

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from consult.imaging.query import StudyRows

BASE: Final = PREFIX + "/dicomweb"
DICOM_JSON: Final = "application/dicom+json"
CHUNK: Final = 256 * 1024


async def call_for(request: web.Request, action: str) -> Call:
    """Authenticate, spend the caller's DICOMweb budget (R33), then check the permission."""
    call = Call.of(request)
    await auth.authenticate(call, action)
    route = request.match_info.route.resource
    await spend_classes(
        request.app[API_LIMITS],
        call,
        dicomweb_classes(request.method),
        f"dicomweb {request.method} {route.canonical if route is not None else request.path}",
    )
    await auth.authorize(call, action)
    return call


def store_of(call: Call) -> ImagingStore:
    return call.request.app[IMAGING]


async def audit_read(
    call: Call, study: ImagingStudy | None, what: str, details: dict[str, Any] | None = None
) -> None:
    """Every retrieval goes into the audit chain, committed before the answer (R24)."""
    await access.audit_retrieval(call.db, call.me, study, what, details)


def uid_of(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not valid_uid(value):
        raise ApiError(404, "study_not_found", "No such study, series or instance.")
    return value


def dicom_json(body: Any, status: int = 200) -> web.Response:
    """DICOM JSON with exactly ``application/dicom+json`` (no charset: clients compare it)."""
    response = web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status)
    response.headers["Content-Type"] = DICOM_JSON
    return response


async def rows_of(call: Call, study: ImagingStudy) -> StudyRows:
    return await store_of(call).rows(study)


def pick(rows: StudyRows, series: str | None, instance: str | None) -> list[ImagingInstance]:
    picked = [
        i
        for i in rows.instances
        if (series is None or i.series_uid == series)
        and (instance is None or i.sop_instance_uid == instance)
    ]
    if not picked:
        raise ApiError(404, "instance_not_found", "No such series or instance in the study.")
    return picked


async def run_off_loop(call: Call, fn: Callable[..., Any], *args: Any) -> Any:
    return await store_of(call).run(fn, *args)


def header_of(store: ImagingStore) -> Callable[[ImagingStudy, ImagingInstance], Dataset]:
    return store.header


def accepted(request: web.Request) -> list[tuple[str, str | None]]:
    """The Accept header as (media type inside multipart, transfer syntax or None)."""
    header = request.headers.get("Accept", "*/*") or "*/*"
    found: list[tuple[str, str | None]] = []
    for item in header.split(","):
        parts = [p.strip() for p in item.split(";")]
        media = parts[0].lower()
        params: dict[str, str] = {}
        for p in parts[1:]:
            key, _, value = p.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        if media == "multipart/related":
            found.append(
                (
                    params.get("type", "application/octet-stream").lower(),
                    params.get("transfer-syntax"),
                )
            )
        else:
            found.append((media, params.get("transfer-syntax")))
    return found


ONE_BODY_MAX: Final = 8 * 1024 * 1024
"""Parts held in memory up to this size are answered as one body (a copy); more are streamed."""


async def multipart(
    request: web.Request, inner: str, parts: Sequence[tuple[str, bytes | Path]]
) -> web.StreamResponse:
    """A ``multipart/related`` answer; parts are bytes or files (streamed)."""
    boundary = secrets.token_hex(16)
    headers = {
        "Content-Type": f'multipart/related; type="{inner}"; boundary={boundary}',
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
    }
    held = [(kind, body) for kind, body in parts if isinstance(body, bytes)]
    if len(held) == len(parts) and sum(len(body) for _, body in held) <= ONE_BODY_MAX:
        # frames in memory already: one body with its length, written at once (a viewer's
        # hot path; streaming it cost four chunked writes and their drains a request)
        pieces: list[bytes] = []
        for content_type, blob in held:
            pieces += (f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode(), blob)
            pieces.append(b"\r\n")
        pieces.append(f"--{boundary}--\r\n".encode())
        return web.Response(body=b"".join(pieces), headers=headers)
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    for content_type, body in parts:
        await response.write(f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode())
        if isinstance(body, Path):
            with body.open("rb") as f:
                while chunk := await loop.run_in_executor(None, f.read, CHUNK):
                    await response.write(chunk)
        else:
            await response.write(body)
        await response.write(b"\r\n")
    await response.write(f"--{boundary}--\r\n".encode())
    await response.write_eof()
    return response


def origin_of(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def retrieve_url(request: web.Request, study: str, series: str, instance: str) -> str:
    return f"{origin_of(request)}{BASE}/studies/{study}/series/{series}/instances/{instance}"
