"""Uploads into a visit: STOW-RS (instances streamed to disk) and HL7 aECG documents."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from aiohttp import web
from aiohttp.multipart import BodyPartReader, MultipartReader

from consult import visit_flow
from consult.imaging import access
from consult.imaging.errors import DicomMalformed, DicomRejected, DicomTooLarge
from consult.imaging.store import Destination, arriving_too_slowly

from ...call import Call
from ...errors import ApiError, BodyTimeout
from .common import (
    BASE,
    CHUNK,
    call_for,
    dicom_json,
    origin_of,
    retrieve_url,
    run_off_loop,
    store_of,
    uid_of,
)

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

ID_CHARS: Final = frozenset("0123456789abcdef")
STOW_MAX_BODY: Final = 2 * 1024 * 1024 * 1024
"""A STOW-RS request's bound (2 GiB); each instance is bounded by the store's own limit."""
T = TypeVar("T")


def _visit_id(request: web.Request) -> str:
    """The visit an upload names (our ids are 32 hex digits)."""
    visit_id = request.match_info["visit_id"]
    if len(visit_id) != 32 or not set(visit_id) <= ID_CHARS:
        raise ApiError(404, "visit_not_found", "The visit does not exist.")
    return visit_id


async def _upload_visit(call: Call, visit_id: str) -> Any:
    """The visit an upload goes into, as the caller may see it: from a room's viewer, that
    room's visit and its doctor only."""
    if call.me.room_id is not None:
        return await access.room_upload_visit(call.db, call.me, visit_id)
    return await visit_flow.get_visit_view(call.db, call.me, visit_id)


class Arrival:
    """The reads of one streamed upload. Each read is cut after ``idle_s`` of silence
    (:class:`BodyTimeout`: 408, connection closed): the web edge's whole-body timeout does not
    fit a 2 GiB upload, so STOW-RS bounds the silence between bytes instead (issue 13, R33).
    And the bytes must come fast enough over the time spent waiting for them
    (:func:`consult.imaging.store.arriving_too_slowly`; the server's own work between reads,
    an instance's ingest, does not count), else the same: a byte just within every ``idle_s``
    no longer keeps an upload open for ever."""

    def __init__(self, idle_s: float) -> None:
        self.idle_s = idle_s
        self.waited = 0.0
        self.received = 0

    async def __call__(self, read: Awaitable[T]) -> T:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(self.idle_s):
                result = await read
        except TimeoutError:
            raise BodyTimeout() from None
        self.waited += loop.time() - started
        if isinstance(result, bytes | bytearray):
            self.received += len(result)
        if arriving_too_slowly(self.received, self.waited):
            raise BodyTimeout()
        return result


