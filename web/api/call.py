"""What a handler gets: the database, the configuration, who is calling and from where."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from consult.actor import Actor
from consult.db import Database

from ..config import Config
from ..keys import CONFIG, DATABASE
from .errors import unauthenticated


@dataclass
class Call:
    """One API request as the handlers see it.

    ``actor`` is set by authentication before the handler runs on every route but the public
    ones; :attr:`me` returns it or refuses with 401.
    """

    request: web.Request
    db: Database
    config: Config
    source_ip: str | None
    actor: Actor | None = None

    @classmethod
    def of(cls, request: web.Request) -> Call:
        return cls(
            request=request,
            db=request.app[DATABASE],
            config=request.app[CONFIG],
            source_ip=request.remote,
        )

    @property
    def me(self) -> Actor:
        if self.actor is None:
            raise unauthenticated()
        return self.actor

    @property
    def bearer(self) -> str | None:
        """The bearer token of the ``Authorization`` header, if well-formed."""
        header = self.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()
