"""The route registry: one :class:`Operation` per REST route, declared next to its handler.

The registry is the single source of the aiohttp routes and of the OpenAPI document. A handler
is an ``async def`` whose parameters say what it takes: ``call`` (always), and optionally
``body``, ``query`` and ``path``, each annotated with a pydantic model; its return annotation is
the response model (``None`` for 204 No Content)::

    @api.operation("POST", "/visits/{visit_id}/admit", action="visit.admit", tag="visits")
    async def admit(call: Call, path: VisitPath) -> VisitOut: ...
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

Handler = Callable[..., Awaitable[Any]]

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
    ) -> Callable[[Handler], Handler]:
        """Register the decorated handler; its docstring's first line is the summary."""

        def register(handler: Handler) -> Handler:
            hints = typing.get_type_hints(handler)
            parameters = inspect.signature(handler).parameters
            unknown = set(parameters) - {"call", *_INPUTS}
            if unknown or "call" not in parameters:
                raise TypeError(f"{handler.__name__}: parameters must be call, body, query, path")
            models = {name: _model(handler, hints, name) for name in _INPUTS if name in parameters}
            returns = hints.get("return")
            if returns is not None and returns is not type(None):
                if not (isinstance(returns, type) and issubclass(returns, BaseModel)):
                    raise TypeError(f"{handler.__name__}: return a pydantic model or None")
                response: type[BaseModel] | None = returns
            else:
                response = None
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
                    status=204 if response is None else status,
                    body=models.get("body"),
                    query=models.get("query"),
                    path_params=models.get("path"),
                    response=response,
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
