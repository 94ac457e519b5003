"""Request headers and the session cookies they carry, as bytes for ASGI and as text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Headers = list[tuple[bytes, bytes]]


def cookie_header(cookies: Mapping[str, str]) -> bytes:
    return "; ".join(f"{name}={value}" for name, value in cookies.items()).encode()


def request_headers(cookies: Mapping[str, str] | None = None) -> Headers:
    headers: Headers = [(b"host", b"testserver"), (b"accept", b"application/json")]
    if cookies:
        headers.append((b"cookie", cookie_header(cookies)))
    return headers


def parse_set_cookies(values: Sequence[bytes | str]) -> dict[str, str]:
    """Set-Cookie values to ``{name: value}`` (a deletion maps to "")."""
    cookies = {}
    for raw in values:
        text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
        name, _, rest = text.partition("=")
        value = rest.split(";", 1)[0]
        cookies[name.strip()] = "" if "Max-Age=0" in text else value
    return cookies
