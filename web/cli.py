"""The ``teleconsult`` command: ``serve``, ``demo``, and administration on the server itself:
``audit verify``, ``audit checkpoint``, ``user add`` (the first admin), ``institution add``,
``department add``, ``practitioner add``, ``recording verify|list|purge|composite|timeline``,
``turn config``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from consult import admin_commands
from consult.admin_commands import CommandResult
from consult.db import Database
from consult.models import InstitutionLevel, Title
from consult.permissions import Role
from consult.tokens import issue_join_token
from consult.trust import SM2PublicKey, TrustError
from consult.visits import create_demo_visit

from . import recording_cli, report_cli, turn_cli
from .config import Config, load_config
from .join_links import room_link

AdminCommand = Callable[[Database], Awaitable[CommandResult]]


def _config(args: argparse.Namespace) -> Config:
    return load_config(
        Path(args.config) if args.config else None,
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        data_dir=args.data_dir,
        database_url=args.database_url,
        ice_addresses=getattr(args, "ice_address", None) or None,
        media_workers=getattr(args, "media_workers", None),
    )


def serve(config: Config) -> None:
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # files 0600, directories 0700: the database, keys and recordings are the server's alone
    os.umask(0o077)
    # the whole server, imported by `serve` only: the other commands start in a fraction of it
    from .access_log import PathOnlyAccessLogger
    from .app import create_app
    from .transport import runner_options

    app = create_app(config)
    app.on_startup.append(_freeze_startup_heap)  # last: after every cleanup context started
    web.run_app(
        app,
        host=config.host,
        port=config.port,
        **runner_options(config),
        access_log_class=PathOnlyAccessLogger,
        print=lambda _msg: print(
            f"teleconsult serving on http://{config.host}:{config.port}", flush=True
        ),
    )


async def _freeze_startup_heap(_app: web.Application) -> None:
    from media.loop_lag import freeze_startup_heap

    freeze_startup_heap()


async def demo(config: Config, base_url: str, *, companion: bool = False) -> dict[str, object]:
    """Create a demo institution, doctor, patient and visit; return one join link per role
    (with ``companion``, a family member beside the patient too)."""
    db = _database(config)
    await db.start()
    try:
        visit = await create_demo_visit(db, companion=companion)
    finally:
        await db.close()
    secret = config.secret()
    links = {}
    people = [("doctor", visit.doctor_id), ("patient", visit.patient_id)]
    if visit.companion_id is not None:
        people.append(("companion", visit.companion_id))
    for role, user_id in people:
        token = issue_join_token(
            secret, room_id=visit.room_id, user_id=user_id, role=role, ttl_s=config.token_ttl_s
        )
        links[role] = room_link(token, visit_id=visit.visit_id, base_url=base_url)
    return {"visit_id": visit.visit_id, "room_id": visit.room_id, "links": links}


def _local_url(config: Config) -> str:
    """The URL a browser on this machine reaches the configured server at."""
    host = config.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.port}"


def _answers(base_url: str, timeout_s: float = 1.0) -> bool:
    """Whether something accepts a TCP connection where ``base_url`` points."""
    parts = urlsplit(base_url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _database(config: Config) -> Database:
    return Database(config.database, field_key=config.field_secret())


async def run_admin_command(config: Config, command: AdminCommand, *, report: bool = False) -> int:
    """Open the database, await one of :mod:`consult.admin_commands`, print its text.

    The text goes to standard output on success (and for ``audit verify``, whose report it is),
    to standard error otherwise; the return value is the command's exit status (``audit
    verify``: 1 when the chain is broken; a refusal: 2).
    """
    # The audit chain holds no encrypted field: verifying it needs no key (nor creates one);
    # with the field key at hand the chat texts are checked against their MACs too.
    db = (
        Database(config.database, field_key=config.existing_field_secret())
        if report
        else _database(config)
    )
    await db.start()
    try:
        text, status = await command(db)
    finally:
        await db.close()
    print(text, file=sys.stdout if status == 0 or report else sys.stderr)
    return status


def _audit_verify(args: argparse.Namespace) -> AdminCommand:
    """``audit verify``: the chain against the checkpoint file (the configured one, or a copy
    given with ``--checkpoints``) under the server's key (or ``--public-key``)."""
    config = _config(args)
    checkpoints = Path(args.checkpoints) if args.checkpoints else config.checkpoints
    try:
        if args.public_key:
            public_key: SM2PublicKey | None = SM2PublicKey.from_pem(
                Path(args.public_key).read_bytes()
            )
        else:
            public_key = config.public_key()
        roots = config.tsa_roots()
    except (OSError, ValueError, TrustError) as exc:
        code = exc.code if isinstance(exc, TrustError) else "unreadable"
        failure = f"error: {code}: the public key or the authority's certificates: {exc}"

        async def refuse(_db: Database) -> CommandResult:
            return failure, 2

        return refuse

    async def command(db: Database) -> CommandResult:
        return await admin_commands.audit_verify(db, checkpoints, public_key, roots)

    return command


