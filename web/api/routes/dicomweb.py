"""DICOMweb (PS3.18) for the subset viewers use: STOW-RS, QIDO-RS, WADO-RS (R20, R21, R24).

Base URL ``/api/v1/dicomweb``; a visit's STOW-RS endpoint is
``/api/v1/dicomweb/visits/{visit_id}/studies`` (the study joins that visit and its patient).
The routes take the same bearer session as the REST API; they are plain aiohttp handlers
(multipart bodies and answers do not fit the JSON registry). Every retrieval goes through
:func:`consult.imaging.access.readable_study` and is audited; a refusal is a 403, audited.
Reference: ``docs/imaging.md``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from aiohttp import web
from aiohttp.multipart import BodyPartReader, MultipartReader

from consult import visit_flow
from consult.imaging import access
from consult.imaging.errors import (
    DicomMalformed,
    DicomRejected,
    DicomTooLarge,
    ImagingUnavailable,
)
from consult.imaging.models import ImagingInstance, ImagingStudy
from consult.imaging.store import Destination, ImagingStore
from consult.imaging.uids import FRAME_MEDIA_TYPES, NATIVE_SYNTAXES, valid_uid

from ...keys import IMAGING
from .. import auth
from ..call import Call
from ..errors import ApiError, BodyTimeout
from ..limits import API_LIMITS, dicomweb_classes, spend_classes
from ..openapi import PREFIX

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from consult.imaging.query import StudyRows

# The DICOM modules (pydicom, numpy) are imported inside the handlers, on first use: importing
# them costs a second or more, which every server start (and every test that starts one) would
# otherwise pay.

BASE: Final = PREFIX + "/dicomweb"
DICOM_JSON: Final = "application/dicom+json"
STOW_MAX_BODY: Final = 2 * 1024 * 1024 * 1024
"""A STOW-RS request's bound (2 GiB); each instance is bounded by the store's own limit."""
CHUNK: Final = 256 * 1024
MAX_FRAMES_PER_REQUEST: Final = 1000
_ID_CHARS: Final = frozenset("0123456789abcdef")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")


def setup_dicomweb(app: web.Application) -> None:
    """Add the DICOMweb routes to ``app`` (the store is ``app[IMAGING]``); the table is
    :data:`ROUTES`, which the OpenAPI document describes too (:func:`openapi_paths`)."""
    for route in ROUTES:
        app.router.add_route(route.method, BASE + route.path, route.handler)


# --- Helpers --------------------------------------------------------------------------------


async def _call(request: web.Request, action: str) -> Call:
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


def _store(call: Call) -> ImagingStore:
    return call.request.app[IMAGING]


async def _audit(
    call: Call, study: ImagingStudy | None, what: str, details: dict[str, Any] | None = None
) -> None:
    """Every retrieval goes into the audit chain, committed before the answer (R24)."""
    await access.audit_retrieval(call.db, call.me, study, what, details)


def _uid(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not valid_uid(value):
        raise ApiError(404, "study_not_found", "No such study, series or instance.")
    return value


def _json(body: Any, status: int = 200) -> web.Response:
    """DICOM JSON with exactly ``application/dicom+json`` (no charset: clients compare it)."""
    response = web.Response(body=json.dumps(body, separators=(",", ":")).encode(), status=status)
    response.headers["Content-Type"] = DICOM_JSON
    return response


async def _rows(call: Call, study: ImagingStudy) -> StudyRows:
    return await _store(call).rows(study)


def _pick(rows: StudyRows, series: str | None, instance: str | None) -> list[ImagingInstance]:
    picked = [
        i
        for i in rows.instances
        if (series is None or i.series_uid == series)
        and (instance is None or i.sop_instance_uid == instance)
    ]
    if not picked:
        raise ApiError(404, "instance_not_found", "No such series or instance in the study.")
    return picked


async def _run(call: Call, fn: Callable[..., Any], *args: Any) -> Any:
    return await _store(call).run(fn, *args)


def _header_of(store: ImagingStore) -> Callable[[ImagingStudy, ImagingInstance], Dataset]:
    return store.header


def _accepted(request: web.Request) -> list[tuple[str, str | None]]:
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


async def _multipart(
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


# --- STOW-RS --------------------------------------------------------------------------------


async def _arriving(read: Awaitable[T], idle_s: float) -> T:
    """One read of a streamed upload: a body that sends nothing for ``idle_s`` is cut
    (:class:`BodyTimeout`: 408, connection closed). The web edge's whole-body timeout does not
    fit a 2 GiB upload, so STOW-RS bounds the silence between bytes instead (issue 13, R33)."""
    try:
        async with asyncio.timeout(idle_s):
            return await read
    except TimeoutError:
        raise BodyTimeout() from None


async def stow(request: web.Request) -> web.StreamResponse:
    """Store instances (``multipart/related; type="application/dicom"``), streamed to disk."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    call = await _call(request, "imaging.store")
    visit_id = request.match_info["visit_id"]
    if len(visit_id) != 32 or not set(visit_id) <= _ID_CHARS:
        raise ApiError(404, "visit_not_found", "The visit does not exist.")
    expected = _uid(request, "study") if "study" in request.match_info else None
    if call.me.room_id is not None:  # the room viewer's upload: its visit, its doctor only
        visit: Any = await access.room_upload_visit(call.db, call.me, visit_id)
    else:
        visit = await visit_flow.get_visit_view(call.db, call.me, visit_id)
    if request.content_type != "multipart/related":
        raise ApiError(
            415,
            "unsupported_media_type",
            'Send multipart/related; type="application/dicom".',
        )
    if request.content_length is not None and request.content_length > STOW_MAX_BODY:
        raise ApiError(413, "payload_too_large", f"The body is over {STOW_MAX_BODY} bytes.")
    store = _store(call)
    idle_s = call.config.body_timeout_s
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
            part = await _arriving(reader.next(), idle_s)
        except (ValueError, AssertionError, RuntimeError):
            raise ApiError(400, "bad_multipart", "The multipart body is malformed.") from None
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise ApiError(400, "bad_multipart", "Nested multipart bodies are not accepted.")
        if part.headers.get("Content-Type", "").split(";")[0].strip() != "application/dicom":
            await _arriving(part.release(), idle_s)
            failed.append(_failure(None, None, 0xC000, "dicom_not_application_dicom"))
            continue
        incoming = store.new_incoming()
        try:
            total = await _receive(part, incoming, store.max_instance_bytes, total, idle_s)
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
        item.RetrieveURL = _retrieve_url(
            request, result.study_uid, result.series_uid, result.sop_instance_uid
        )
        if result.duplicate:
            item.WarningReason = 0xB000  # coercion of data elements: "already stored"
        stored.append(item)
        study_uids.append(result.study_uid)
    answer = Dataset()
    if stored:
        answer.RetrieveURL = f"{_origin(request)}{BASE}/studies/{study_uids[0]}"
        answer.ReferencedSOPSequence = DicomSequence(stored)
    if failed:
        answer.FailedSOPSequence = DicomSequence(failed)
    status = 200 if not failed else (202 if stored else 409)
    if not stored and not failed:
        raise ApiError(400, "bad_multipart", "The body holds no instance.")
    return _json(answer.to_json_dict(), status)


