"""HTTP routes: the pages, the static client, the browser libraries from npm.

The REST API (health included) is in ``web/api``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from consult.error_table import browser_module

from .keys import CONFIG

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"


def find_node_modules(configured: str) -> Path | None:
    """Where ``npm ci`` put the browser libraries: configured, beside the source, or here."""
    candidates = [Path(configured)] if configured else []
    candidates += [
        Path(__file__).resolve().parent.parent / "node_modules",
        Path.cwd() / "node_modules",
    ]
    for candidate in candidates:
        if (candidate / "socket.io-client" / "dist").is_dir():
            return candidate
    return None


async def room_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "room.html", headers={"Cache-Control": "no-store"})


def _page(name: str) -> Callable[[web.Request], Awaitable[web.FileResponse]]:
    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-store"})

    return page


#: Pages of the portal (sign-in, the patient's waiting room, the doctor's queue, the staff
#: console) by path.
PAGES = {
    "/signin": "signin.html",
    "/waiting": "waiting.html",
    "/queue": "queue.html",
    "/console": "console.html",
    "/consult": "consult.html",
    "/viewer": "viewer.html",
}

#: Browser libraries served from node_modules: URL prefix -> directory inside node_modules.
VENDOR = {
    "/vendor/socket.io/": "socket.io-client/dist",
    "/vendor/qrcode/": "qrcode-generator/dist",
}


VIEWER_BUNDLE = "/vendor/viewer/"
"""Where the esbuild bundle of Cornerstone3D is served (``scripts/build-viewer.mjs``)."""


def find_viewer_bundle(configured: str) -> Path | None:
    """The Cornerstone3D bundle that setup built: configured, beside the source, or here."""
    candidates = [Path(configured)] if configured else []
    candidates += [
        Path(__file__).resolve().parent.parent / "build" / "viewer",
        Path.cwd() / "build" / "viewer",
    ]
    for candidate in candidates:
        if (candidate / "cornerstone.js").is_file():
            return candidate
    return None


_ERRORS_JS = browser_module()


async def errors_module(request: web.Request) -> web.Response:
    """The pages' one error dictionary, generated from ``consult/error_table.py``."""
    return web.Response(
        text=_ERRORS_JS, content_type="text/javascript", headers={"Cache-Control": "no-cache"}
    )


async def index_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/", index_page)
    app.router.add_get("/room", room_page)
    app.router.add_get("/errors.js", errors_module)
    for path, name in PAGES.items():
        app.router.add_get(path, _page(name))
    app.router.add_static("/static/", STATIC)
    node_modules = find_node_modules(app[CONFIG].node_modules)
    if node_modules is None:
        logger.warning("socket.io-client not found: run 'npm ci' in the repository root")
    else:
        for prefix, directory in VENDOR.items():
            if (node_modules / directory).is_dir():
                app.router.add_static(prefix, node_modules / directory)
            else:
                logger.warning("%s not found: run 'npm ci' in the repository root", directory)
    bundle = find_viewer_bundle(app[CONFIG].viewer_bundle)
    if bundle is None:
        logger.warning("the DICOM viewer is not built: run 'node scripts/build-viewer.mjs'")
    else:
        app.router.add_static(VIEWER_BUNDLE, bundle)
