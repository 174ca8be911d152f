"""An access log that writes a request's route, never what the client put in its URL.

Join links once carried tokens in their query string, and a client may still send one there
(refused: ``token_in_query``), or put one in the path (``/room%3Ftoken=..`` decodes to a path
with a ``?``). So the line names the matched route's template (``/api/v1/visits/{visit_id}``,
``/vendor/socket.io``), and ``-`` for a request that matched no route: no query string, no path
segment the client chose, ever reaches the log (issue 13, R33)."""

from __future__ import annotations

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse


def loggable_path(request: BaseRequest) -> str:
    """The route template that ``request`` matched, or ``-``."""
    match_info = getattr(request, "match_info", None)
    route = getattr(match_info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None:  # no route matched (404, a malformed request line)
        return "-"
    return str(resource.canonical) or "/"


class PathOnlyAccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %d %.3fs",
            request.remote,
            request.method,
            loggable_path(request),
            response.status,
            time,
        )