def _audit_checkpoint(args: argparse.Namespace) -> AdminCommand:
    """``audit checkpoint``: sign the current heads into the checkpoint file now."""
    config = _config(args)
    try:
        key = config.signing_key()
    except (OSError, TrustError) as exc:
        code = exc.code if isinstance(exc, TrustError) else "unreadable"
        failure = f"error: {code}: the signing key {config.signing_key_path}: {exc}"

        async def refuse(_db: Database) -> CommandResult:
            return failure, 2

        return refuse

    async def command(db: Database) -> CommandResult:
        return await admin_commands.audit_checkpoint(
            db, config.checkpoints, key, config.timestamp_authority()
        )

    return command


def _read_password(args: argparse.Namespace) -> str | None:
    if args.no_password:
        return None
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("the passwords differ")
    return first


def _admin_command(args: argparse.Namespace) -> AdminCommand:
    """The consult admin command that the parsed arguments ask for."""
    what = (args.command, getattr(args, "action", None))
    if what == ("audit", "verify"):
        return _audit_verify(args)
    if what == ("audit", "checkpoint"):
        return _audit_checkpoint(args)
    if what == ("institution", "add"):
        return lambda db: admin_commands.add_institution(db, args.name, args.level)
    if what == ("imaging", "fill-layouts"):
        studies = _config(args).imaging / "studies"
        return lambda db: admin_commands.fill_imaging_layouts(db, studies)
    if what == ("department", "add"):
        return lambda db: admin_commands.add_department(db, args.institution_id, args.name)
    if what == ("practitioner", "add"):
        return lambda db: admin_commands.add_practitioner(
            db,
            user_id=args.user_id,
            department_id=args.department_id,
            licence_number=args.licence_number,
            title=args.title,
            years_of_practice=args.years_of_practice,
            specialty=args.specialty,
            verified=args.verified,
        )
    password = _read_password(args)
    return lambda db: admin_commands.add_user(
        db,
        username=args.username,
        display_name=args.display_name or args.username,
        role=args.role,
        password=password,
        institution_id=args.institution_id,
        department_id=args.department_id,
        operator_department_ids=args.operator_department or (),
    )


def _add_database_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML configuration file")
    p.add_argument("--data-dir", help="where the SQLite database and data live (./data)")
    p.add_argument("--database-url", help="SQLAlchemy async URL (default: SQLite in data dir)")


