"""Whether a credentialed request looks forged: its origin, and the CSRF double-submit; pure.

The request reader asks before anything else happens to an unsafe request or a WebSocket
handshake that carries credentials: a forged one is refused before any refresh, so it
cannot even rotate tokens.
"""

from __future__ import annotations

from collections.abc import Collection

from .config import AuthStore
from .origins import cross_site_refused
from .userstate import SessionData

__all__ = ["cookie_forgery", "gateway_forgery", "login_forgery"]


def gateway_forgery(
    headers: Collection[tuple[bytes, bytes]],
    method: str | None,
    scheme: str,
    allowed_origins: frozenset[str],
) -> str | None:
    """Why an unsafe request or a WebSocket handshake authenticated by a gateway cookie
    looks forged, or None.

    There is no CSRF token to double-submit (the gateway, not this app, sets the
    cookies, and no state id of ours is in them), so the browser's own word is
    required: an ``Origin`` that is this app's or an allowed one, or, without
    ``Origin``, ``Sec-Fetch-Site: same-origin``. ``same-site`` is not enough: every
    sibling host under the gateway's domain is same-site.
    """
    if method is None:
        return cross_site_refused(scheme, headers, allowed_origins, check_fetch_site=False)
    reason = cross_site_refused(scheme, headers, allowed_origins, check_fetch_site=True)
    if reason is None and not any(k == b"origin" for k, _ in headers):
        sites = [v.strip().lower() for k, v in headers if k == b"sec-fetch-site"]
        if sites != [b"same-origin"]:
            reason = (
                "Origin missing (and no Sec-Fetch-Site: same-origin) on an unsafe "
                "request authenticated by a gateway cookie"
            )
    return reason


def cookie_forgery(
    headers: Collection[tuple[bytes, bytes]],
    method: str | None,
    path: str,
    scheme: str,
    session: SessionData | None,
    store: AuthStore,
) -> str | None:
    """Why a cookie-carrying WebSocket handshake or unsafe-method request looks forged
    (cross-site), or None.

    WebSocket handshakes are checked by Origin (cross-site WebSocket hijacking); unsafe
    HTTP methods by Sec-Fetch-Site and Origin, then by the CSRF token.
    """
    if method is None:
        return cross_site_refused(scheme, headers, store.allowed_origins, check_fetch_site=False)
    reason = cross_site_refused(scheme, headers, store.allowed_origins, check_fetch_site=True)
    if reason is None and path not in store.csrf_exempt_paths:
        values = [v for k, v in headers if k == store.csrf_header]
        if (
            session is None
            or len(values) != 1
            or not store.csrf.verify(session.state_id, values[0].decode("latin-1"))
        ):
            reason = "CSRF token missing or invalid"
    return reason


def login_forgery(
    headers: Collection[tuple[bytes, bytes]], path: str, scheme: str, store: AuthStore
) -> str | None:
    """Why an unsafe request without any of the kit's cookies looks forged, or None.

    Only on a CSRF-exempt path: such a path is a login form, and posted from another site
    it signs the victim in to the attacker's account (login CSRF). The token check is what
    it is exempt from, not the Origin and Fetch-Metadata ones.
    """
    if path not in store.csrf_exempt_paths:
        return None
    return cross_site_refused(scheme, headers, store.allowed_origins, check_fetch_site=True)
