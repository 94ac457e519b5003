"""The issuer and shared stores behind the middleware: cross-process single flight for an
external callback, and Redis outages (down, paused). The rotation catalogue itself, on both
stores, is tests/security/test_rotation_flows.py."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx2
import pytest
from fastapi import FastAPI, Request
from starlette.testclient import TestClient

from fastapi_authkit import (
    AuthKitMiddleware,
    RefreshParam,
    RefreshResult,
    create_refresh,
    create_store,
)
from fastapi_authkit.dependencies import AuthStateDep, CurrentUser
from fastapi_authkit.issuer import Issuer
from fastapi_authkit.stores import MemoryStore, RedisStore, SessionStore
from fastapi_authkit.userstate import belongs

from tests.support.apps import issuer_app, set_cookies, state_cookie
from tests.support.clock import Clock
from tests.support.http_client import until_unavailable
from tests.support.redis_cluster import RedisClusterServers
from tests.support.redis_servers import RedisServer
from tests.support.redis_stores import redis_store
from tests.support.tokens import SECRET_KEY

AUTH_COOKIES = {"_auth", "_auth_type", "_auth_state", "_auth_refresh", "_auth_csrf"}


def open_client(app: FastAPI) -> TestClient:
    # A context manager keeps one event loop for the whole test, as a server would.
    return TestClient(app, base_url="https://testserver")


# --- cross-process single flight -----------------------------------------------------------


def _external_app(
    shared: SessionStore, clock: Clock, calls: list[str], *, close_on_shutdown: bool = False
) -> FastAPI:
    """An app whose refresh callback is an external auth server (counted)."""
    from tests.support.tokens import TOKEN_KEY, make_token

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
@pytest.mark.parametrize("kind", ["redis", "cluster"])
async def test_two_workers_sharing_redis_call_the_callback_once(
    request: pytest.FixtureRequest, kind: str, clock: Clock
) -> None:
    from tests.support.tokens import make_token

    shared = redis_store(request, kind)
    calls: list[str] = []
    # Two middleware instances with their own in-process single flight: two "workers".
    workers = [_external_app(shared, clock, calls), _external_app(shared, clock, calls)]
    access = make_token(clock, ttl=10)
    state = state_cookie(workers[0].user_middleware[0].kwargs["store"], "original", access)
    cookie = f"_auth={access}; _auth_refresh=original; _auth_state={state}"
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
        response = until_unavailable(lambda: tc.get("/me"))
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


def test_a_one_server_url_to_a_cluster_node_answers_503_and_logs_why(
    redis_cluster: RedisClusterServers, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """A worker given redis://<one cluster node> instead of redis+cluster://: its protected
    routes answer 503 (never 500, never a cleared cookie) and the log names the fix once."""
    prefix = f"t-{uuid.uuid4().hex}:"
    with open_client(
        issuer_app(RedisStore.from_url(redis_cluster.url, prefix=prefix), clock)
    ) as tc:
        assert tc.post("/login").status_code == 200
        cookies = dict(tc.cookies.items())
    node = f"redis://127.0.0.1:{redis_cluster.nodes[0].port}"
    wrong = RedisStore.from_url(node, prefix=prefix, timeout=0.3)
    with (
        caplog.at_level(logging.WARNING, logger="fastapi_authkit"),
        open_client(issuer_app(wrong, clock)) as tc,
    ):
        tc.cookies.update(cookies)
        for _ in range(3):
            response = tc.get("/me")
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "5"
            assert response.headers.get_list("set-cookie") == []
        assert tc.get("/public").json() == {"user": None}
        clock.advance(61)  # a refresh is due: still 503, nothing consumed or cleared
        response = tc.get("/me")
        assert response.status_code == 503, response.text
        assert response.headers.get_list("set-cookie") == []
    named = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and "redis+cluster://" in r.getMessage()
    ]
    assert len(named) == 1, caplog.text
    assert f"use redis+cluster://127.0.0.1:{redis_cluster.nodes[0].port}" in named[0]


def test_redis_down_during_refresh_with_shared_flight(own_redis: RedisServer, clock: Clock) -> None:
    from tests.support.tokens import make_token

    backend = RedisStore.from_url(own_redis.url, prefix="outage2:", timeout=0.3)
    calls: list[str] = []
    app = _external_app(backend, clock, calls, close_on_shutdown=True)
    with open_client(app) as tc:
        access = make_token(clock, ttl=10)
        state = state_cookie(app.user_middleware[0].kwargs["store"], "r0", access)
        cookie = {"cookie": f"_auth={access}; _auth_refresh=r0; _auth_state={state}"}
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
            until_unavailable(lambda: tc.get("/me"))
            started = time.monotonic()
            response = tc.get("/me")
            elapsed = time.monotonic() - started
        finally:
            own_redis.process.send_signal(signal.SIGCONT)
        assert response.status_code == 503
        assert response.headers.get_list("set-cookie") == []
        assert elapsed < 5  # bounded by the timeout (one retry), not hanging
        assert tc.get("/me").status_code == 200


NEW_KEY = "another-token-key-0123456789abcdef0123456789"


@pytest.mark.anyio
@pytest.mark.parametrize("case", ["unusable-everywhere", "unusable-in-the-second-worker"])
async def test_workers_sharing_redis_keep_the_rotated_refresh_token(
    redis_server: RedisServer, clock: Clock, case: str
) -> None:
    """Issue 16 across processes: the first worker's callback rotates the refresh token but
    its access token cannot be used (by anyone, or only by the second worker, which lacks
    the new key). The shared result carries the successor: the second worker emits it too
    and never calls the callback with the rotated-out token."""
    from tests.support.tokens import TOKEN_KEY, make_token

    shared = RedisStore.from_url(redis_server.url, prefix=f"t-{uuid.uuid4().hex}:")
    calls: list[str] = []
    new_key = "wrong-key" if case == "unusable-everywhere" else "k2"

    async def callback(param: RefreshParam) -> RefreshResult:
        calls.append(param.refresh_token)
        return RefreshResult(
            is_success=True,
            new_auth_token=make_token(clock, key=NEW_KEY, headers={"kid": new_key}),
            new_refresh_token=f"rotated-{len(calls)}",
            new_refresh_token_expires_in=600,
        )

    def worker(keys: dict[str, str]) -> FastAPI:
        store = create_store(
            secret_key=SECRET_KEY,
            token_key=keys,
            clock=clock,
            shared_store=shared,
            refresh=create_refresh(interval=30, refresh_api_callback=callback),
        )
        app = FastAPI()
        app.add_middleware(AuthKitMiddleware, store=store)

        @app.get("/me")
        async def me(user: CurrentUser) -> Any:
            return user

        return app

    first = worker({"k1": TOKEN_KEY, "k2": NEW_KEY})
    second = worker({"k1": TOKEN_KEY})
    access = make_token(clock, ttl=10, headers={"kid": "k1"})
    state = state_cookie(first.user_middleware[0].kwargs["store"], "original", access)
    cookie = f"_auth={access}; _auth_refresh=original; _auth_state={state}"
    clock.advance(20)
    responses = []
    for app in (first, second):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="https://t") as http:
            responses.append(await http.get("/me", headers={"cookie": cookie}))
    await shared.aclose()
    assert calls == ["original"]
    kept = []
    for response in responses:
        written = {
            header.split("=", 1)[0]: header.split(";", 1)[0].split("=", 1)[1]
            for header in response.headers.get_list("set-cookie")
        }
        kept.append(written["_auth_refresh"])
        assert "_auth" not in written or case == "unusable-in-the-second-worker"
    assert kept == ["rotated-1", "rotated-1"]
    if case == "unusable-everywhere":
        assert [r.status_code for r in responses] == [503, 503]
    else:
        # The first worker signs in with the new token; the second keeps the successor
        # (the same refresh and CSRF cookies) without the access cookie it cannot verify,
        # and with a state cookie that pairs with the access token its browser keeps as
        # well as with the new one (whichever response the browser stores last, its access
        # and state cookies pair).
        assert [r.status_code for r in responses] == [200, 503]
        assert "_auth=" not in " ".join(responses[1].headers.get_list("set-cookie"))
        by_worker = [
            {c.split("=", 1)[0]: c.split(";", 1)[0].split("=", 1)[1] for c in cookies}
            for cookies in (r.headers.get_list("set-cookie") for r in responses)
        ]
        assert set(by_worker[1]) == {"_auth_state", "_auth_refresh", "_auth_csrf"}
        assert by_worker[1]["_auth_refresh"] == by_worker[0]["_auth_refresh"]
        assert by_worker[1]["_auth_csrf"] == by_worker[0]["_auth_csrf"]
        new_access = by_worker[0]["_auth"]
        state = (
            second.user_middleware[0].kwargs["store"].state_codec.loads(by_worker[1]["_auth_state"])
        )
        assert state is not None
        assert belongs(state, access, "rotated-1") is True
        assert belongs(state, new_access, "rotated-1") is True


def test_a_route_that_needs_the_store_during_an_outage_answers_503_not_500(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """sign_in, sign_out and the sessions list raise StoreUnavailableError when the store is
    down; an app without a handler of its own gets the kit's fail-closed answer (503 with
    Retry-After, no cookie written), never the server's 500."""
    from fastapi_authkit.testing import assert_session_kept, store_down

    app = issuer_app(MemoryStore(), clock)
    issuer: Issuer = app.state.issuer

    @app.get("/sessions")
    async def sessions(request: Request) -> list[str]:
        return [session.id for session in await issuer.sessions(request)]

    with open_client(app) as client:  # raise_server_exceptions: a 500 would raise here
        with store_down(app), caplog.at_level(logging.ERROR, "fastapi_authkit"):
            refused = client.post("/login?as=alice")
        assert (refused.status_code, refused.headers["retry-after"]) == (503, "5")
        assert refused.json() == {"detail": "Authentication temporarily unavailable"}
        assert "set-cookie" not in refused.headers
        assert "the store is unavailable, answered 503" in caplog.text

        assert client.post("/login?as=alice").status_code == 200  # back up: signs in
        with store_down(app):
            still = client.get("/me")  # a valid access token: the view answers
            kept = client.get("/sessions")
        assert still.status_code == 200
        assert (kept.status_code, kept.headers["retry-after"]) == (503, "5")
        assert_session_kept(kept)
        assert client.get("/me").status_code == 200  # nothing was lost
