"""The DICOMweb route table: the aiohttp routes and their OpenAPI document."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from .common import BASE, DICOM_JSON
from .qido import qido_instances, qido_series, qido_studies
from .stow import aecg, stow
from .wado import ecg, wado_bulkdata, wado_frames, wado_instances, wado_metadata, wado_rendered

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def setup_dicomweb(app: web.Application) -> None:
    """Add the DICOMweb routes to ``app`` (the store is ``app[IMAGING]``); the table is
    :data:`ROUTES`, which the OpenAPI document describes too (:func:`openapi_paths`)."""
    for route in ROUTES:
        app.router.add_route(route.method, BASE + route.path, route.handler)


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
