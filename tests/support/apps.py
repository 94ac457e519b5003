"""A configurable test app and a recording refresh callback, shared by the flow tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.testclient import TestClient

from fastapi_authkit import (
    AuthKitMiddleware,
    RefreshParam,
    RefreshResult,
    create_issuer,
    create_refresh,
    create_store,
    sign_in,
    sign_out,
)
from fastapi_authkit.config import AuthStore
from fastapi_authkit.dependencies import AuthStateDep, CurrentUser, OptionalUser
from fastapi_authkit.issuer import Issuer
from fastapi_authkit.stores import SessionStore

from tests.support.clock import Clock
from tests.support.tokens import SECRET_KEY, TOKEN_KEY, make_token

Behaviour = Callable[[RefreshParam], Awaitable[RefreshResult]]


class Recorder:
    """A refresh callback that records its calls and mints the next pair (rotation)."""

    def __init__(self, clock: Clock, *, ttl: float = 300) -> None:
        self.clock = clock
        self.ttl = ttl
        self.calls: list[RefreshParam] = []
        self.behaviour: Behaviour | None = None
        self.delay: float = 0  # real seconds to hold the call open (concurrency tests)
        self.counter = 0

    async def __call__(self, param: RefreshParam) -> RefreshResult:
        self.calls.append(param)
        if self.delay:
            await anyio.sleep(self.delay)
        if self.behaviour is not None:
            return await self.behaviour(param)
        self.counter += 1
        return RefreshResult(
            is_success=True,
            new_auth_token=make_token(self.clock, ttl=self.ttl, sub=f"alice-{self.counter}"),
            new_refresh_token=f"refresh-{self.counter}",
            new_refresh_token_expires_in=3600,
        )


def build_store(clock: Clock, recorder: Recorder | None, **overrides: Any) -> AuthStore:
    options: dict[str, Any] = {
        "secret_key": SECRET_KEY,
        "token_key": TOKEN_KEY,
        "clock": clock,
        # Exact time boundaries: the external-mode default leeway has tests of its own.
        "leeway": 0,
        "refresh": (
            create_refresh(interval=60, refresh_api_callback=recorder, timeout=2)
            if recorder is not None
            else None
        ),
    }
    options.update(overrides)
    return create_store(**options)


def state_cookie(
    store: AuthStore,
    refresh_token: str,
    access: str | None = None,
    *,
    sid: str = "sid-0",
    user_state: Any = None,
) -> str:
    """The signed state cookie a sign-in with ``refresh_token`` and ``access`` issues (for
    requests whose cookies a test writes by hand: a refresh needs the state cookie of its
    session, and the state cookie pairs only with the access token it was issued with)."""
    return store.state_codec.dumps(sid, user_state, refresh_token, (access,))


def build_app(store: AuthStore) -> FastAPI:
    """Routes that exercise the public API: sign-in, protected and public reads, writes."""
    app = FastAPI()
    app.add_middleware(AuthKitMiddleware, store=store)

    @app.post("/login")
    async def login(request: Request) -> dict[str, bool]:
        body = await request.json()
        sign_in(
            request,
            auth={"token": body["token"], "type": "Bearer"},
            refresh=body.get("refresh"),
            user_state=body.get("user_state"),
        )
        return {"ok": True}

    @app.get("/me")
    async def me(user: CurrentUser, state: AuthStateDep) -> dict[str, Any]:
        return {"user": user, "sub": state.claims["sub"] if state.claims else None}

    @app.get("/public")
    async def public(user: OptionalUser) -> dict[str, Any]:
        return {"user": user}

    @app.post("/write")
    async def write(user: CurrentUser) -> dict[str, bool]:
        return {"written": True}

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, bool]:
        sign_out(request)
        return {"ok": True}

    @app.get("/missing")
    async def missing(user: OptionalUser) -> JSONResponse:
        return JSONResponse({"error": "nope"}, status_code=404)

    @app.get("/broken")
    async def broken(user: OptionalUser) -> JSONResponse:
        return JSONResponse({"error": "boom"}, status_code=500)

    return app


def client(app: FastAPI) -> TestClient:
    # https so the client's cookie jar sends the Secure cookies back, as a browser would.
    return TestClient(app, base_url="https://testserver")


def login(
    tc: TestClient,
    clock: Clock,
    *,
    ttl: float = 300,
    refresh: str | None = "refresh-0",
    user_state: Any = None,
) -> None:
    response = tc.post(
        "/login",
        json={"token": make_token(clock, ttl=ttl), "refresh": refresh, "user_state": user_state},
    )
    assert response.status_code == 200, response.text


def set_cookies(response: Any) -> dict[str, str]:
    """Set-Cookie headers of a response by cookie name (whole header value)."""
    return {v.split("=", 1)[0]: v for v in response.headers.get_list("set-cookie")}


def make_issuer(backend: SessionStore, clock: Clock, **options: Any) -> Issuer:
    """The flow tests' issuer on ``backend``: access 60 s, grace 10 s, late replay 60 s (the
    default), idle 1 h, absolute 2 h; ``options`` go to ``create_issuer`` as well."""
    settings: dict[str, Any] = {
        "backend": backend,
        "signing_key": "issuer-app-signing-key-0123456789abcdef-01",
        "access_ttl": 60,
        "idle_ttl": 3600,
        "absolute_ttl": 7200,
        "grace": 10,
        "clock": clock,
    }
    settings.update(options)
    return create_issuer(**settings)


def issuer_base_app(
    issuer: Issuer, clock: Clock, *, close_backend: bool = True, **store_options: Any
) -> FastAPI:
    """An app on ``issuer`` with what every issuer app of the tests has: the middleware on a
    store built on it (``store_options`` go to ``create_store``), the issuer in
    ``app.state.issuer``, its backend closed with the app (unless ``close_backend=False``,
    for the second of two apps sharing a store), /logout and /logout-everywhere."""
    store = create_store(secret_key=SECRET_KEY, token_issuer=issuer, clock=clock, **store_options)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if close_backend:
            await issuer.backend.aclose()

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(AuthKitMiddleware, store=store)
    app.state.issuer = issuer

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, bool]:
        return {"revoked": await issuer.sign_out(request)}

    @app.post("/logout-everywhere")
    async def everywhere(request: Request) -> dict[str, bool]:
        return {"revoked": await issuer.sign_out(request, everywhere=True)}

    return app


def issuer_app(
    backend: SessionStore,
    clock: Clock,
    *,
    close_backend: bool = True,
    on_issuer: Callable[[Issuer], None] | None = None,
    on_event: Callable[[Any], Any] | None = None,
) -> FastAPI:
    """An app on the built-in issuer (:func:`make_issuer`'s; the access token refreshed in
    its last 12 s): /login?as=<subject> (and remember=0, idle=<s>, absolute=<s>), /me,
    /public, /logout, /logout-everywhere. ``close_backend=False`` for the second of two apps
    sharing a store; ``on_event`` is the store's audit hook."""
    issuer = make_issuer(backend, clock)
    if on_issuer is not None:
        on_issuer(issuer)
    app = issuer_base_app(issuer, clock, close_backend=close_backend, on_event=on_event)

    @app.post("/login")
    async def login(request: Request) -> dict[str, bool]:
        query = request.query_params
        subject = query.get("as", "alice")
        idle, absolute = query.get("idle"), query.get("absolute")
        await issuer.sign_in(
            request,
            subject,
            user_state={"name": subject},
            persistent=query.get("remember", "1") != "0",
            idle_ttl=None if idle is None else float(idle),
            absolute_ttl=None if absolute is None else float(absolute),
        )
        return {"ok": True}

    @app.get("/me")
    async def me(user: CurrentUser, state: AuthStateDep) -> dict[str, Any]:
        return {"user": user, "sid": state.claims["sid"] if state.claims else None}

    @app.get("/public")
    async def public(user: OptionalUser) -> dict[str, Any]:
        return {"user": user}

    return app
