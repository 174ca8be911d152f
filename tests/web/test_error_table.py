"""One table of error codes (issue 11): every code a client can meet has its zh and en text, its
HTTP status comes from the table, and the pages' one dictionary and docs/errors.md derive from it.
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

import consult.errors as errors
from consult.error_table import CATEGORY_STATUS, ERRORS, browser_module, markdown
from web.api.errors import status_of

ROOT = Path(__file__).resolve().parents[2]
CJK = re.compile(r"[\u4e00-\u9fff]")


def _domain_errors() -> list[type[errors.ConsultError]]:
    found: list[type[errors.ConsultError]] = []
    pending = [errors.ConsultError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_code_has_a_category_and_both_texts():
    assert len(ERRORS) == len({row.code for row in ERRORS.values()})
    for row in ERRORS.values():
        assert row.category in CATEGORY_STATUS, row
        assert CJK.search(row.zh), f"{row.code}: no Chinese text"
        assert row.en.strip() and not CJK.search(row.en), f"{row.code}: no English text"
        if "_" in row.code:
            assert row.code not in row.zh + row.en, f"{row.code}: raw code in its text"


@pytest.mark.parametrize("cls", _domain_errors(), ids=lambda c: c.__name__)
def test_every_domain_error_is_in_the_table_with_its_status(cls):
    assert cls.code in ERRORS, f"{cls.__name__}: code {cls.code!r} missing from the table"
    status = status_of(cls.__new__(cls))  # only its class and code matter
    assert status == ERRORS[cls.code].status, cls
    # the table agrees with the error's category class
    for base, expected in (
        (errors.Unauthenticated, 401),
        (errors.PermissionDenied, 403),
        (errors.NotFound, 404),
        (errors.InvalidInput, 422),
        (errors.Conflict, 409),
        (errors.RuleRefused, 409),
    ):
        if issubclass(cls, base):
            assert status == expected, cls
            break


# Codes written literally at the boundaries and in the pages: all must be in the table.
_LITERALS = [
    (r'SignalingError\(\s*"([a-z_]+)"', "signaling"),
    (r'_refusal\(\s*"([a-z_]+)"', "signaling"),
    (r'ApiError\(\s*\d+,\s*"([a-z_]+)"', "web"),
    (r'bad_request\(\s*"([a-z_]+)"', "web/api"),
    (r'^\s+"[a-z_]+": "([a-z_]+)",$', "signaling/errors.py"),  # media codes as told
    (r'new SignalError\("([a-z_]+)"', "web/static"),
    (r'new ApiError\(\d+, "([a-z_]+)"', "web/static"),
    (r'code: "([a-z_]+)"', "web/static"),
]


def test_every_code_a_boundary_or_page_writes_is_in_the_table():
    seen: dict[str, str] = {}
    for pattern, where in _LITERALS:
        base = ROOT / where
        for path in [base] if base.is_file() else base.rglob("*.[pj][ys]"):
            for code in re.findall(pattern, path.read_text(encoding="utf-8"), re.MULTILINE):
                seen.setdefault(code, str(path.relative_to(ROOT)))
    assert {"not_joined", "bad_json", "network_error", "reason_missing", "server_busy"} <= set(seen)
    missing = {code: path for code, path in seen.items() if code not in ERRORS}
    assert not missing, f"codes without a row in consult/error_table.py: {missing}"


def test_the_pages_have_one_error_dictionary():
    """No page keeps its own copy of the error texts: they come from /errors.js."""
    for name in ("i18n.js", "portal-strings.js", "room-strings.js"):
        text = (ROOT / "web/static" / name).read_text(encoding="utf-8")
        own = re.findall(r'"(?:api|error)\.([a-z_]+)":', text)
        assert own == ["prefix", "prefix"] or own == [], (name, own)
    module = browser_module()
    for code in ERRORS:
        assert f'"error.{code}"' in module


def test_docs_errors_md_is_generated_from_the_table():
    assert (ROOT / "docs/errors.md").read_text(encoding="utf-8") == markdown(), (
        "run: python -m consult.error_table > docs/errors.md"
    )


async def test_the_server_serves_the_dictionary_the_pages_import(server):
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/errors.js") as reply:
        assert reply.status == 200
        assert reply.content_type == "text/javascript"
        body = await reply.text()
    for code in ("not_admitted", "visit_closed", "not_a_participant", "token_revoked"):
        assert ERRORS[code].zh in body and ERRORS[code].en in body
    assert 'import { ERROR_STRINGS } from "/errors.js";' in (ROOT / "web/static/i18n.js").read_text(
        encoding="utf-8"
    )