async def _receive(
    part: BodyPartReader, target: Path, limit: int, total: int, idle_s: float
) -> int:
    """Stream one part into ``target``; refuse past the instance's or the request's bound, cut
    a part that stalls for ``idle_s``."""
    size = 0
    loop = asyncio.get_running_loop()
    with target.open("wb") as f:
        while True:
            try:
                chunk = await _arriving(part.read_chunk(CHUNK), idle_s)
            except (ValueError, AssertionError):
                raise DicomMalformed("The part is malformed.") from None
            if not chunk:
                break
            size += len(chunk)
            total += len(chunk)
            if size > limit or total > STOW_MAX_BODY:
                await _arriving(part.release(), idle_s)
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


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _retrieve_url(request: web.Request, study: str, series: str, instance: str) -> str:
    return f"{_origin(request)}{BASE}/studies/{study}/series/{series}/instances/{instance}"


# --- QIDO-RS --------------------------------------------------------------------------------


def _query(request: web.Request) -> Any:
    from consult.imaging.query import parse_query

    try:
        return parse_query(list(request.query.items()))
    except DicomRejected as exc:
        raise ApiError(400, exc.code, exc.message) from None


async def qido_studies(request: web.Request) -> web.StreamResponse:
    """QIDO-RS: the studies the caller may read that match."""
    from consult.imaging.query import study_answers

    call = await _call(request, "imaging.read")
    query = _query(request)
    wanted = query.match.get("StudyInstanceUID")
    if wanted and valid_uid(wanted):
        studies = [await access.readable_study(call.db, call.me, wanted, "qido")]
    else:
        studies = await access.readable_studies(call.db, call.me)
    rows = [await _rows(call, study) for study in studies]
    answers = await _run(call, study_answers, rows, query, _header_of(_store(call)))
    for study in studies:
        await _audit(call, study, "qido.studies")
    if not studies:
        await _audit(call, None, "qido.studies", {"found": 0})
    return _json(answers)


