"""An OpenAPI-driven fuzz run (schemathesis) against the in-process server: never a 5xx.

Schemathesis reads ``/api/v1/openapi.json`` and sends examples, boundary values, mutations and
random input (valid and invalid) to every operation, checking ``not_a_server_error``. Each
operation is called with the bearer token of a role its permission action (``x-permission`` in
the document) allows, so the input reaches validation and the consult service instead of
stopping at the permission check. It is bounded (a few examples per operation, a fixed seed,
one pass) so that it finishes well under a minute.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import sys
import time
from pathlib import Path

import pytest
from apiclient import Clinic, Person
from harness import Server, skip_or_fail
from people import verified_doctor

from consult.permissions import PERMISSIONS, Role
from web.api import api
from web.api.dispatch import API_LIMITS

pytestmark = pytest.mark.timeout(180)

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
MAX_EXAMPLES = 4
SEED = 20261122
#: The role that calls an operation: the first one the permission table allows, in this order.
PREFERENCE = [
    Role.PATIENT,
    Role.DOCTOR,
    Role.NURSE,
    Role.OPERATOR,
    Role.ADMIN,
    Role.AUDITOR,
    Role.REGULATOR,
]
#: Sign-out would end the session the other operations use; the role matrix covers it.
EXCLUDED = {"sign_out"}


def _config(tokens: dict[Role, str]) -> str:
    """schemathesis.toml: one ``[[operations]]`` entry per operation with a fitting token."""
    # The tokens are given per operation: no sign-up flow of schemathesis's own (its guess at
    # one took POST /patients/{patient_id}/account for a registration and failed on the path).
    lines: list[str] = ["[auth]", "auto-signup = false", ""]
    for op in api.operations:
        if op.public or op.operation_id in EXCLUDED:
            continue
        assert op.action is not None
        role = next(r for r in PREFERENCE if r in PERMISSIONS[op.action])
        lines += [
            "[[operations]]",
            f"include-operation-id = {json.dumps(op.operation_id)}",
            f'headers = {{ Authorization = "Bearer {tokens[role]}" }}',
            "",
        ]
    return "\n".join(lines)


async def test_no_input_makes_a_server_error(server: Server, clinic: Clinic, tmp_path: Path):
    if not SCHEMATHESIS.exists():
        skip_or_fail("schemathesis is not installed (pip install schemathesis)")
    people: dict[Role, Person] = {Role.ADMIN: clinic.admin}
    people[Role.DOCTOR] = await verified_doctor(clinic)
    for role in (Role.PATIENT, Role.NURSE, Role.OPERATOR, Role.AUDITOR, Role.REGULATOR):
        people[role] = await clinic.person(role.value)
    # The fuzzer is a script: about 20 writes a second from one account, which the request
    # budgets (web/api/limits.py) rightly refuse before validation, so most inputs would reach
    # nothing. Here the budgets' clock moves an hour at every request: every bucket is full.
    hours, start = itertools.count(1), time.monotonic()
    server.app[API_LIMITS].clock = lambda: start + 3600.0 * next(hours)
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config({role: person.token for role, person in people.items()}))
    argv = [
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{server.url}/api/v1/openapi.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--phases",
        "examples,coverage,fuzzing",
        "--generation-database",
        "none",
        "--no-shrink",
        # One worker: with several threads, Python 3.11's ast.parse (which hypothesis uses to
        # describe filters) can fail with "AST constructor recursion depth mismatch".
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--exclude-operation-id",
        *sorted(EXCLUDED),
        # DICOMweb (multipart in and out) has its own hostile-input tests (tests/imaging)
        "--exclude-tag",
        "dicomweb",
    ]
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=tmp_path,  # schemathesis and hypothesis keep their state in the working directory
    )
    out, _ = await process.communicate()
    text = out.decode(errors="replace")
    print("\n" + "\n".join(text.splitlines()[-30:]))
    assert process.returncode == 0, f"schemathesis found failures:\n{text[-8000:]}"
    generated = [int(n) for n in re.findall(r"(\d+) generated", text)]
    assert generated and min(generated) > 0, generated  # ("3790 generated" holds "0 generated")
