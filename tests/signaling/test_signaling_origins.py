"""Which pages may open a signaling socket (issue 16 item 3; signaling/origins.py)."""

from __future__ import annotations

from signaling.origins import origin_of, origin_policy


def _environ(host: str, scheme: str = "https", **extra: str) -> dict[str, str]:
    return {"HTTP_HOST": host, "wsgi.url_scheme": scheme, **extra}


def test_a_page_of_another_provider_may_connect_and_no_other_site() -> None:
    allowed = origin_policy(["https://A.hospital.example/", "https://b.hospital.example:8443"])
    at_b = _environ("b.hospital.example:8443")
    # served through A, reconnecting through B
    assert allowed("https://a.hospital.example", at_b)
    assert allowed("https://b.hospital.example:8443", _environ("a.hospital.example"))
    # the request's own origin, as engine.io's default
    assert allowed("http://10.0.0.5:8080", _environ("10.0.0.5:8080", "http"))
    assert allowed(
        "https://front.example",
        _environ(
            "10.0.0.5",
            "http",
            HTTP_X_FORWARDED_PROTO="https",
            HTTP_X_FORWARDED_HOST="front.example",
        ),
    )
    # anyone else is refused, a scheme or port off by one included
    assert not allowed("https://evil.example", at_b)
    assert not allowed("http://a.hospital.example", at_b)
    assert not allowed("https://b.hospital.example", at_b)
    assert not allowed("null", at_b)


def test_without_provider_urls_only_the_same_origin() -> None:
    allowed = origin_policy([])
    assert allowed("https://a.example", _environ("a.example"))
    assert not allowed("https://b.example", _environ("a.example"))
    assert origin_of("https://B.example:8443/path?q=1") == "https://b.example:8443"
    assert origin_of("not a url") == ""
