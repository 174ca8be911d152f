"""The HTTP edge: error shapes and codes, the OpenAPI document, the docs, config and CLI."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from apiclient import Api, Clinic

from web.api import api
from web.api.routes.dicomweb import ROUTES as DICOMWEB_ROUTES
from web.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]
TELECONSULT = Path(sys.executable).parent / "teleconsult"


async def test_bad_requests_get_stable_codes_and_no_traceback(server, clinic: Clinic):
    admin = clinic.admin
    json_header = {"Content-Type": "application/json"}
    cases = [
        (await admin.call("POST", "/accounts", raw=b"{", headers=json_header), 400, "bad_json"),
        (await admin.call("POST", "/accounts", raw=b"", headers=json_header), 400, "bad_json"),
        (
            await admin.call("POST", "/accounts", raw=b"[" * 50_000, headers=json_header),
            400,
            "bad_json",
        ),
        (
            await admin.call("POST", "/accounts", raw=b"username=x", headers={}),
            415,
            "unsupported_media_type",
        ),
        (
            await admin.call("POST", "/accounts", {"username": "ab\u0000c"}),
            422,
            "invalid_request",
        ),
        (await admin.call("POST", "/accounts", [1, 2]), 422, "invalid_request"),
        (
            await admin.call(
                "POST", "/accounts", raw=b"x" * (3 * 1024 * 1024), headers=json_header
            ),
            413,
            "payload_too_large",
        ),
        (await admin.call("GET", "/accounts", params={"limit": "-1"}), 422, "invalid_request"),
        (await admin.call("GET", "/accounts/not-an-id"), 404, "not_found"),
        (await admin.call("GET", f"/accounts/{'0' * 32}"), 404, "user_not_found"),
        (await admin.call("GET", "/no/such/route"), 404, "not_found"),
        (await admin.call("PATCH", "/accounts"), 405, "method_not_allowed"),
        (
            await clinic.api.call("GET", "/me", headers={"Authorization": "Basic eDp5"}),
            401,
            "unauthenticated",
        ),
    ]
    for reply, status, code in cases:
        assert reply.status == status, reply
        assert set(reply.body) == {"error"} and set(reply.body["error"]) == {"code", "message"}
        if code is not None:
            assert reply.code == code, reply
        assert "Traceback" not in reply.body["error"]["message"]
    # Validation messages say where and what, never echo the value (it may be personal data).
    reply = await admin.call("POST", "/patients/find", {"id_number": "x" * 40})
    assert reply.status == 403  # an admin sees no clinical data: refused before validation
    nurse = await clinic.person("nurse")
    reply = await nurse.call("POST", "/patients/find", {"id_number": "1101051980" + "9" * 30})
    assert (reply.status, reply.code) == (422, "invalid_request")
    assert "99999" not in reply.body["error"]["message"]


async def test_answers_are_not_cached(server):
    async with Api(server.url) as client:
        reply = await client.http.get(f"{server.url}/api/v1/health")
        assert reply.headers["Cache-Control"] == "no-store"
        assert await reply.json() == {"status": "ok"}


async def test_openapi_document_comes_from_the_registry(server):
    async with Api(server.url) as client:
        reply = await client.call("GET", "/openapi.json")
    document = reply.body
    assert reply.status == 200 and document["openapi"] == "3.1.0"
    operations = {
        (method.upper(), path): item
        for path, methods in document["paths"].items()
        for method, item in methods.items()
    }
    dicomweb = {(r.method, "/api/v1/dicomweb" + r.path): r for r in DICOMWEB_ROUTES}
    assert len(operations) == len(api.operations) + len(dicomweb)
    for key, route in dicomweb.items():  # plain aiohttp routes, described from their table
        item = operations[key]
        assert item["tags"] == ["dicomweb"] and item["x-permission"] == route.action
        assert item["responses"]["403"]["content"]["application/json"]
        assert {p["name"] for p in item["parameters"] if p["in"] == "path"} == {
            part[1:-1] for part in route.path.split("/") if part.startswith("{")
        }
    studies = operations[("GET", "/api/v1/dicomweb/studies")]
    assert "application/dicom+json" in studies["responses"]["200"]["content"]
    served = {
        (route.method, route.resource.canonical)
        for route in server.app.router.routes()
        if route.resource is not None and route.resource.canonical.startswith("/api/v1/dicomweb")
    }
    assert served == set(dicomweb)  # every DICOMweb route the server has is in the document
    for op in api.operations:
        item = operations[(op.method, "/api/v1" + op.path)]
        assert item["operationId"] == op.operation_id
        if op.public:
            assert item["security"] == []
        else:
            assert item["x-permission"] == op.action
            assert {"401", "403"} <= set(item["responses"])
        for status, response in item["responses"].items():
            if int(status) >= 400:
                assert response["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorBody"
                }
        for ref in re.findall(
            r'"\$ref": "#/components/schemas/([^"]+)"', str(item).replace("'", '"')
        ):
            assert ref in document["components"]["schemas"], ref
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_docs_list_every_route():
    text = (ROOT / "docs" / "api.md").read_text()
    for op in api.operations:
        row = f"| `{op.method}` | `/api/v1{op.path}` |"
        assert row in text, f"docs/api.md lacks {row}"
        if op.action is not None:
            assert f"`{op.action}`" in text


def test_field_key_is_generated_once_and_checked(tmp_path: Path):
    config = Config(data_dir=tmp_path / "data")
    key = config.field_secret()
    assert len(key.encode()) >= 32 and key == config.field_secret()
    assert (tmp_path / "data" / "field.key").stat().st_mode & 0o777 == 0o600
    assert key != config.secret()
    assert Config(data_dir=tmp_path, field_key="k" * 40).field_secret() == "k" * 40
    with pytest.raises(ValueError, match="field_key"):
        load_config(environ={"TELECONSULT_FIELD_KEY": "too short"})
    assert load_config(environ={"TELECONSULT_FIELD_KEY": "f" * 32}).field_key == "f" * 32


def _cli(*argv: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELECONSULT_")}
    return subprocess.run(
        [str(TELECONSULT), *argv], input=stdin, capture_output=True, text=True, env=env, timeout=60
    )


def test_cli_bootstraps_an_admin_and_verifies_the_chain(tmp_path: Path):
    if not TELECONSULT.exists():
        pytest.skip("the teleconsult console script is not installed")
    data = str(tmp_path / "data")
    create = ["user", "add", "--data-dir", data, "--role", "admin", "--password-stdin"]
    weak = _cli(*create, "--username", "root", stdin="short\n")
    assert weak.returncode == 2 and "weak_password" in weak.stderr, weak
    made = _cli(*create, "--username", "root", stdin="Correct-Horse-42\n")
    assert made.returncode == 0 and made.stdout.startswith("user "), made
    again = _cli(*create, "--username", "root", stdin="Correct-Horse-42\n")
    assert again.returncode == 2 and "username_taken" in again.stderr, again
    institution = _cli("institution", "add", "示范医院", "--level", "tertiary", "--data-dir", data)
    assert institution.returncode == 0, institution
    institution_id = institution.stdout.split()[1]
    department = _cli("department", "add", institution_id, "心内科", "--data-dir", data)
    assert department.returncode == 0 and department.stdout.startswith("department "), department

    verify = _cli("audit", "verify", "--data-dir", data)
    assert verify.returncode == 0 and verify.stdout.startswith("audit chain OK"), verify

    # Someone with write access to the file drops the trigger and edits the first event.
    with sqlite3.connect(Path(data) / "teleconsult.db") as db:
        db.execute("DROP TRIGGER audit_events_no_update")
        db.execute("UPDATE audit_events SET source_ip = '10.0.0.1' WHERE seq = 1")
    broken = _cli("audit", "verify", "--data-dir", data)
    assert broken.returncode == 1, broken
    assert "BROKEN at seq 1" in broken.stdout and "altered" in broken.stdout, broken.stdout
