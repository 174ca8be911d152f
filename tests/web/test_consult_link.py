"""The consultations page (/consult, issue 14) is reached from the headers of the doctor's queue
and of the staff console, for the roles that may use it: doctors request and are invited (R10,
R16), the consult centres' operators approve and assign (R15). The link's text is in both
languages; the server answers its address with the consultations page."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import aiohttp

from consult.permissions import PERMISSIONS

STATIC = Path(__file__).resolve().parents[2] / "web" / "static"


class _HeaderLinks(HTMLParser):
    """The attributes of each ``<a>`` inside the page's ``<header>``."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.links: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "header":
            self.depth += 1
        elif tag == "a" and self.depth:
            self.links.append(dict(attrs))

    def handle_endtag(self, tag: str) -> None:
        if tag == "header":
            self.depth -= 1


def _consult_links(html: str) -> list[dict[str, str | None]]:
    parser = _HeaderLinks()
    parser.feed(html)
    return [link for link in parser.links if link.get("href") == "/consult"]


def _consult_page_roles() -> set[str]:
    """The roles consult.js lets in (``requireSession([...])``)."""
    source = (STATIC / "consult.js").read_text(encoding="utf-8")
    found = re.findall(r"requireSession\(\[([^\]]*)\]\)", source)
    assert len(found) == 1, found
    return set(re.findall(r'"([a-z_]+)"', found[0]))


def test_the_queue_and_the_console_link_the_consultations_page_for_its_roles() -> None:
    may_list = {role.value for role in PERMISSIONS["consultation.list"]}
    assert _consult_page_roles() == may_list == {"doctor", "operator"}

    # The queue is the doctors' page: the link is always shown there.
    (queue,) = _consult_links((STATIC / "queue.html").read_text(encoding="utf-8"))
    assert queue.get("data-i18n") == "nav.consult" and "hidden" not in queue

    # The console serves admins and nurses too: hidden until console.js matches data-roles.
    (console,) = _consult_links((STATIC / "console.html").read_text(encoding="utf-8"))
    assert console.get("data-i18n") == "nav.consult" and "hidden" in console
    assert set((console.get("data-roles") or "").split()) == may_list
    script = (STATIC / "console.js").read_text(encoding="utf-8")
    assert 'querySelectorAll("[data-roles]:not(.console-tab)")' in script

    strings = (STATIC / "portal-strings.js").read_text(encoding="utf-8")
    assert re.findall(r'"nav\.consult": "([^"]+)"', strings) == ["远程会诊", "Consultations"]


async def test_the_link_leads_to_the_consultations_page(server) -> None:
    async with aiohttp.ClientSession() as http:
        for page in ("/queue", "/console"):
            async with http.get(f"{server.url}{page}") as reply:
                assert reply.status == 200
                (link,) = _consult_links(await reply.text())
            async with http.get(f"{server.url}{link['href']}") as reply:
                assert reply.status == 200 and reply.content_type == "text/html"
                assert '<script type="module" src="/static/consult.js">' in await reply.text()
