"""One client structure (issue 12, build item 4): every page that talks to a room does it through
the one signaling client (web/static/signaling.js), and no other module opens a socket.

Read from the modules' import graph, starting at each page's entry script: no browser needed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "web" / "static"
SIGNALING = "signaling.js"
SOCKET_IO = "/vendor/socket.io/"
# an import statement (static, possibly over several lines) or a dynamic import()
_IMPORT = re.compile(r"""\bimport\s*(?:[\w*{}\s,$]+?\s*from\s*)?["']([^"']+)["']""")
_DYNAMIC = re.compile(r"""\bimport\s*\(\s*["']([^"']+)["']\s*\)""")
_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S)
# what opens a connection of its own: socket.io's io(), a WebSocket, an EventSource
_OPENS = re.compile(r"(?<![\w.])io\s*\(|\bnew\s+(?:WebSocket|EventSource)\s*\(")


def _source(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def _imports(name: str) -> list[str]:
    text = _source(name)
    return _IMPORT.findall(text) + _DYNAMIC.findall(text)


def _local(spec: str) -> str | None:
    """The static module an import names (``./x.js``, ``/static/x.js``), else None."""
    for prefix in ("./", "/static/"):
        if spec.startswith(prefix):
            return spec[len(prefix) :]
    return None


def _closure(entry: str) -> set[str]:
    seen: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(m for m in map(_local, _imports(name)) if m is not None)
    return seen


def _entries() -> dict[str, str]:
    """Each page and its entry module; a page has no inline script (every script is a module)."""
    entries: dict[str, str] = {}
    for page in sorted(STATIC.glob("*.html")):
        for attributes, body in _SCRIPT.findall(page.read_text(encoding="utf-8")):
            assert not body.strip(), f"{page.name} has an inline script"
            src = re.search(r"""src=["']([^"']+)["']""", attributes)
            assert src is not None, f"{page.name}: a script without src"
            module = _local(src.group(1))
            assert module is not None, f"{page.name}: {src.group(1)} is not one of ours"
            entries[page.name] = module
    return entries


def test_only_the_signaling_module_opens_sockets() -> None:
    modules = sorted(p.name for p in STATIC.glob("*.js"))
    assert SIGNALING in modules
    for name in modules:
        vendor = [spec for spec in _imports(name) if spec.startswith(SOCKET_IO)]
        opens = _OPENS.findall(_source(name))
        if name == SIGNALING:
            assert vendor and opens, "signaling.js no longer opens the sockets"
        else:
            assert not vendor, f"{name} imports socket.io itself: use signaling.js"
            assert not opens, f"{name} opens a connection of its own: {opens}"


@pytest.mark.parametrize(
    ("page", "users"),
    [
        # visits' and consultations' rooms (the doctor's queue embeds the same room view)
        ("room.html", {"room-view.js"}),
        ("queue.html", {"room-view.js"}),
        # image and ECG review together, in the room's review protocol
        ("viewer.html", {"viewer.js"}),
    ],
)
def test_room_pages_reuse_the_signaling_client(page: str, users: set[str]) -> None:
    reached = _closure(_entries()[page])
    assert SIGNALING in reached
    clients = {
        name
        for name in reached
        if re.search(r"\bnew\s+SignalingClient\s*\(", _source(name))
        and any(_local(spec) == SIGNALING for spec in _imports(name))
    }
    assert clients == users, (page, clients)


def test_every_page_with_a_socket_reaches_it_through_signaling() -> None:
    """The portal pages' pushes (/updates) too: updates.js asks signaling.js for the socket."""
    entries = _entries()
    assert {"room.html", "queue.html", "viewer.html", "waiting.html", "consult.html"} <= set(
        entries
    )
    for page in ("waiting.html", "consult.html", "queue.html", "console.html"):
        reached = _closure(entries[page])
        if "updates.js" in reached:
            assert SIGNALING in reached, page
    assert any(_local(spec) == SIGNALING for spec in _imports("updates.js"))
