"""Origin arithmetic for the cross-site checks: normalisation, the app's own origin from
the scope, and the refusal rules for cookie-carrying requests."""

from __future__ import annotations

import pytest

from fastapi_authkit import ConfigurationError
from fastapi_authkit.origins import (
    cross_site_refused,
    normalize_origin,
    own_origin,
    validate_origins,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://App.Example.com", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://app.example.com:80/", "http://app.example.com"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("null", None),
        ("", None),
        ("ftp://example.com", None),
        ("https://example.com/path", None),
        ("https://example.com?q=1", None),
        ("https://user:pw@example.com", None),
        ("https://example.com:99999", None),
        ("https://", None),
    ],
)
def test_normalize_origin(raw: str, expected: str | None) -> None:
    assert normalize_origin(raw) == expected


def test_own_origin_from_scope_scheme_and_host() -> None:
    assert own_origin("https", b"app.example.com") == "https://app.example.com"
    assert own_origin("wss", b"app.example.com:443") == "https://app.example.com"
    assert own_origin("ws", b"localhost:8000") == "http://localhost:8000"
    assert own_origin("http", None) is None
    assert own_origin("gopher", b"x") is None
    assert own_origin("http", "tëst".encode()) is None


def test_validate_origins() -> None:
    assert validate_origins(["https://A.example:443"]) == frozenset({"https://a.example"})
    with pytest.raises(ConfigurationError):
        validate_origins("https://a.example")  # a str is not a collection of origins
    with pytest.raises(ConfigurationError):
        validate_origins(["not an origin"])
    with pytest.raises(ConfigurationError):
        validate_origins([42])  # type: ignore[list-item]


def _refused(
    headers: list[tuple[bytes, bytes]], allowed: frozenset[str] = frozenset()
) -> str | None:
    base = [(b"host", b"app.example.com")]
    return cross_site_refused("https", base + headers, allowed, check_fetch_site=True)


def test_cross_site_rules() -> None:
    assert _refused([]) is None  # no Origin: a non-browser client; CSRF token still applies
    assert _refused([(b"origin", b"https://app.example.com")]) is None
    assert _refused([(b"sec-fetch-site", b"same-origin")]) is None
    assert _refused([(b"sec-fetch-site", b"Cross-Site")]) == "Sec-Fetch-Site: cross-site"
    assert _refused([(b"origin", b"null")]) == "Origin is null or malformed"
    assert _refused([(b"origin", "https://é.example".encode())]) is not None
    assert _refused([(b"origin", b"https://evil.example")]) == "foreign Origin https://evil.example"
    two = [(b"origin", b"https://app.example.com")] * 2
    assert _refused(two) == "several Origin headers"
    allowed = frozenset({"https://spa.example"})
    assert _refused([(b"origin", b"https://spa.example")], allowed) is None
    # X-Forwarded-* never changes what the app's own origin is.
    forwarded = [(b"x-forwarded-host", b"evil.example"), (b"origin", b"https://evil.example")]
    assert _refused(forwarded) is not None
