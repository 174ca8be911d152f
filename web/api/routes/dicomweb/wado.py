"""WADO-RS (instances, metadata, frames, rendered, bulk data) and the ECG viewer's JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from consult.imaging import access
from consult.imaging.errors import DicomRejected, ImagingUnavailable
from consult.imaging.models import ImagingInstance, ImagingStudy
from consult.imaging.uids import FRAME_MEDIA_TYPES, NATIVE_SYNTAXES

from ...call import Call
from ...errors import ApiError
from .common import (
    BASE,
    accepted,
    audit_read,
    call_for,
    dicom_json,
    multipart,
    origin_of,
    pick,
    rows_of,
    run_off_loop,
    store_of,
    uid_of,
)

MAX_FRAMES_PER_REQUEST: Final = 1000


async def _target(
    request: web.Request, what: str
) -> tuple[Call, ImagingStudy, list[ImagingInstance]]:
    call = await call_for(request, "imaging.read")
    series = uid_of(request, "series") if "series" in request.match_info else None
    instance = uid_of(request, "instance") if "instance" in request.match_info else None
    if instance is not None:  # one row by its unique key, with the study: a viewer's hot path
        study, row = await access.readable_instance(
            call.db, call.me, uid_of(request, "study"), instance, what, series_uid=series
        )
        if row is None or row.series_uid != series:
            raise ApiError(404, "instance_not_found", "No such series or instance in the study.")
        return call, study, [row]
    study = await access.readable_study(call.db, call.me, uid_of(request, "study"), what)
    rows = await rows_of(call, study)
    return call, study, pick(rows, series, instance)


async def wado_instances(request: web.Request) -> web.StreamResponse:
    """WADO-RS: instances as stored (``multipart/related; type="application/dicom"``)."""
    call, study, instances = await _target(request, "instances")
    ok = any(
        media in ("application/dicom", "*/*", "*", "multipart/related")
        and (syntax in (None, "*") or all(i.transfer_syntax == syntax for i in instances))
        for media, syntax in accepted(request)
    )
    if not ok:
        raise ApiError(406, "not_acceptable", "Instances are served as stored (transfer-syntax=*).")
    store = store_of(call)
    parts: list[tuple[str, bytes | Path]] = [
        (
            f"application/dicom; transfer-syntax={i.transfer_syntax}",
            store.path_of(study.id, i.id),
        )
        for i in instances
    ]
    await audit_read(call, study, "instances", {"instances": len(instances)})
    return await multipart(request, "application/dicom", parts)


async def wado_metadata(request: web.Request) -> web.StreamResponse:
    """WADO-RS: DICOM JSON metadata, bulk values as BulkDataURIs."""
    from consult.imaging.query import metadata_json

    call, study, instances = await _target(request, "metadata")
    store = store_of(call)
    origin = origin_of(request)

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

    answer = await run_off_loop(call, build)
    await audit_read(call, study, "metadata", {"instances": len(answer)})
    return dicom_json(answer)


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
    path = store_of(call).path_of(study.id, instance.id)
    syntax = instance.transfer_syntax
    native = syntax in NATIVE_SYNTAXES
    stored_type = (
        "application/octet-stream"
        if native
        else FRAME_MEDIA_TYPES.get(syntax, "application/octet-stream")
    )
    mode: str | None = None
    for media, ts in accepted(request):
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
        data = await run_off_loop(
            call, frames_as_stored, path, syntax, numbers, instance.frames, instance.pixel_layout
        )
        part_type = (
            "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
            if native
            else f"{stored_type}; transfer-syntax={syntax}"
        )
    else:
        data = await run_off_loop(call, frames_native, path, numbers)
        part_type = "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    await audit_read(
        call,
        study,
        "frames",
        {"instance": instance.sop_instance_uid, "frames": len(numbers)},
    )
    inner = part_type.split(";")[0]
    return await multipart(request, inner, [(part_type, d) for d in data])


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
    store = store_of(call)
    key = (study.id, instance.id, number)
    png = store.renders.get(key)  # checked and audited all the same: only the work is saved
    if png is None:
        try:
            png = await store.render(
                store.path_of(study.id, instance.id), number, instance.pixel_layout
            )
        except ImagingUnavailable as exc:  # a render worker died: try again
            raise ApiError(503, exc.code, str(exc)) from None
        store.renders.put(key, png)
    await audit_read(
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
    path = store_of(call).path_of(study.id, instance.id)

    def value() -> bytes | None:
        from pydicom import dcmread

        ds = dcmread(path)
        element = ds.get(tag)
        if element is None or not isinstance(element.value, bytes | bytearray):
            return None
        return bytes(element.value)

    data = await run_off_loop(call, value)
    if data is None:
        raise ApiError(404, "bulkdata_not_found", "No such bulk data.")
    await audit_read(
        call,
        study,
        "bulkdata",
        {"instance": instance.sop_instance_uid, "tag": f"{tag:08X}"},
    )
    return await multipart(
        request, "application/octet-stream", [("application/octet-stream", data)]
    )


async def ecg(request: web.Request) -> web.StreamResponse:
    """The ECG viewer's JSON: leads calibrated in mV, the device's measurements (not DICOMweb)."""
    from consult.imaging.ecg import read_ecg

    call, study, instances = await _target(request, "ecg")
    path = store_of(call).path_of(study.id, instances[0].id)
    try:
        answer = await run_off_loop(call, read_ecg, path)
    except DicomRejected as exc:
        raise ApiError(422, exc.code, exc.message) from None
    await audit_read(call, study, "ecg", {"instance": instances[0].sop_instance_uid})
    return web.Response(
        body=json.dumps(answer, separators=(",", ":")).encode(),
        headers={"Content-Type": "application/json", "Cache-Control": "no-store"},
    )
