"""The REST API under ``/api/v1``: JSON in and out, one consult service per route.

Every route is declared once in :data:`registry.api` (the modules of ``web/api/routes``): its
method and path, the permission-table action it checks, and pydantic models for its path, query,
body and response. From that one registry come the aiohttp routes and the OpenAPI 3.1 document
at ``/api/v1/openapi.json``. The order of checks is in :mod:`web.api.dispatch`; errors become
``{"error": {"code", "message"}}`` in :mod:`web.api.errors`. Reference: ``docs/api.md``.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Final

from aiohttp import web

from . import routes  # noqa: F401  (registers every route)
from .dispatch import aiohttp_handler
from .errors import from_exception
from .limits import API_LIMITS, ApiLimits
from .openapi import PREFIX, REF_TEMPLATE, build_openapi
from .registry import api
from .routes.dicomweb import openapi_paths as dicomweb_paths
from .routes.dicomweb import setup_dicomweb

__all__ = ["PREFIX", "api", "setup_api"]

TITLE: Final = "teleconsult"
VERSION: Final = "1"


def setup_api(app: web.Application) -> None:
    """Add every API route, the OpenAPI document and the JSON error boundary to ``app``."""
    app[API_LIMITS] = ApiLimits()
    for op in api.operations:
        app.router.add_route(op.method, PREFIX + op.path, aiohttp_handler(op))
    app.router.add_get(PREFIX + "/openapi.json", _openapi)
    setup_dicomweb(app)
    app.middlewares.append(_api_boundary)


@functools.cache
def openapi_document() -> bytes:
    """The document as JSON, built on its first request (the same for every app): the
    registry's operations and the DICOMweb routes (tag ``dicomweb``; multipart in and out, so
    plain aiohttp handlers with a table of their own)."""
    document = build_openapi(api, title=TITLE, version=VERSION)
    document["paths"].update(dicomweb_paths({"$ref": REF_TEMPLATE.format(model="ErrorBody")}))
    return json.dumps(document).encode()


async def _openapi(request: web.Request) -> web.Response:
    return web.Response(body=openapi_document(), content_type="application/json")


@web.middleware
async def _api_boundary(request: web.Request, handler: Any) -> web.StreamResponse:
    """Under /api/: JSON errors with stable codes, never a traceback; no caching of answers."""
    if not request.path.startswith("/api/"):
        return await handler(request)
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = from_exception(exc)
    except Exception as exc:
        response = from_exception(exc)
    response.headers.setdefault("Cache-Control", "no-store")
    return response
