"""``teleconsult turn config``: write a provider's coturn configuration (docs/turn.md)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from turn import TurnConfigError, coturn_config

from .config import Config


def add_parsers(sub: Any, add_config_options: Callable[[argparse.ArgumentParser], None]) -> None:
    turn = sub.add_parser("turn", help="coturn configuration per network provider")
    verbs = turn.add_subparsers(dest="action", required=True)
    p = verbs.add_parser("config", help="write a provider's turnserver.conf (holds the secret)")
    add_config_options(p)
    p.add_argument("--provider", help="the provider's name (default: the only one configured)")
    p.add_argument("--output", help="file to write (mode 0600); default: standard output")
    p.add_argument("--log-file", default="stdout", help="coturn's log-file setting (stdout)")


def run(config: Config, args: argparse.Namespace) -> int:
    providers = {p.name: p for p in config.turn_providers}
    if not providers:
        print("no turn_providers are configured (docs/turn.md)", file=sys.stderr)
        return 2
    if args.provider is None and len(providers) > 1:
        print(f"name one --provider of: {', '.join(sorted(providers))}", file=sys.stderr)
        return 2
    provider = providers.get(args.provider) if args.provider else next(iter(providers.values()))
    if provider is None:
        print(f"no TURN provider named {args.provider!r}", file=sys.stderr)
        return 2
    try:
        text = coturn_config(provider, config.client_ice_servers().secret, log_file=args.log_file)
    except TurnConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if args.output is None:
        sys.stdout.write(text)
        return 0
    path = Path(args.output)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
    return 0
