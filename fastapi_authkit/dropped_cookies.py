"""Warnings, once per configuration, about auth cookies that a browser will drop."""

from __future__ import annotations

import logging
from typing import Final

from starlette.types import Scope

from .notices import Notices
from .origins import cookie_domain_mismatch, insecure_host

__all__ = ["warn_if_dropped"]

_INSECURE_NOTICE: Final = "secure-cookie-over-http"
_DOMAIN_NOTICE: Final = "cookie-domain-mismatch"


def warn_if_dropped(notices: Notices, scope: Scope, *, secure: bool, domain: str | None) -> None:
    """Cookies are being set on the response to ``scope``: say so, once, when the browser
    will not keep them (``secure`` and ``domain`` are how they are set)."""
    if secure and not notices.given(_INSECURE_NOTICE):
        _check_secure_transport(notices, scope)
    if domain is not None and not notices.given(_DOMAIN_NOTICE):
        _check_cookie_domain(notices, domain, scope)


def _check_secure_transport(notices: Notices, scope: Scope) -> None:
    """Secure cookies set over plain http to a host other than localhost never come
    back: the sign-in "works" and the next request is anonymous."""
    host = insecure_host(scope.get("scheme", "http"), scope["headers"])
    if host is not None:
        # Starlette's TestClient talks to http://testserver unless told otherwise.
        in_tests = (
            'In tests: TestClient(app, base_url="https://testserver"). '
            if host == "testserver"
            else ""
        )
        notices.once(
            _INSECURE_NOTICE,
            logging.WARNING,
            "Secure auth cookies were set on a plain-http request to %r: browsers keep "
            "Secure cookies from http only on localhost and 127.0.0.1, and HTTP clients "
            "(httpx, requests) send them back only over https, so the next request is "
            "anonymous. %sServe the app over https (behind a TLS-terminating proxy, let "
            "the server trust it: uvicorn --proxy-headers --forwarded-allow-ips=<proxy "
            "address>, so that the app sees https), or, for local development over "
            "http only, create_store(cookie_secure=False)",
            host,
            in_tests,
        )


def _check_cookie_domain(notices: Notices, domain: str, scope: Scope) -> None:
    """A browser drops a cookie whose Domain the request's host is not in (RFC 6265
    §5.3 step 6): the sign-in "works" and the next request is anonymous."""
    host = cookie_domain_mismatch(domain, scope["headers"])
    if host is not None:
        notices.once(
            _DOMAIN_NOTICE,
            logging.WARNING,
            "auth cookies with create_store(cookie_domain=%r) were set on a request to "
            "%r, which is not in that domain: browsers drop them, so the next request "
            "is anonymous. Serve the app under that domain, or set cookie_domain to the "
            "app's host or a parent domain of it (or leave it out: host-only cookies)",
            domain,
            host,
        )
