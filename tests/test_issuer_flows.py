"""The issuer behind the middleware, on both stores: the rotation catalogue as HTTP flows,
revocation checked on every request, cross-process single flight, and Redis outages."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest
from fastapi import FastAPI, Request
from starlette.testclient import TestClient

from fastapi_authkit import (
    AuthKitMiddleware,
    AuthStateDep,
    CurrentUser,
    Issuer,
    OptionalUser,
    RefreshParam,
    RefreshResult,
    create_issuer,
    create_refresh,
    create_store,
)
from fastapi_authkit.stores import MemoryStore, RedisStore, SessionStore

from apps import set_cookies
from conftest import SECRET_KEY, Clock
from servers import RedisServer

AUTH_COOKIES = {"_auth", "_auth_type", "_auth_state", "_auth_refresh", "_auth_csrf"}


def issuer_app(backend: SessionStore, clock: Clock, **store_options: Any) -> FastAPI:
    issuer = create_issuer(
        backend=backend,
        signing_key="flow-signing-key-0123456789abcdef-012345",
        access_ttl=60,
        idle_ttl=3600,
        absolute_ttl=7200,
        grace=10,
        clock=clock,
    )
    store = create_store(secret_key=SECRET_KEY, token_issuer=issuer, clock=clock, **store_options)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await backend.aclose()

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(AuthKitMiddleware, store=store)
    app.state.issuer = issuer

    @app.post("/login")
    async def login(request: Request) -> dict[str, bool]:
        await issuer.sign_in(request, "alice", user_state={"name": "Alice"})
        return {"ok": True}

    @app.get("/me")
    async def me(user: CurrentUser, state: AuthStateDep) -> dict[str, Any]:
        return {"user": user, "sid": state.claims["sid"] if state.claims else None}

    @app.get("/public")
    async def public(user: OptionalUser) -> dict[str, Any]:
        return {"user": user}

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, bool]:
        return {"revoked": await issuer.sign_out(request)}

    @app.post("/logout-everywhere")
    async def everywhere(request: Request) -> dict[str, bool]:
        return {"revoked": await issuer.sign_out(request, everywhere=True)}

    return app


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[SessionStore]:
    if request.param == "memory":
        yield MemoryStore()
    else:
        server = request.getfixturevalue("redis_server")
        # Connections open lazily inside the TestClient's event loop and are closed by the
        # app's shutdown (the client is used as a context manager).
        yield RedisStore.from_url(server.url, prefix=f"t-{uuid.uuid4().hex}:")


def open_client(app: FastAPI) -> TestClient:
    # A context manager keeps one event loop for the whole test, as a server would.
    return TestClient(app, base_url="https://testserver")


def cookie_header(jar: dict[str, str]) -> dict[str, str]:
    return {"cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}


def send_as(tc: TestClient, jar: dict[str, str], path: str, method: str = "GET") -> Any:
    """A request from another browser holding ``jar``, through the same client (one event
    loop, as in one server process), leaving ``tc``'s own cookie jar as it was."""
    saved = list(tc.cookies.jar)
    tc.cookies.clear()
    try:
        return tc.request(method, path, headers=cookie_header(jar))
    finally:
        tc.cookies.clear()
        for cookie in saved:
            tc.cookies.jar.set_cookie(cookie)