async def qido_series(request: web.Request) -> web.StreamResponse:
    """QIDO-RS: a study's series."""
    from consult.imaging.query import series_answers

    call = await _call(request, "imaging.read")
    study = await access.readable_study(call.db, call.me, _uid(request, "study"), "qido")
    query = _query(request)
    rows = await _rows(call, study)
    answers = await _run(call, series_answers, rows, query, _header_of(_store(call)))
    await _audit(call, study, "qido.series")
    return _json(answers)


async def qido_instances(request: web.Request) -> web.StreamResponse:
    """QIDO-RS: a study's (or a series') instances."""
    from consult.imaging.query import instance_answers

    call = await _call(request, "imaging.read")
    study = await access.readable_study(call.db, call.me, _uid(request, "study"), "qido")
    series = _uid(request, "series") if "series" in request.match_info else None
    rows = await _rows(call, study)
    answers = instance_answers(rows, _query(request), series)
    await _audit(call, study, "qido.instances")
    return _json(answers)


# --- WADO-RS --------------------------------------------------------------------------------


async def _target(
    request: web.Request, what: str
) -> tuple[Call, ImagingStudy, list[ImagingInstance]]:
    call = await _call(request, "imaging.read")
    series = _uid(request, "series") if "series" in request.match_info else None
    instance = _uid(request, "instance") if "instance" in request.match_info else None
    if instance is not None:  # one row by its unique key, with the study: a viewer's hot path
        study, row = await access.readable_instance(
            call.db, call.me, _uid(request, "study"), instance, what, series_uid=series
        )
        if row is None or row.series_uid != series:
            raise ApiError(404, "instance_not_found", "No such series or instance in the study.")
        return call, study, [row]
    study = await access.readable_study(call.db, call.me, _uid(request, "study"), what)
    rows = await _rows(call, study)
    return call, study, _pick(rows, series, instance)


async def wado_instances(request: web.Request) -> web.StreamResponse:
    """WADO-RS: instances as stored (``multipart/related; type="application/dicom"``)."""
    call, study, instances = await _target(request, "instances")
    ok = any(
        media in ("application/dicom", "*/*", "*", "multipart/related")
        and (syntax in (None, "*") or all(i.transfer_syntax == syntax for i in instances))
        for media, syntax in _accepted(request)
    )
    if not ok:
        raise ApiError(406, "not_acceptable", "Instances are served as stored (transfer-syntax=*).")
    store = _store(call)
    parts: list[tuple[str, bytes | Path]] = [
        (
            f"application/dicom; transfer-syntax={i.transfer_syntax}",
            store.path_of(study.id, i.id),
        )
        for i in instances
    ]
    await _audit(call, study, "instances", {"instances": len(instances)})
    return await _multipart(request, "application/dicom", parts)


async def wado_metadata(request: web.Request) -> web.StreamResponse:
    """WADO-RS: DICOM JSON metadata, bulk values as BulkDataURIs."""
    from consult.imaging.query import metadata_json

    call, study, instances = await _target(request, "metadata")
    store = _store(call)
    origin = _origin(request)

    def build() -> list[dict[str, Any]]:
        out = []
        for i in instances:
            base = (
                f"{origin}{BASE}/studies/{study.study_uid}/series/{i.series_uid}"
                f"/instances/{i.sop_instance_uid}"
            )

            def uri(tag: int, base: str = base, frames: int = i.frames) -> str:
                if tag == 0x7FE00010 and frames:
                    return f"{base}/frames/{','.join(str(n) for n in range(1, frames + 1))}"
                return f"{base}/bulkdata/{tag:08X}"

            out.append(metadata_json(store.path_of(study.id, i.id), uri))
        return out

    answer = await _run(call, build)
    await _audit(call, study, "metadata", {"instances": len(answer)})
    return _json(answer)


