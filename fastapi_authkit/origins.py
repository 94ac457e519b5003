"""Which origin a request came from, and whether that origin may use the session; pure.

Browsers send ``Origin`` on every cross-origin request, on unsafe same-origin requests and
on every WebSocket handshake, and ``Sec-Fetch-Site`` on all requests. A cookie-carrying
request from a foreign origin is how CSRF and cross-site WebSocket hijacking work, so these
headers are checked beside the CSRF token (defence in depth). The app's own origin comes
from the ASGI scope (scheme and Host as the server saw them), never from ``X-Forwarded-*``
headers: only a server configured to trust a proxy rewrites the scope.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable
from typing import Final
from urllib.parse import urlsplit

from .errors import ConfigurationError

__all__ = [
    "cookie_domain_mismatch",
    "cross_site_refused",
    "insecure_host",
    "normalize_origin",
    "own_origin",
    "validate_origins",
]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_SCHEMES: Final = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_INSECURE_SCHEMES: Final = frozenset({"http", "ws"})


def normalize_origin(value: str) -> str | None:
    """``scheme://host[:port]`` in lower case without a default port, or None if it is not
    a tuple origin (``null``, garbage, a URL with a path)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username or parts.password:
        return None
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def own_origin(scheme: str, host: bytes | None) -> str | None:
    """The origin of the app itself for this request, from the scope and the Host header."""
    web_scheme = _SCHEMES.get(scheme)
    if web_scheme is None or not host:
        return None
    try:
        text = host.decode("ascii")
    except UnicodeDecodeError:
        return None
    return normalize_origin(f"{web_scheme}://{text}")


def _trustworthy_host(host: str) -> bool:
    """Secure Contexts §3.1: loopback hosts are potentially trustworthy over plain http, and
    browsers accept (and send) Secure cookies there."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _hostname(headers: Collection[tuple[bytes, bytes]]) -> str | None:
    """The host the request names in its Host header (lower case, no port), if any."""
    host = next((v for k, v in headers if k == b"host"), None)
    if not host:
        return None  # nothing to judge by
    try:
        return urlsplit(f"http://{host.decode('ascii')}").hostname
    except (UnicodeDecodeError, ValueError):
        return None


def insecure_host(scheme: str, headers: Collection[tuple[bytes, bytes]]) -> str | None:
    """The request's host when the request is plain http (or ws) to a host that is not a
    trustworthy origin, where a browser drops any cookie marked Secure; else None."""
    if scheme not in _INSECURE_SCHEMES:
        return None
    hostname = _hostname(headers)
    if hostname is None or _trustworthy_host(hostname):
        return None
    return hostname


def cookie_domain_mismatch(domain: str, headers: Collection[tuple[bytes, bytes]]) -> str | None:
    """The request's host when a cookie with ``Domain=domain`` set on its response would be
    dropped by the browser (the host is neither the domain nor under it); else None."""
    hostname = _hostname(headers)
    if hostname is None:
        return None
    wanted = domain.lstrip(".").lower()
    if hostname == wanted or hostname.endswith("." + wanted):
        return None
    return hostname


def validate_origins(origins: Iterable[str]) -> frozenset[str]:
    """Normalize configured origins; a malformed one is a configuration error."""
    if isinstance(origins, str):
        raise ConfigurationError("allowed_origins must be a collection of origins, not a str")
    result = set()
    for origin in origins:
        normalized = normalize_origin(origin) if isinstance(origin, str) else None
        if normalized is None:
            raise ConfigurationError(f"allowed origin {origin!r} is not scheme://host[:port]")
        result.add(normalized)
    return frozenset(result)


def cross_site_refused(
    scheme: str,
    headers: Collection[tuple[bytes, bytes]],
    allowed: frozenset[str],
    *,
    check_fetch_site: bool,
) -> str | None:
    """Why a cookie-carrying request must be refused as cross-site, or None to let it on.

    A missing ``Origin`` passes (non-browser clients send none; the CSRF token still
    applies to unsafe methods); ``null``, malformed, foreign or repeated origins do not. An
    origin in ``allowed`` passes whatever ``Sec-Fetch-Site`` says; otherwise
    ``Sec-Fetch-Site: cross-site`` is refused (with ``check_fetch_site``).
    """
    origins = [v for k, v in headers if k == b"origin"]
    if len(origins) > 1:
        return "several Origin headers"
    origin = None
    if origins:
        try:
            origin = normalize_origin(origins[0].decode("ascii"))
        except UnicodeDecodeError:
            origin = None
        if origin is None:
            return "Origin is null or malformed"
        if origin in allowed:
            # Configured to be let in, and usually on another site: a browser says
            # Sec-Fetch-Site: cross-site for it, which must not overrule the configuration.
            return None
    if check_fetch_site:
        for key, value in headers:
            if key == b"sec-fetch-site" and value.strip().lower() == b"cross-site":
                return "Sec-Fetch-Site: cross-site"
    if origin is None:
        return None
    host = next((v for k, v in headers if k == b"host"), None)
    if origin == own_origin(scheme, host):
        return None
    return f"foreign Origin {origin}"