def _add_admin_parsers(sub: Any) -> None:
    """``audit verify``, ``user add``, ``institution add``, ``department add``,
    ``practitioner add``: run on the server, as its system actor, each change audited."""
    parsers = {}
    nouns = {}
    for noun, verb, text in (
        (
            "audit",
            "verify",
            "recompute the audit chain, check it against the signed checkpoints "
            "and the chat record; exit 1 on a problem",
        ),
        ("audit", "checkpoint", "sign the audit and recording heads into the checkpoint file now"),
        ("user", "add", "create an account, the first admin included"),
        ("institution", "add", "create an institution"),
        ("department", "add", "create a department of an institution"),
        ("practitioner", "add", "give a doctor account its practitioner record"),
        (
            "imaging",
            "fill-layouts",
            "write the pixel layout of instances stored before the rows kept it "
            "(their renderings then skip the header's parse)",
        ),
    ):
        if noun not in nouns:
            nouns[noun] = sub.add_parser(noun, help=text).add_subparsers(
                dest="action", required=True
            )
        parsers[f"{noun} {verb}"] = parsers[noun] = p = nouns[noun].add_parser(verb, help=text)
        _add_database_options(p)
    p = parsers["audit verify"]
    p.add_argument("--checkpoints", help="a checkpoint file (default: the configured one)")
    p.add_argument("--public-key", help="the signing key's public PEM (default: the server's)")
    p = parsers["user"]
    p.add_argument("--username", required=True)
    p.add_argument("--role", required=True, choices=[role.value for role in Role])
    p.add_argument("--display-name", help="the name shown to others (default: the username)")
    p.add_argument("--institution-id", help="doctors, nurses and operators need one")
    p.add_argument("--department-id")
    p.add_argument(
        "--operator-department", action="append", help="an operator's department (repeatable)"
    )
    secret = p.add_mutually_exclusive_group()
    secret.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    secret.add_argument(
        "--no-password", action="store_true", help="an account that cannot sign in by password"
    )
    p = parsers["institution"]
    p.add_argument("name")
    p.add_argument("--level", required=True, choices=[level.value for level in InstitutionLevel])
    p = parsers["department"]
    p.add_argument("institution_id")
    p.add_argument("name")
    p = parsers["practitioner"]
    p.add_argument("--user-id", required=True, help="the doctor account")
    p.add_argument("--department-id", required=True)
    p.add_argument("--licence-number", required=True)
    p.add_argument("--title", required=True, choices=[title.value for title in Title])
    p.add_argument("--years-of-practice", type=int, required=True)
    p.add_argument("--specialty", required=True)
    p.add_argument("--verified", action="store_true", help="record the verification at once")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="teleconsult", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_admin_parsers(sub)
    recording_cli.add_parsers(sub, _add_database_options)
    turn_cli.add_parsers(sub, _add_database_options)
    report_cli.add_parsers(sub)
    for name, text in (("serve", "run the server"), ("demo", "create a demo visit, print links")):
        p = sub.add_parser(name, help=text)
        _add_database_options(p)
        p.add_argument(
            "--ice-address",
            action="append",
            help="local address to offer ICE candidates on (repeatable; default: all but loopback)",
        )
        p.add_argument("--host", help="the server's listen address (127.0.0.1)")
        p.add_argument("--port", type=int, help="the server's listen port (8080)")
        if name == "serve":
            p.add_argument(
                "--media-workers",
                help="media worker processes: 0 = in this process (default), N, or 'auto'",
            )
        else:
            p.add_argument("--base-url", help="the server's URL for the links")
            p.add_argument("--json", action="store_true", help="print JSON")
            p.add_argument(
                "--companion",
                action="store_true",
                help="a family member joins the visit too (a call of three)",
            )
    args = parser.parse_args(argv)
    if args.command == "report":
        return report_cli.run(args)
    config = _config(args)
    if args.command == "recording":
        return recording_cli.run(config, args)
    if args.command == "turn":
        return turn_cli.run(config, args)
    if args.command not in ("serve", "demo"):
        report = (args.command, args.action) == ("audit", "verify")
        return asyncio.run(run_admin_command(config, _admin_command(args), report=report))
    if args.command == "serve":
        serve(config)
        return 0
    base_url = args.base_url or _local_url(config)
    if not _answers(base_url):
        print(
            f"warning: nothing answers at {base_url}; start the server first "
            "(`teleconsult serve` with the same --config, --port or --data-dir), "
            "or pass --base-url",
            file=sys.stderr,
        )
    result = asyncio.run(demo(config, base_url, companion=args.companion))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"visit {result['visit_id']}")
        for role, link in result["links"].items():  # type: ignore[attr-defined]
            print(f"{role}: {link}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
