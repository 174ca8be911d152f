"""QIDO-RS: the studies, series and instances the caller may read that match."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from consult.imaging import access
from consult.imaging.errors import DicomRejected
from consult.imaging.uids import valid_uid

from ...errors import ApiError
from .common import (
    audit_read,
    call_for,
    dicom_json,
    header_of,
    rows_of,
    run_off_loop,
    store_of,
    uid_of,
)


def _query(request: web.Request) -> Any:
    from consult.imaging.query import parse_query

    try:
        return parse_query(list(request.query.items()))
    except DicomRejected as exc:
        raise ApiError(400, exc.code, exc.message) from None


async def qido_studies(request: web.Request) -> web.StreamResponse:
    """QIDO-RS: the studies the caller may read that match."""
    from consult.imaging.query import study_answers

    call = await call_for(request, "imaging.read")
    query = _query(request)
    wanted = query.match.get("StudyInstanceUID")
    if wanted and valid_uid(wanted):
        studies = [await access.readable_study(call.db, call.me, wanted, "qido")]
    else:
        studies = await access.readable_studies(call.db, call.me)
    rows = [await rows_of(call, study) for study in studies]
    answers = await run_off_loop(call, study_answers, rows, query, header_of(store_of(call)))
    for study in studies:
        await audit_read(call, study, "qido.studies")
    if not studies:
        await audit_read(call, None, "qido.studies", {"found": 0})
    return dicom_json(answers)


async def qido_series(request: web.Request) -> web.StreamResponse:
    """QIDO-RS: a study's series."""
    from consult.imaging.query import series_answers

    call = await call_for(request, "imaging.read")
    study = await access.readable_study(call.db, call.me, uid_of(request, "study"), "qido")
    query = _query(request)
    rows = await rows_of(call, study)
    answers = await run_off_loop(call, series_answers, rows, query, header_of(store_of(call)))
    await audit_read(call, study, "qido.series")
    return dicom_json(answers)


async def qido_instances(request: web.Request) -> web.StreamResponse:
    """QIDO-RS: a study's (or a series') instances."""
    from consult.imaging.query import instance_answers

    call = await call_for(request, "imaging.read")
    study = await access.readable_study(call.db, call.me, uid_of(request, "study"), "qido")
    series = uid_of(request, "series") if "series" in request.match_info else None
    rows = await rows_of(call, study)
    answers = instance_answers(rows, _query(request), series)
    await audit_read(call, study, "qido.instances")
    return dicom_json(answers)
