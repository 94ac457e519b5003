"""Remember me: ``sign_in(..., persistent=False)`` writes session cookies (no Max-Age, no
Expires) that the browser drops when it closes, and every refresh of that session keeps
them so; the built-in issuer's sessions may have shorter idle/absolute limits of their own.
(The browser itself closing is tested in test_browser.py.)"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI, Request
from starlette.testclient import TestClient

from fastapi_authkit import AuthKitMiddleware, create_issuer, create_store, sign_in
from fastapi_authkit.dependencies import CurrentUser
from fastapi_authkit.stores import MemoryStore

from tests.support.apps import Recorder, build_app, build_store, client, issuer_app, set_cookies
from tests.support.clock import Clock
from tests.support.tokens import SECRET_KEY, make_token

NAMES = ("_auth", "_auth_type", "_auth_state", "_auth_refresh", "_auth_csrf")


def _session_only(response: Any) -> bool:
    cookies = set_cookies(response)
    assert set(NAMES) <= set(cookies), cookies
    return all(
        "max-age" not in cookies[n].lower() and "expires" not in cookies[n].lower() for n in NAMES
    )


def _persistent(response: Any) -> bool:
    cookies = set_cookies(response)
    assert set(NAMES) <= set(cookies), cookies
    return all("Max-Age=" in cookies[n] for n in NAMES)


def _remember_app(clock: Clock, recorder: Recorder) -> FastAPI:
    app = build_app(build_store(clock, recorder))

    @app.post("/login-once")
    async def login_once(request: Request) -> dict[str, bool]:
        body = await request.json()
        sign_in(
            request,
            auth={"token": body["token"], "type": "Bearer"},
            refresh=body["refresh"],
            persistent=False,
        )
        return {"ok": True}

    return app


def test_sign_in_not_persistent_writes_session_cookies_and_refreshes_keep_them(
    clock: Clock,
) -> None:
    recorder = Recorder(clock)
    with client(_remember_app(clock, recorder)) as tc:
        response = tc.post(
            "/login-once", json={"token": make_token(clock, ttl=300), "refresh": "refresh-0"}
        )
        assert response.status_code == 200
        assert _session_only(response)
        clock.advance(250)  # within the refresh interval: the next request refreshes
        response = tc.get("/me")
        assert response.status_code == 200
        assert len(recorder.calls) == 1
        assert _session_only(response)
        clock.advance(250)
        response = tc.get("/me")
        assert response.status_code == 200
        assert len(recorder.calls) == 2
        assert _session_only(response)


def test_sign_in_default_stays_persistent_across_refreshes(clock: Clock) -> None:
    recorder = Recorder(clock)
    with client(build_app(build_store(clock, recorder))) as tc:
        response = tc.post("/login", json={"token": make_token(clock), "refresh": "refresh-0"})
        assert _persistent(response)
        clock.advance(250)
        response = tc.get("/me")
        assert len(recorder.calls) == 1
        assert _persistent(response)


def test_sign_in_persistent_must_be_a_bool(clock: Clock) -> None:
    app = FastAPI()
    app.add_middleware(AuthKitMiddleware, store=build_store(clock, None))

    @app.post("/login")
    async def login(request: Request) -> None:
        sign_in(request, auth={"token": make_token(clock)}, persistent="no")  # type: ignore[arg-type]

    with client(app) as tc, pytest.raises(TypeError, match="persistent must be a bool"):
        tc.post("/login")


def test_issuer_sign_in_not_persistent_and_its_refreshes(clock: Clock) -> None:
    with client(issuer_app(MemoryStore(), clock)) as tc:
        response = tc.post("/login?remember=0")
        assert response.status_code == 200
        assert _session_only(response)
        clock.advance(55)  # access 60 s, refreshed in its last 12 s
        response = tc.get("/me")
        assert response.status_code == 200
        assert "_auth_refresh" in set_cookies(response)  # rotated
        assert _session_only(response)
    with client(issuer_app(MemoryStore(), clock)) as tc:
        response = tc.post("/login")
        assert _persistent(response)
        clock.advance(55)
        assert _persistent(tc.get("/me"))


def test_issuer_sign_in_with_a_shorter_idle_limit_ends_the_session_after_it(
    clock: Clock,
) -> None:
    with client(issuer_app(MemoryStore(), clock)) as tc:
        response = tc.post("/login?idle=600")
        assert "Max-Age=600" in set_cookies(response)["_auth_refresh"]
        clock.advance(55)
        response = tc.get("/me")  # the refresh keeps the session's own idle limit
        assert response.status_code == 200
        assert "Max-Age=600" in set_cookies(response)["_auth_refresh"]
        clock.advance(601)  # idle past 600 s (the issuer's own would be 3600 s)
        assert tc.get("/me").status_code == 401
    with client(issuer_app(MemoryStore(), clock)) as tc:
        tc.post("/login")
        clock.advance(55)
        tc.get("/me")
        clock.advance(601)
        assert tc.get("/me").status_code == 200  # the issuer's idle limit: one hour


def test_issuer_sign_in_with_a_shorter_absolute_limit(clock: Clock) -> None:
    with client(issuer_app(MemoryStore(), clock)) as tc:
        start = clock()
        tc.post("/login?absolute=1800")
        while clock() - start + 55 < 1800:  # refreshed every 55 s: never idle
            clock.advance(55)
            assert tc.get("/me").status_code == 200
        clock.advance(55)  # past 1800 s since sign-in (the issuer's own would be 7200 s)
        assert tc.get("/me").status_code == 401


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"idle_ttl": 7200}, "idle_ttl must be"),
        ({"idle_ttl": 30}, "idle_ttl must be"),
        ({"absolute_ttl": 10_000}, "absolute_ttl must be"),
        ({"idle_ttl": 1200, "absolute_ttl": 900}, "idle_ttl must be"),
    ],
)
def test_issuer_sign_in_limits_beyond_the_issuers_are_refused(
    clock: Clock, options: dict[str, Any], message: str
) -> None:
    issuer = create_issuer(
        backend=MemoryStore(),
        signing_key="issuer-app-signing-key-0123456789abcdef-01",
        access_ttl=60,
        idle_ttl=3600,
        absolute_ttl=7200,
        clock=clock,
    )
    app = FastAPI()
    app.add_middleware(
        AuthKitMiddleware,
        store=create_store(secret_key=SECRET_KEY, token_issuer=issuer, clock=clock),
    )

    @app.post("/login")
    async def login(request: Request, user: Any = None) -> None:
        await issuer.sign_in(request, "alice", **options)

    @app.get("/me")
    async def me(user: CurrentUser) -> Any:
        return user

    with (
        TestClient(app, base_url="https://testserver") as tc,
        pytest.raises(ValueError, match=message),
    ):
        tc.post("/login")
