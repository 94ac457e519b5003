"""Test clients that behave like the app's own pages in a browser: https, cookies kept,
and the CSRF cookie echoed in the CSRF header on unsafe requests, as the app's JavaScript
does.

httpx (httpx2, or httpx under an older Starlette) is imported only when a client is made,
so that ``import fastapi_authkit.testing`` needs nothing beyond the kit itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..config import AuthStore
from ..cookies import CookieNames, CookiePolicy, parse_cookie_header
from ..decision import SAFE_METHODS
from ..errors import ConfigurationError
from .apps import find_store

if TYPE_CHECKING:
    import httpx2
    from starlette.testclient import TestClient

__all__ = [
    "BASE_URL",
    "async_auth_client",
    "auth_client",
    "check_returnable",
    "echo_csrf",
    "keep_cookies",
]

# https, so that the client's cookie jar sends the Secure auth cookies back (httpx, like a
# browser, returns Secure cookies over https only).
BASE_URL = "https://testserver"


def auth_client(app: Any, *, base_url: str = BASE_URL, **options: Any) -> TestClient:
    """A Starlette ``TestClient`` for ``app`` on an https base URL, echoing the CSRF cookie
    in the CSRF header of its unsafe requests. ``options`` go to ``TestClient``. Use it as
    ``with auth_client(app) as client:`` to run the app's lifespan."""
    from starlette.testclient import TestClient

    client = TestClient(app, base_url=base_url, **options)
    echo_csrf(client, find_store(app))
    return client


def async_auth_client(app: Any, *, base_url: str = BASE_URL, **options: Any) -> httpx2.AsyncClient:
    """An httpx2 ``AsyncClient`` on an ``ASGITransport`` of ``app`` (https base URL, CSRF
    header echoed). ``options`` go to ``AsyncClient``. The transport does not run the
    app's lifespan: start it yourself when the app needs it."""
    import httpx2

    client = httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url=base_url, **options
    )
    echo_csrf(client, find_store(app))
    return client


def _csrf_from(names: CookieNames, request: Any) -> str | None:
    """The CSRF cookie among the cookies ``request`` is about to send (what the page's
    JavaScript reads from ``document.cookie``)."""
    header = request.headers.get("cookie", "").encode("latin-1")
    return parse_cookie_header(header, names.wanted).get(names.csrf)


class _EchoCsrf:
    """Request hook: an unsafe request without the CSRF header gets the CSRF cookie it
    carries as that header. A header the test set itself is left alone."""

    def __init__(self, store: AuthStore) -> None:
        self.store = store

    def __call__(self, request: Any) -> None:
        store = self.store
        if request.method in SAFE_METHODS or store.csrf_header_name in request.headers:
            return
        token = _csrf_from(store.names, request)
        if token is not None:
            request.headers[store.csrf_header_name] = token


class _AsyncEchoCsrf(_EchoCsrf):
    # An AsyncClient awaits its hooks.
    async def __call__(self, request: Any) -> None:  # type: ignore[override]
        _EchoCsrf.__call__(self, request)


def echo_csrf(client: Any, store: AuthStore | None = None) -> None:
    """Make ``client`` (a ``TestClient`` or an ``AsyncClient``) send the CSRF cookie as the
    CSRF header on unsafe requests; idempotent. ``store`` defaults to the app's."""
    store = find_store(client) if store is None else store
    hooks = client.event_hooks["request"]
    if any(isinstance(hook, _EchoCsrf) and hook.store is store for hook in hooks):
        return
    hook = _AsyncEchoCsrf(store) if _is_async(client) else _EchoCsrf(store)
    hooks.append(hook)


def _is_async(client: Any) -> bool:
    return hasattr(client, "aclose")


def keep_cookies(client: Any, policy: CookiePolicy, set_cookies: Iterable[bytes]) -> None:
    """Put ``set_cookies`` (Set-Cookie values, written with ``policy``) into ``client``'s
    jar as if a response of the app had set them, with their attributes (Secure, Path,
    Max-Age); raises as :func:`check_returnable` does."""
    check_returnable(client, policy.secure)
    # The client's own httpx (httpx2, or httpx under an older Starlette), whatever it is.
    httpx = importlib.import_module(type(client.cookies).__module__.partition(".")[0])
    path = policy.path if policy.path.endswith("/") else f"{policy.path}/"
    request = httpx.Request("GET", client.base_url.join(path))
    headers = [(b"set-cookie", cookie) for cookie in set_cookies]
    client.cookies.extract_cookies(httpx.Response(200, headers=headers, request=request))


def check_returnable(client: Any, secure: bool) -> None:
    """Raise :class:`~fastapi_authkit.ConfigurationError` when ``client`` would never send
    the auth cookies back: ``secure`` cookies and a plain-http base URL."""
    base = client.base_url
    if secure and base.scheme != "https":
        raise ConfigurationError(
            f"the auth cookies are Secure and the client's base URL is {str(base)!r}: it would "
            "never send them back. Use fastapi_authkit.testing.auth_client(app) (https), or "
            "TestClient(app, base_url='https://testserver')"
        )
