"""The ``teleconsult`` command: ``serve`` and ``demo``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web

from consult.db import Database
from consult.tokens import issue_join_token
from consult.visits import create_demo_visit

from .access_log import PathOnlyAccessLogger
from .app import create_app
from .config import Config, load_config


def _config(args: argparse.Namespace) -> Config:
    return load_config(
        Path(args.config) if args.config else None,
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        data_dir=args.data_dir,
        database_url=args.database_url,
        ice_addresses=args.ice_address or None,
        media_workers=getattr(args, "media_workers", None),
    )


def serve(config: Config) -> None:
    logging.basicConfig(
        level=config.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    web.run_app(
        create_app(config),
        host=config.host,
        port=config.port,
        access_log_class=PathOnlyAccessLogger,
        print=lambda _msg: print(
            f"teleconsult serving on http://{config.host}:{config.port}", flush=True
        ),
    )


async def demo(config: Config, base_url: str) -> dict[str, object]:
    """Create a demo institution, doctor, patient and visit; return one join link per role."""
    db = Database(config.database)
    await db.start()
    try:
        visit = await create_demo_visit(db)
    finally:
        await db.close()
    secret = config.secret()
    links = {}
    for role, user_id in (("doctor", visit.doctor_id), ("patient", visit.patient_id)):
        token = issue_join_token(
            secret, visit_id=visit.visit_id, user_id=user_id, role=role, ttl_s=config.token_ttl_s
        )
        links[role] = (
            f"{base_url.rstrip('/')}/room?{urlencode({'visit': visit.visit_id, 'token': token})}"
        )
    return {"visit_id": visit.visit_id, "links": links}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="teleconsult", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("serve", "run the server"), ("demo", "create a demo visit, print links")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--config", help="TOML configuration file")
        p.add_argument("--data-dir", help="where the SQLite database and data live (./data)")
        p.add_argument("--database-url", help="SQLAlchemy async URL (default: SQLite in data dir)")
        p.add_argument(
            "--ice-address",
            action="append",
            help="local address to offer ICE candidates on (repeatable; default: all but loopback)",
        )
        if name == "serve":
            p.add_argument("--host", help="listen address (127.0.0.1)")
            p.add_argument("--port", type=int, help="listen port (8080)")
            p.add_argument(
                "--media-workers",
                help="media worker processes: 0 = in this process (default), N, or 'auto'",
            )
        else:
            p.add_argument("--base-url", help="the server's URL for the links")
            p.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    config = _config(args)
    if args.command == "serve":
        serve(config)
        return 0
    base_url = args.base_url or f"http://{config.host}:{config.port}"
    result = asyncio.run(demo(config, base_url))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"visit {result['visit_id']}")
        for role, link in result["links"].items():  # type: ignore[attr-defined]
            print(f"{role}: {link}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
