"""Whether a credentialed request looks forged: its origin, and the CSRF double-submit; pure.

The request reader asks before anything else happens to an unsafe request or a WebSocket
handshake that carries credentials: a forged one is refused before any refresh, so it
cannot even rotate tokens.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from .csrf import CsrfSigner
from .origins import cross_site_refused

__all__ = ["ForgeryCheck", "route_path"]


@dataclass(frozen=True, slots=True)
class ForgeryCheck:
    """The settings a cookie-carrying request is checked against: the origins allowed
    besides the app's own, the paths exempt from the CSRF token (login forms), and the
    double-submit token's header and signer."""

    allowed_origins: frozenset[str]
    csrf_exempt_paths: frozenset[str]
    csrf_header: bytes
    csrf: CsrfSigner

    def cookie_forgery(
        self,
        headers: Collection[tuple[bytes, bytes]],
        method: str | None,
        path: str,
        scheme: str,
        state_id: str | None,
    ) -> str | None:
        """Why a cookie-carrying WebSocket handshake or unsafe-method request looks forged
        (cross-site), or None.

        WebSocket handshakes are checked by Origin (cross-site WebSocket hijacking); unsafe
        HTTP methods by Sec-Fetch-Site and Origin, then by the CSRF token.
        """
        allowed = self.allowed_origins
        if method is None:
            return cross_site_refused(scheme, headers, allowed, check_fetch_site=False)
        reason = cross_site_refused(scheme, headers, allowed, check_fetch_site=True)
        if reason is None and path not in self.csrf_exempt_paths:
            values = [v for k, v in headers if k == self.csrf_header]
            if (
                state_id is None
                or len(values) != 1
                or not self.csrf.verify(state_id, values[0].decode("latin-1"))
            ):
                reason = "CSRF token missing or invalid"
        return reason

    def login_forgery(
        self, headers: Collection[tuple[bytes, bytes]], path: str, scheme: str
    ) -> str | None:
        """Why an unsafe request without any of the kit's cookies looks forged, or None.

        Only on a CSRF-exempt path: such a path is a login form, and posted from another
        site it signs the victim in to the attacker's account (login CSRF). The token check
        is what it is exempt from, not the Origin and Fetch-Metadata ones.
        """
        if path not in self.csrf_exempt_paths:
            return None
        return cross_site_refused(scheme, headers, self.allowed_origins, check_fetch_site=True)

    def gateway_forgery(
        self, headers: Collection[tuple[bytes, bytes]], method: str | None, scheme: str
    ) -> str | None:
        """Why an unsafe request or a WebSocket handshake authenticated by a gateway cookie
        looks forged, or None.

        There is no CSRF token to double-submit (the gateway, not this app, sets the
        cookies, and no state id of ours is in them), so the browser's own word is
        required: an ``Origin`` that is this app's or an allowed one, or, without
        ``Origin``, ``Sec-Fetch-Site: same-origin``. ``same-site`` is not enough: every
        sibling host under the gateway's domain is same-site.
        """
        allowed = self.allowed_origins
        if method is None:
            return cross_site_refused(scheme, headers, allowed, check_fetch_site=False)
        reason = cross_site_refused(scheme, headers, allowed, check_fetch_site=True)
        if reason is None and not any(k == b"origin" for k, _ in headers):
            sites = [v.strip().lower() for k, v in headers if k == b"sec-fetch-site"]
            if sites != [b"same-origin"]:
                reason = (
                    "Origin missing (and no Sec-Fetch-Site: same-origin) on an unsafe "
                    "request authenticated by a gateway cookie"
                )
        return reason


def route_path(path: str, root_path: str) -> str:
    """The path as the app's routes (and ``csrf_exempt_paths``) see it: the scope's path
    without the ``root_path`` it includes, by the rule Starlette's router uses."""
    if path == root_path:
        return ""
    if path.startswith(root_path) and path[len(root_path)] == "/":
        return path[len(root_path) :]
    return path