def _frame_numbers(request: web.Request, frames: int) -> list[int]:
    raw = request.match_info["frames"]
    try:
        numbers = [int(n) for n in raw.split(",")]
    except ValueError:
        raise ApiError(404, "frame_not_found", "Frame numbers are 1-based integers.") from None
    if not numbers or len(numbers) > MAX_FRAMES_PER_REQUEST:
        raise ApiError(400, "too_many_frames", "Ask for 1 to 1000 frames at a time.")
    if any(n < 1 or n > frames for n in numbers):
        raise ApiError(404, "frame_not_found", "No such frame.")
    return numbers


async def wado_frames(request: web.Request) -> web.StreamResponse:
    """WADO-RS: frames as stored, or decoded to native little endian if that is all asked."""
    from consult.imaging.render import frames_as_stored, frames_native

    call, study, instances = await _target(request, "frames")
    instance = instances[0]
    numbers = _frame_numbers(request, instance.frames)
    path = _store(call).path_of(study.id, instance.id)
    syntax = instance.transfer_syntax
    native = syntax in NATIVE_SYNTAXES
    stored_type = (
        "application/octet-stream"
        if native
        else FRAME_MEDIA_TYPES.get(syntax, "application/octet-stream")
    )
    mode: str | None = None
    for media, ts in _accepted(request):
        if media in ("*/*", "*") or (media == stored_type and ts in (None, "*", syntax)):
            mode = "stored"
        elif media in (stored_type,) or ts == "*":
            mode = "stored"
        elif media == "application/octet-stream" and ts in (None, "1.2.840.10008.1.2.1"):
            mode = "stored" if native else "native"
        if mode:
            break
    if mode is None:
        raise ApiError(406, "not_acceptable", "Ask for the frames as stored or as octet-stream.")
    if mode == "stored":
        data = await _run(call, frames_as_stored, path, syntax, numbers, instance.frames)
        part_type = (
            "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
            if native
            else f"{stored_type}; transfer-syntax={syntax}"
        )
    else:
        data = await _run(call, frames_native, path, numbers)
        part_type = "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    await _audit(
        call,
        study,
        "frames",
        {"instance": instance.sop_instance_uid, "frames": len(numbers)},
    )
    inner = part_type.split(";")[0]
    return await _multipart(request, inner, [(part_type, d) for d in data])


