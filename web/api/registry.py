"""The route registry: one :class:`Operation` per REST route, declared next to its handler.

The registry is the single source of the aiohttp routes and of the OpenAPI document. A handler
is an ``async def`` whose parameters say what it takes: ``call`` (always), and optionally
``body``, ``query`` and ``path``, each annotated with a pydantic model; its return annotation is
the response model (``None`` for 204 No Content)::

    @api.operation("POST", "/visits/{visit_id}/admit", action="visit.admit", tag="visits")
    async def admit(call: Call, path: VisitPath) -> VisitOut: ...

Uploads and downloads: a ``body`` annotated :class:`RawBody` takes the request body as bytes (up
to the route's ``max_body``); a handler returning :class:`BinaryResponse` answers with bytes of
the type it names (``produces`` lists them for the document).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import BaseModel

Handler = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class RawBody:
    """A request body taken as it is (an upload): its bytes and its declared content type.

    The declared type is only informative: whoever uses the bytes checks what they are.
    """

    data: bytes
    content_type: str


@dataclass(frozen=True)
class BinaryResponse:
    """An answer that is not JSON: bytes, their type, and a file name for the browser."""

    content: bytes
    content_type: str
    filename: str
    attachment: bool = False
    """``Content-Disposition: attachment`` (download) instead of ``inline``."""
    path: Path | None = None
    """A file to stream instead of ``content`` (large media; answers Range requests)."""
    opener: Callable[[], BinaryIO] | None = None
    """Opens a seekable stream of the plain bytes instead (a file encrypted at rest, decrypted
    as it is sent; answers Range requests); ``size`` is its plain length."""
    size: int = 0


_INPUTS = ("body", "query", "path")


@dataclass(frozen=True)
class Operation:
    """One REST route: method, path under ``/api/v1``, its permission action and its models."""

    method: str
    path: str
    handler: Handler
    #: The permission-table action checked before the handler runs; ``None``: a public route
    #: (no bearer token; only sign-in).
    action: str | None
    summary: str
    tag: str
    status: int
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    path_params: type[BaseModel] | None
    response: type[BaseModel] | None
    raw_body: bool = False
    """The body is taken as bytes (:class:`RawBody`), at most :attr:`max_body` of them."""
    max_body: int = 0
    produces: tuple[str, ...] = ()
    """Content types of a :class:`BinaryResponse` answer; empty for JSON."""

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    @property
    def public(self) -> bool:
        return self.action is None


class Registry:
    """An ordered collection of operations."""

    def __init__(self) -> None:
        self._operations: list[Operation] = []

    @property
    def operations(self) -> tuple[Operation, ...]:
        return tuple(self._operations)

    def operation(
        self,
        method: str,
        path: str,
        *,
        action: str | None,
        tag: str,
        status: int = 200,
        max_body: int = 0,
        produces: tuple[str, ...] = (),
    ) -> Callable[[Handler], Handler]:
        """Register the decorated handler; its docstring's first line is the summary."""

        def register(handler: Handler) -> Handler:
            hints = typing.get_type_hints(handler)
            parameters = inspect.signature(handler).parameters
            unknown = set(parameters) - {"call", *_INPUTS}
            if unknown or "call" not in parameters:
                raise TypeError(f"{handler.__name__}: parameters must be call, body, query, path")
            raw_body = hints.get("body") is RawBody
            if raw_body and max_body <= 0:
                raise TypeError(f"{handler.__name__}: a RawBody route needs max_body")
            models = {
                name: _model(handler, hints, name)
                for name in _INPUTS
                if name in parameters and not (name == "body" and raw_body)
            }
            returns = hints.get("return")
            response: type[BaseModel] | None = None
            if returns is BinaryResponse:
                if not produces:
                    raise TypeError(f"{handler.__name__}: a BinaryResponse route needs produces")
            elif returns is not None and returns is not type(None):
                if not (isinstance(returns, type) and issubclass(returns, BaseModel)):
                    raise TypeError(f"{handler.__name__}: return a pydantic model or None")
                response = returns
            if any(op.operation_id == handler.__name__ for op in self._operations):
                raise ValueError(f"duplicate operation id {handler.__name__}")
            doc = inspect.getdoc(handler) or handler.__name__
            self._operations.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    handler=handler,
                    action=action,
                    summary=doc.splitlines()[0],
                    tag=tag,
                    status=204 if response is None and not produces else status,
                    body=models.get("body"),
                    query=models.get("query"),
                    path_params=models.get("path"),
                    response=response,
                    raw_body=raw_body,
                    max_body=max_body,
                    produces=tuple(produces),
                )
            )
            return handler

        return register


def _model(handler: Handler, hints: dict[str, Any], name: str) -> type[BaseModel]:
    model = hints.get(name)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise TypeError(f"{handler.__name__}: {name!r} must be annotated with a pydantic model")
    return model


api = Registry()
"""The registry of every route under ``/api/v1``; the route modules add to it on import."""