async def stow(request: web.Request) -> web.StreamResponse:
    """Store instances (``multipart/related; type="application/dicom"``), streamed to disk."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    call = await call_for(request, "imaging.store")
    visit_id = _visit_id(request)
    expected = uid_of(request, "study") if "study" in request.match_info else None
    visit = await _upload_visit(call, visit_id)
    if request.content_type != "multipart/related":
        raise ApiError(
            415,
            "unsupported_media_type",
            'Send multipart/related; type="application/dicom".',
        )
    if request.content_length is not None and request.content_length > STOW_MAX_BODY:
        raise ApiError(413, "payload_too_large", f"The body is over {STOW_MAX_BODY} bytes.")
    store = store_of(call)
    arriving = Arrival(call.config.body_timeout_s)
    dest = Destination(
        institution_id=visit.institution_id,
        visit_id=visit.id,
        patient_id=visit.patient_record_id,
        source="stow",
        expected_study_uid=expected,
    )
    try:
        reader = MultipartReader(request.headers, request.content)
    except (AssertionError, ValueError, KeyError):
        raise ApiError(400, "bad_multipart", "The multipart body is malformed.") from None
    stored: list[Dataset] = []
    study_uids: list[str] = []
    failed: list[Dataset] = []
    total = 0
    while True:
        try:
            part = await arriving(reader.next())
        except (ValueError, AssertionError, RuntimeError):
            raise ApiError(400, "bad_multipart", "The multipart body is malformed.") from None
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise ApiError(400, "bad_multipart", "Nested multipart bodies are not accepted.")
        if part.headers.get("Content-Type", "").split(";")[0].strip() != "application/dicom":
            await arriving(part.release())
            failed.append(_failure(None, None, 0xC000, "dicom_not_application_dicom"))
            continue
        incoming = store.new_incoming()
        try:
            total = await _receive(part, incoming, store.max_instance_bytes, total, arriving)
            result = await store.ingest(incoming, dest, call.me)
        except DicomRejected as exc:
            incoming.unlink(missing_ok=True)
            failed.append(_failure(None, None, 0xC000, exc.code))
            if isinstance(exc, DicomTooLarge) and total > STOW_MAX_BODY:
                break
            continue
        except BaseException:
            incoming.unlink(missing_ok=True)
            raise
        item = Dataset()
        item.ReferencedSOPClassUID = result.sop_class_uid
        item.ReferencedSOPInstanceUID = result.sop_instance_uid
        item.RetrieveURL = retrieve_url(
            request, result.study_uid, result.series_uid, result.sop_instance_uid
        )
        if result.duplicate:
            item.WarningReason = 0xB000  # coercion of data elements: "already stored"
        stored.append(item)
        study_uids.append(result.study_uid)
    answer = Dataset()
    if stored:
        answer.RetrieveURL = f"{origin_of(request)}{BASE}/studies/{study_uids[0]}"
        answer.ReferencedSOPSequence = DicomSequence(stored)
    if failed:
        answer.FailedSOPSequence = DicomSequence(failed)
    status = 200 if not failed else (202 if stored else 409)
    if not stored and not failed:
        raise ApiError(400, "bad_multipart", "The body holds no instance.")
    return dicom_json(answer.to_json_dict(), status)


async def _receive(
    part: BodyPartReader, target: Path, limit: int, total: int, arriving: Arrival
) -> int:
    """Stream one part into ``target``; refuse past the instance's or the request's bound, cut
    a part that stalls or trickles (:class:`Arrival`)."""
    size = 0
    loop = asyncio.get_running_loop()
    with target.open("wb") as f:
        while True:
            try:
                chunk = await arriving(part.read_chunk(CHUNK))
            except (ValueError, AssertionError):
                raise DicomMalformed("The part is malformed.") from None
            if not chunk:
                break
            size += len(chunk)
            total += len(chunk)
            if size > limit or total > STOW_MAX_BODY:
                await arriving(part.release())
                raise DicomTooLarge()
            await loop.run_in_executor(None, f.write, chunk)
    if size == 0:
        raise DicomMalformed("The part is empty.")
    return total


def _failure(cls: str | None, uid: str | None, status: int, code: str) -> Dataset:
    from pydicom.dataset import Dataset

    item = Dataset()
    if cls:
        item.ReferencedSOPClassUID = cls
    if uid:
        item.ReferencedSOPInstanceUID = uid
    item.FailureReason = status
    # Our stable code, so a client can tell a truncated file from an unsupported syntax.
    item.TextValue = code
    return item


AECG_TYPES: Final = frozenset({"application/xml", "text/xml", "application/hl7-v3+xml"})


async def aecg(request: web.Request) -> web.StreamResponse:
    """An HL7 aECG document (XML) into a visit, as a DICOM General ECG waveform (not DICOMweb;
    ``consult.imaging.aecg``)."""
    from consult.imaging.aecg import MAX_AECG_BYTES, AecgTooLarge, convert

    call = await call_for(request, "imaging.store")
    visit = await _upload_visit(call, _visit_id(request))
    if request.content_type not in AECG_TYPES:
        raise ApiError(415, "unsupported_media_type", "Send the aECG as application/xml.")
    if request.content_length is not None and request.content_length > MAX_AECG_BYTES:
        raise ApiError(413, "aecg_too_large", f"The body is over {MAX_AECG_BYTES} bytes.")
    store = store_of(call)
    document, converted = store.new_incoming(), store.new_incoming()
    try:
        size = 0
        with document.open("wb") as f:
            arriving = Arrival(call.config.body_timeout_s)
            while chunk := await arriving(request.content.read(CHUNK)):
                size += len(chunk)
                if size > MAX_AECG_BYTES:
                    raise AecgTooLarge()
                await run_off_loop(call, f.write, chunk)
        summary = await run_off_loop(call, convert, document, converted, visit.patient_record_id)
        result = await store.ingest(
            converted,
            Destination(
                institution_id=visit.institution_id,
                visit_id=visit.id,
                patient_id=visit.patient_record_id,
                source="aecg",
            ),
            call.me,
        )
    except DicomRejected as exc:
        status = 413 if exc.code == "aecg_too_large" else 422
        raise ApiError(status, exc.code, exc.message) from None
    finally:
        document.unlink(missing_ok=True)
        converted.unlink(missing_ok=True)
    body = {
        "study_uid": result.study_uid,
        "series_uid": result.series_uid,
        "sop_instance_uid": result.sop_instance_uid,
        "duplicate": result.duplicate,
        "leads": list(summary.leads),
        "samples": summary.samples,
        "sampling_frequency_hz": summary.sampling_frequency_hz,
    }
    return web.json_response(body, status=200 if result.duplicate else 201)