async def wado_rendered(request: web.Request) -> web.StreamResponse:
    """WADO-RS: one frame rendered as PNG (decoded and windowed in a worker process)."""
    call, study, instances = await _target(request, "rendered")
    instance = instances[0]
    if not instance.frames:
        raise ApiError(404, "frame_not_found", "The instance has no image.")
    number = 1
    if "frames" in request.match_info:
        numbers = _frame_numbers(request, instance.frames)
        if len(numbers) != 1:
            raise ApiError(400, "too_many_frames", "Render one frame at a time.")
        number = numbers[0]
    store = _store(call)
    key = (study.id, instance.id, number)
    png = store.renders.get(key)  # checked and audited all the same: only the work is saved
    if png is None:
        try:
            png = await store.render(store.path_of(study.id, instance.id), number)
        except ImagingUnavailable as exc:  # a render worker died: try again
            raise ApiError(503, exc.code, str(exc)) from None
        store.renders.put(key, png)
    await _audit(
        call,
        study,
        "rendered",
        {"instance": instance.sop_instance_uid, "frame": number},
    )
    return web.Response(
        body=png,
        headers={
            "Content-Type": "image/png",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def wado_bulkdata(request: web.Request) -> web.StreamResponse:
    """WADO-RS: one top-level bulk value (a BulkDataURI of the metadata)."""
    call, study, instances = await _target(request, "bulkdata")
    instance = instances[0]
    try:
        tag = int(request.match_info["tag"], 16)
    except ValueError:
        raise ApiError(404, "bulkdata_not_found", "No such bulk data.") from None
    path = _store(call).path_of(study.id, instance.id)

    def value() -> bytes | None:
        from pydicom import dcmread

        ds = dcmread(path)
        element = ds.get(tag)
        if element is None or not isinstance(element.value, bytes | bytearray):
            return None
        return bytes(element.value)

    data = await _run(call, value)
    if data is None:
        raise ApiError(404, "bulkdata_not_found", "No such bulk data.")
    await _audit(
        call,
        study,
        "bulkdata",
        {"instance": instance.sop_instance_uid, "tag": f"{tag:08X}"},
    )
    return await _multipart(
        request, "application/octet-stream", [("application/octet-stream", data)]
    )


async def ecg(request: web.Request) -> web.StreamResponse:
    """The ECG viewer's JSON: leads calibrated in mV, the device's measurements (not DICOMweb)."""
    from consult.imaging.ecg import read_ecg

    call, study, instances = await _target(request, "ecg")
    path = _store(call).path_of(study.id, instances[0].id)
    try:
        answer = await _run(call, read_ecg, path)
    except DicomRejected as exc:
        raise ApiError(422, exc.code, exc.message) from None
    await _audit(call, study, "ecg", {"instance": instances[0].sop_instance_uid})
    return web.Response(
        body=json.dumps(answer, separators=(",", ":")).encode(),
        headers={"Content-Type": "application/json", "Cache-Control": "no-store"},
    )


AECG_TYPES: Final = frozenset({"application/xml", "text/xml", "application/hl7-v3+xml"})


async def aecg(request: web.Request) -> web.StreamResponse:
    """An HL7 aECG document (XML) into a visit, as a DICOM General ECG waveform (not DICOMweb;
    ``consult.imaging.aecg``)."""
    from consult.imaging.aecg import MAX_AECG_BYTES, AecgTooLarge, convert

    call = await _call(request, "imaging.store")
    visit_id = request.match_info["visit_id"]
    if len(visit_id) != 32 or not set(visit_id) <= _ID_CHARS:
        raise ApiError(404, "visit_not_found", "The visit does not exist.")
    if call.me.room_id is not None:
        visit: Any = await access.room_upload_visit(call.db, call.me, visit_id)
    else:
        visit = await visit_flow.get_visit_view(call.db, call.me, visit_id)
    if request.content_type not in AECG_TYPES:
        raise ApiError(415, "unsupported_media_type", "Send the aECG as application/xml.")
    if request.content_length is not None and request.content_length > MAX_AECG_BYTES:
        raise ApiError(413, "aecg_too_large", f"The body is over {MAX_AECG_BYTES} bytes.")
    store = _store(call)
    document, converted = store.new_incoming(), store.new_incoming()
    try:
        size = 0
        with document.open("wb") as f:
            while chunk := await _arriving(request.content.read(CHUNK), call.config.body_timeout_s):
                size += len(chunk)
                if size > MAX_AECG_BYTES:
                    raise AecgTooLarge()
                await _run(call, f.write, chunk)
        summary = await _run(call, convert, document, converted, visit.patient_record_id)
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


# --- The route table (aiohttp routes and the OpenAPI document) --------------------------------


@dataclass(frozen=True)
class DicomwebRoute:
    """One DICOMweb route: where, the handler, the permission-table action it checks, and what
    it answers (for the OpenAPI document)."""

    operation_id: str
    method: str
    path: str
    """Under :data:`BASE`."""
    handler: Handler
    action: str
    summary: str
    produces: tuple[str, ...]
    query: bool = False
    """QIDO-RS matching keys and paging in the query string."""
    body: str = 'multipart/related; type="application/dicom"'
    """A POST's request media type."""


_INSTANCE: Final = "/studies/{study}/series/{series}/instances/{instance}"
_MULTIPART: Final = ("multipart/related",)
_JSON: Final = (DICOM_JSON,)

ROUTES: Final[tuple[DicomwebRoute, ...]] = (
    DicomwebRoute(
        "dicomweb_stow_visit",
        "POST",
        "/visits/{visit_id}/studies",
        stow,
        "imaging.store",
        "STOW-RS: store instances into a visit (streamed to disk).",
        _JSON,
    ),
    DicomwebRoute(
        "dicomweb_stow_visit_study",
        "POST",
        "/visits/{visit_id}/studies/{study}",
        stow,
        "imaging.store",
        "STOW-RS: store instances of one study into a visit.",
        _JSON,
    ),
    DicomwebRoute(
        "dicomweb_aecg_visit",
        "POST",
        "/visits/{visit_id}/aecg",
        aecg,
        "imaging.store",
        "An HL7 aECG document (XML) into a visit as a DICOM General ECG waveform (not "
        "DICOMweb): 201 stored, 200 the same document again; refusals aecg_malformed, "
        "aecg_uncalibrated (422), aecg_too_large (413).",
        ("application/json",),
        body="application/xml",
    ),
    DicomwebRoute(
        "dicomweb_qido_studies",
        "GET",
        "/studies",
        qido_studies,
        "imaging.read",
        "QIDO-RS: the studies the caller may read that match.",
        _JSON,
        query=True,
    ),
    DicomwebRoute(
        "dicomweb_qido_series",
        "GET",
        "/studies/{study}/series",
        qido_series,
        "imaging.read",
        "QIDO-RS: a study's series.",
        _JSON,
        query=True,
    ),
    DicomwebRoute(
        "dicomweb_qido_study_instances",
        "GET",
        "/studies/{study}/instances",
        qido_instances,
        "imaging.read",
        "QIDO-RS: a study's instances.",
        _JSON,
        query=True,
    ),
    DicomwebRoute(
        "dicomweb_qido_series_instances",
        "GET",
        "/studies/{study}/series/{series}/instances",
        qido_instances,
        "imaging.read",
        "QIDO-RS: a series' instances.",
        _JSON,
        query=True,
    ),
    DicomwebRoute(
        "dicomweb_wado_study",
        "GET",
        "/studies/{study}",
        wado_instances,
        "imaging.read",
        "WADO-RS: a study's instances as stored.",
        _MULTIPART,
    ),
    DicomwebRoute(
        "dicomweb_wado_series",
        "GET",
        "/studies/{study}/series/{series}",
        wado_instances,
        "imaging.read",
        "WADO-RS: a series' instances as stored.",
        _MULTIPART,
    ),
    DicomwebRoute(
        "dicomweb_wado_instance",
        "GET",
        _INSTANCE,
        wado_instances,
        "imaging.read",
        "WADO-RS: one instance as stored.",
        _MULTIPART,
    ),
    DicomwebRoute(
        "dicomweb_study_metadata",
        "GET",
        "/studies/{study}/metadata",
        wado_metadata,
        "imaging.read",
        "WADO-RS: a study's metadata (DICOM JSON, bulk data by URI).",
        _JSON,
    ),
    DicomwebRoute(
        "dicomweb_series_metadata",
        "GET",
        "/studies/{study}/series/{series}/metadata",
        wado_metadata,
        "imaging.read",
        "WADO-RS: a series' metadata.",
        _JSON,
    ),
    DicomwebRoute(
        "dicomweb_instance_metadata",
        "GET",
        _INSTANCE + "/metadata",
        wado_metadata,
        "imaging.read",
        "WADO-RS: an instance's metadata.",
        _JSON,
    ),
    DicomwebRoute(
        "dicomweb_frames",
        "GET",
        _INSTANCE + "/frames/{frames}",
        wado_frames,
        "imaging.read",
        "WADO-RS: frames (comma-separated, 1-based) as stored or as native octet-stream.",
        _MULTIPART,
    ),
    DicomwebRoute(
        "dicomweb_rendered",
        "GET",
        _INSTANCE + "/rendered",
        wado_rendered,
        "imaging.read",
        "WADO-RS: the first frame rendered as PNG.",
        ("image/png",),
    ),
    DicomwebRoute(
        "dicomweb_frame_rendered",
        "GET",
        _INSTANCE + "/frames/{frames}/rendered",
        wado_rendered,
        "imaging.read",
        "WADO-RS: one frame rendered as PNG.",
        ("image/png",),
    ),
    DicomwebRoute(
        "dicomweb_bulkdata",
        "GET",
        _INSTANCE + "/bulkdata/{tag}",
        wado_bulkdata,
        "imaging.read",
        "WADO-RS: one top-level bulk value (a metadata BulkDataURI).",
        _MULTIPART,
    ),
    DicomwebRoute(
        "dicomweb_ecg",
        "GET",
        _INSTANCE + "/ecg",
        ecg,
        "imaging.read",
        "The ECG viewer's JSON: leads in mV, the device's measurements (not DICOMweb).",
        ("application/json",),
    ),
)
"""Every DICOMweb route, declared once."""

_PATH_TEXT: Final = {
    "visit_id": "The visit's id (32 hex characters).",
    "study": "Study Instance UID.",
    "series": "Series Instance UID.",
    "instance": "SOP Instance UID.",
    "frames": "Frame numbers, 1-based, comma-separated (at most 1000).",
    "tag": "The bulk value's tag, 8 hex digits (as the metadata's BulkDataURI names it).",
}
_QUERY: Final = (
    ("limit", {"type": "integer", "minimum": 0}, "At most this many answers."),
    ("offset", {"type": "integer", "minimum": 0}, "Skip this many answers."),
    ("includefield", {"type": "string"}, "More attributes to return (keyword or tag), or all."),
    ("fuzzymatching", {"type": "boolean"}, "Accepted; matching is not fuzzy."),
)
_DICOMWEB_ERRORS: Final = {
    400: "Malformed request (query, multipart body).",
    401: "No, unknown, expired or revoked bearer token.",
    403: "The permission table or the study's read rule refuses the caller (audited).",
    404: "No such study, series, instance, frame or visit the caller may know of.",
    406: "The Accept header asks for a form the study is not served in.",
    413: "An instance or the request is over its bound.",
    415: 'The body is not multipart/related; type="application/dicom" (an aECG: XML).',
    422: "The document is refused (a stable code: aecg_malformed, aecg_uncalibrated).",
    429: "The caller's DICOMweb budget is spent (Retry-After).",
}


def openapi_paths(error_schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The OpenAPI path items of :data:`ROUTES` (tag ``dicomweb``)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        names = [part[1:-1] for part in route.path.split("/") if part.startswith("{")]
        parameters: list[dict[str, Any]] = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "description": _PATH_TEXT[name],
            }
            for name in names
        ]
        if route.query:
            parameters += [
                {"name": n, "in": "query", "required": False, "schema": s, "description": d}
                for n, s, d in _QUERY
            ]
        post = route.method == "POST"
        stow_route = post and route.body != "application/xml"
        ok = {
            "description": "Done." if not stow_route else "Stored (200), some refused (202).",
            "content": {
                media: {"schema": {"type": "string", "format": "binary"}}
                for media in route.produces
            },
        }
        statuses = [400, 401, 403, 404, 429] + ([406] if not post else [409, 413, 415])
        responses: dict[str, Any] = {"200": ok}
        if stow_route:
            responses["202"] = ok
        elif post:  # the aECG document: stored (201), or the same document again (200)
            responses["201"] = {**ok, "description": "Stored as a DICOM ECG waveform."}
            responses["200"] = {**ok, "description": "The same document was stored before."}
            statuses.append(422)
        for status in sorted(set(statuses) - {409}):
            responses[str(status)] = {
                "description": _DICOMWEB_ERRORS[status],
                "content": {"application/json": {"schema": error_schema}},
            }
        if stow_route:
            responses["409"] = {
                "description": "Every instance refused: the answer's FailedSOPSequence has a "
                "stable code per part (TextValue).",
                "content": {DICOM_JSON: {"schema": {"type": "object"}}},
            }
        item: dict[str, Any] = {
            "operationId": route.operation_id,
            "summary": route.summary,
            "tags": ["dicomweb"],
            "parameters": parameters,
            "responses": responses,
            "x-permission": route.action,
        }
        if post:
            item["requestBody"] = {
                "required": True,
                "content": {route.body: {"schema": {"type": "string", "format": "binary"}}},
            }
        paths.setdefault(BASE + route.path, {})[route.method.lower()] = item
    return paths