def test_sign_in_refresh_and_reuse_after_grace(
    backend: SessionStore, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with open_client(issuer_app(backend, clock)) as tc:
        tc.post("/login")
        old = dict(tc.cookies.items())
        assert tc.get("/me").json()["user"] == {"name": "Alice"}
        clock.advance(55)  # within the refresh interval
        response = tc.get("/me")
        assert response.status_code == 200
        assert {"_auth", "_auth_refresh"} <= set(set_cookies(response))
        # Within grace, the old cookies (a request already in flight) get the same pair.
        clock.advance(5)
        replay = send_as(tc, old, "/me")
        assert replay.status_code == 200
        assert set_cookies(replay)["_auth_refresh"] == set_cookies(response)["_auth_refresh"]
        # After grace, the rotated-out token is theft: family revoked, cookies cleared.
        clock.advance(6)
        stale = {k: v for k, v in old.items() if k != "_auth"}  # its access token expired
        with caplog.at_level(logging.WARNING, logger="fastapi_authkit"):
            stolen = send_as(tc, stale, "/me")
        assert stolen.status_code == 401
        assert all("Max-Age=0" in v for v in set_cookies(stolen).values())
        assert set(set_cookies(stolen)) == AUTH_COOKIES
        assert "reuse detected" in caplog.text
        # The legitimate holder's still-unexpired access token dies with the family.
        legit = tc.get("/me")
        assert legit.status_code == 401
        assert all("Max-Age=0" in v for v in set_cookies(legit).values())


def test_sign_out_revokes_server_side(backend: SessionStore, clock: Clock) -> None:
    with open_client(issuer_app(backend, clock)) as tc:
        tc.post("/login")
        kept = dict(tc.cookies.items())
        response = tc.post("/logout", headers={"x-csrf-token": tc.cookies["_auth_csrf"]})
        assert response.json() == {"revoked": True}
        # A copy of the cookies taken before sign-out is worthless now, access token too.
        assert send_as(tc, kept, "/me").status_code == 401
        clock.advance(100)
        assert send_as(tc, kept, "/me").status_code == 401


def test_sign_out_right_after_rotation_is_not_undone_by_the_grace_cache(
    backend: SessionStore, clock: Clock
) -> None:
    with open_client(issuer_app(backend, clock)) as tc:
        tc.post("/login")
        old = {k: v for k, v in tc.cookies.items() if k != "_auth"}
        clock.advance(61)
        assert tc.get("/me").status_code == 200  # rotation
        tc.post("/logout", headers={"x-csrf-token": tc.cookies["_auth_csrf"]})
        clock.advance(1)  # inside the grace window of that rotation
        assert send_as(tc, old, "/me").status_code == 401


def test_sign_out_everywhere(backend: SessionStore, clock: Clock) -> None:
    with open_client(issuer_app(backend, clock)) as tc:
        tc.post("/login")
        laptop = dict(tc.cookies.items())
        tc.cookies.clear()
        tc.post("/login")  # a second session of the same subject
        assert tc.cookies["_auth"] != laptop["_auth"]
        assert send_as(tc, laptop, "/me").status_code == 200
        csrf = tc.cookies["_auth_csrf"]
        response = tc.post("/logout-everywhere", headers={"x-csrf-token": csrf})
        assert response.json() == {"revoked": True}
        assert send_as(tc, laptop, "/me").status_code == 401


def test_idle_and_absolute_lifetimes_end_the_session(backend: SessionStore, clock: Clock) -> None:
    with open_client(issuer_app(backend, clock)) as tc:
        tc.post("/login")
        clock.advance(3601)  # idle: no refresh for an hour
        response = tc.get("/me")
        assert response.status_code == 401
        assert set(set_cookies(response)) == AUTH_COOKIES
        tc.post("/login")
        for _ in range(4):
            clock.advance(1700)
            assert tc.get("/me").status_code == 200
        clock.advance(1000)  # 7 800 s after sign-in: past the 2 h absolute lifetime
        assert tc.get("/me").status_code == 401


# --- cross-process single flight -----------------------------------------------------------


def _external_app(
    shared: SessionStore, clock: Clock, calls: list[str], *, close_on_shutdown: bool = False
) -> FastAPI:
    """An app whose refresh callback is an external auth server (counted)."""
    from conftest import TOKEN_KEY, make_token

    async def callback(param: RefreshParam) -> RefreshResult:
        calls.append(param.refresh_token)
        await anyio.sleep(0.05)  # a real network call takes a while
        return RefreshResult(
            is_success=True,
            new_auth_token=make_token(clock, sub=f"alice-{len(calls)}"),
            new_refresh_token=f"rotated-{len(calls)}",
        )

    store = create_store(
        secret_key=SECRET_KEY,
        token_key=TOKEN_KEY,
        clock=clock,
        shared_store=shared,
        refresh=create_refresh(interval=30, refresh_api_callback=callback),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if close_on_shutdown:
            await shared.aclose()

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(AuthKitMiddleware, store=store)

    @app.get("/me")
    async def me(state: AuthStateDep, user: CurrentUser) -> dict[str, Any]:
        return {"sub": state.claims["sub"] if state.claims else None}

    return app


@pytest.mark.anyio
async def test_two_workers_sharing_redis_call_the_callback_once(
    redis_server: RedisServer, clock: Clock
) -> None:
    from conftest import make_token

    shared = RedisStore.from_url(redis_server.url, prefix=f"t-{uuid.uuid4().hex}:")
    calls: list[str] = []
    # Two middleware instances with their own in-process single flight: two "workers".
    workers = [_external_app(shared, clock, calls), _external_app(shared, clock, calls)]
    cookie = f"_auth={make_token(clock, ttl=10)}; _auth_refresh=original"
    clock.advance(20)
    responses: list[httpx2.Response] = []

    async def one(app: FastAPI) -> None:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="https://t") as http:
            responses.append(await http.get("/me", headers={"cookie": cookie}))

    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(one, workers[i % 2])
    await shared.aclose()
    assert calls == ["original"]
    assert {r.status_code for r in responses} == {200}
    assert len({tuple(r.headers.get_list("set-cookie")) for r in responses}) == 1
    assert {r.json()["sub"] for r in responses} == {"alice-1"}


# --- Redis outages -------------------------------------------------------------------------


def test_redis_down_fails_closed_and_recovers(own_redis: RedisServer, clock: Clock) -> None:
    backend = RedisStore.from_url(own_redis.url, prefix="outage:", timeout=0.3)
    with open_client(issuer_app(backend, clock)) as tc:
        tc.post("/login")
        cookies = dict(tc.cookies.items())
        assert tc.get("/me").status_code == 200
        own_redis.kill()
        # Valid access token, but revocation cannot be checked: 503, nothing cleared.
        response = tc.get("/me")
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.headers.get_list("set-cookie") == []
        assert tc.get("/public").json() == {"user": None}
        # Refresh due while Redis is down: 503, the refresh token is not consumed.
        clock.advance(61)
        response = tc.get("/me")
        assert response.status_code == 503
        assert response.headers.get_list("set-cookie") == []
        assert dict(tc.cookies.items()) == cookies
        own_redis.start()
        # Back: the very same cookies refresh and work.
        response = tc.get("/me")
        assert response.status_code == 200, response.text
        assert "_auth_refresh" in set_cookies(response)


def test_redis_down_during_refresh_with_shared_flight(own_redis: RedisServer, clock: Clock) -> None:
    from conftest import make_token

    backend = RedisStore.from_url(own_redis.url, prefix="outage2:", timeout=0.3)
    calls: list[str] = []
    with open_client(_external_app(backend, clock, calls, close_on_shutdown=True)) as tc:
        cookie = {"cookie": f"_auth={make_token(clock, ttl=10)}; _auth_refresh=r0"}
        clock.advance(20)
        own_redis.kill()
        response = tc.get("/me", headers=cookie)
        assert response.status_code == 503
        assert response.headers.get_list("set-cookie") == []
        assert calls == []  # never called without a claim: nothing consumed upstream
        own_redis.start()
        assert tc.get("/me", headers=cookie).status_code == 200
        assert calls == ["r0"]


def test_issuer_object_is_exposed(clock: Clock) -> None:
    app = issuer_app(MemoryStore(), clock)
    assert isinstance(app.state.issuer, Issuer)
    assert "HS256" in repr(app.state.issuer)


def test_redis_slow_fails_closed_quickly(own_redis: RedisServer, clock: Clock) -> None:
    """A Redis that stops answering (paused, not dead) is bounded by the store's timeout:
    503 with Retry-After, no cookie touched, and the same cookies work once it answers."""
    import signal
    import time

    backend = RedisStore.from_url(own_redis.url, prefix="slow:", timeout=0.3)
    with open_client(issuer_app(backend, clock)) as tc:
        tc.post("/login")
        assert tc.get("/me").status_code == 200
        assert own_redis.process is not None
        own_redis.process.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            response = tc.get("/me")
            elapsed = time.monotonic() - started
        finally:
            own_redis.process.send_signal(signal.SIGCONT)
        assert response.status_code == 503
        assert response.headers.get_list("set-cookie") == []
        assert elapsed < 5  # bounded by the timeout (one retry), not hanging
        assert tc.get("/me").status_code == 200
