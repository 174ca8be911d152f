"""Which pages may open a signaling socket (issue 16 item 3: signaling survives a provider cut).

A page is served through one network provider's URL (say https://a.hospital.example) and, when
that provider fails, reconnects through another's (https://b.hospital.example): its socket then
carries ``Origin: https://a.hospital.example`` to B's host. Allowed are the request's own origin
(scheme://host, or the proxy's forwarded one, as engine.io's same-origin default) and the
origins of the configured providers' signaling URLs; any other site's page is refused, so a
token it got hold of opens no socket from there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

#: A page reconnects through another provider when its socket heard nothing for this long past
#: the server's ping interval (the page's grace; web/static/signaling.js says the same).
FAILOVER_GRACE_MS = 1500

#: With more than one signaling URL the server pings every socket this often (engine.io), so a
#: page notices a silent (blackholed) provider within ping + grace instead of 45 s.
FAILOVER_PING_INTERVAL_S = 1


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a URL, lower case (an Origin header's form)."""
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}" if parts.scheme else ""


def _own_origins(environ: Mapping[str, Any]) -> set[str]:
    """The request's own origin(s), as engine.io's default check computes them."""
    host = str(environ.get("HTTP_HOST") or "")
    if not host:
        return set()
    scheme = str(environ.get("wsgi.url_scheme") or "http")
    own = {f"{scheme}://{host}".lower()}
    if "HTTP_X_FORWARDED_PROTO" in environ or "HTTP_X_FORWARDED_HOST" in environ:
        proto = str(environ.get("HTTP_X_FORWARDED_PROTO", scheme)).split(",")[0].strip()
        fhost = str(environ.get("HTTP_X_FORWARDED_HOST", host)).split(",")[0].strip()
        own.add(f"{proto}://{fhost}".lower())
    return own


def origin_policy(signaling_urls: Iterable[str]) -> Callable[[str | None, Any], bool]:
    """engine.io's ``cors_allowed_origins`` callable: same origin, or a provider's page."""
    providers = frozenset(o for o in (origin_of(u) for u in signaling_urls) if o)

    def allowed(origin: str | None, environ: Any = None) -> bool:
        if not origin:
            return True  # no Origin header: not a browser page (engine.io skips the check)
        origin = origin.lower()
        return origin in providers or origin in _own_origins(environ or {})

    return allowed
