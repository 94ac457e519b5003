"""Test helpers for the real-provider tests: an app behind oidc-provider, and the browser's
part of the authorization-code flow (following redirects, typing the login)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import httpx2
from fastapi import FastAPI, Request
from starlette.testclient import TestClient

from fastapi_authkit import AuthKitMiddleware, create_store, sign_out
from fastapi_authkit.config import AuthStore
from fastapi_authkit.dependencies import CurrentUser, OptionalUser
from fastapi_authkit.oidc import OIDCClient

from tests.support.oidc_server import API, OIDCProviderServer
from tests.support.tokens import SECRET_KEY

if TYPE_CHECKING:
    from tests.support.oauth2_server import OAuth2Server

REDIRECT_URI = "https://app.test/auth/callback"


def oidc_client(
    provider: OIDCProviderServer, clock: Callable[[], float], **options: Any
) -> OIDCClient:
    settings: dict[str, Any] = {
        "issuer": provider.issuer,
        **provider.client_options,
        "audience": API,
        "resource": API,
        "scope": "openid profile email api",
        "token_typ": "at+jwt",
        "redirect_uri": REDIRECT_URI,
        "clock": clock,
        **options,
    }
    return OIDCClient(**settings)


def oidc_app(
    oidc: OIDCClient, clock: Callable[[], float], **store_options: Any
) -> tuple[FastAPI, AuthStore]:
    """The README's smallest app behind an identity provider, plus a public route and
    sign-out (which revokes the refresh token at the provider through the grant's hook)."""
    options: dict[str, Any] = {**oidc.store_options(interval=10), **store_options}
    store = create_store(secret_key=SECRET_KEY, clock=clock, **options)
    app = FastAPI()
    app.add_middleware(AuthKitMiddleware, store=store)
    app.include_router(oidc.router())

    @app.get("/me")
    async def me(user: CurrentUser) -> Any:
        return user

    @app.get("/public")
    async def public(user: OptionalUser) -> dict[str, Any]:
        return {"user": user}

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, bool]:
        sign_out(request)
        return {"ok": True}

    return app, store


def browser(app: FastAPI) -> TestClient:
    return TestClient(app, base_url="https://testserver")


def code_flow(
    tc: Any,
    provider: OIDCProviderServer,
    *,
    login: str = "alice",
    redirect: str = REDIRECT_URI,
    prefix: str = "/auth",
) -> Any:
    """Sign in through the real provider: our {prefix}/login, the provider's login form and
    consent, back to our callback. Returns the callback's response."""
    query = authorize(tc, provider, login=login, redirect=redirect, prefix=prefix)
    return tc.get(f"{prefix}/callback?{query}", follow_redirects=False)


def authorize(
    tc: Any,
    provider: OIDCProviderServer,
    *,
    login: str = "alice",
    redirect: str = REDIRECT_URI,
    prefix: str = "/auth",
) -> str:
    """The browser's part up to our callback: returns the query the provider sends back."""
    start = tc.get(f"{prefix}/login", params={"next": "/me"}, follow_redirects=False)
    assert start.status_code == 302, start.text
    return at_provider(provider, start.headers["location"], login=login, redirect=redirect)


def at_provider(
    provider: OIDCProviderServer, location: str, *, login: str = "alice", redirect: str
) -> str:
    """The browser at the provider, from our login's redirect (``location``): the login form,
    consent, then back towards ``redirect``. Returns the query the provider sends back."""
    with httpx2.Client(timeout=10.0) as session:  # the browser's provider cookies
        for _ in range(20):
            if location.startswith(redirect):
                break
            url = urljoin(provider.issuer + "/", location)
            response = session.get(url)
            if response.status_code == 200 and "<form" in response.text:
                path = urlsplit(url).path
                response = session.post(f"{provider.issuer}{path}/login", data={"login": login})
            assert response.status_code in (302, 303), response.text
            location = response.headers["location"]
        else:  # pragma: no cover - a provider that never redirects back
            raise AssertionError("the provider never redirected back")
    return urlsplit(location).query


def opaque_client(server: OAuth2Server, redirect: str, **options: Any) -> OIDCClient:
    """A client of the plain OAuth 2.0 server (its opaque access tokens introspected), the
    provider's tokens as the session."""
    return OIDCClient(
        issuer=server.url,
        **server.client_options,
        audience=server.client.client_id,
        scope="profile",
        access_tokens="introspect",
        redirect_uri=redirect,
        clock=server.now,
        **options,
    )


def opaque_sign_in(
    server: OAuth2Server, redirect: str, **options: Any
) -> tuple[TestClient, OIDCClient]:
    """Signed in through the plain OAuth 2.0 server, whose auto-approving user answers the
    authorization request with a redirect back to us: the browser and the app's client."""
    oidc = opaque_client(server, redirect, **options)
    app, _ = oidc_app(oidc, server.now)
    tc = browser(app)
    start = tc.get("/auth/login", params={"next": "/me"}, follow_redirects=False)
    assert start.status_code == 302, start.text
    answer = httpx2.get(start.headers["location"], timeout=10.0)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(redirect)
    done = tc.get(f"/auth/callback?{urlsplit(location).query}", follow_redirects=False)
    assert done.status_code == 303, done.text
    return tc, oidc


class StaticJSON:
    """A loopback HTTP server answering every GET with ``self.body`` (a JWKS mirror that
    lags behind the provider, as a CDN-cached one does, or a provider answering garbage)."""

    def __init__(
        self, body: Any, *, port: int = 0, raw: bytes | None = None, status: int = 200
    ) -> None:
        self.body = body
        self.raw = raw
        self.status = status
        # (method, path, headers, body) of every request, for tests that check what was sent.
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.requests.append((self.command, self.path, headers, body))
                payload = outer.raw if outer.raw is not None else json.dumps(outer.body).encode()
                self.send_response(outer.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[StaticJSON]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(timeout=5)
