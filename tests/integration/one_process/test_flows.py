"""End-to-end flows through the real ASGI app: sign-in, refresh outcomes, single flight,
CSRF, state tampering, and who wins when the route and the refresh both write cookies."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import httpx2
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, StreamingResponse

from fastapi_authkit import RefreshParam, RefreshResult, TokenError, sign_in, sign_out
from fastapi_authkit.dependencies import AuthStateDep

from tests.support.apps import Recorder, build_app, build_store, client, login, set_cookies
from tests.support.clock import Clock
from tests.support.tokens import make_token

AUTH_COOKIES = ("_auth", "_auth_type", "_auth_state", "_auth_refresh", "_auth_csrf")


@pytest.fixture
def recorder(clock: Clock) -> Recorder:
    return Recorder(clock)


@pytest.fixture
def app(clock: Clock, recorder: Recorder) -> FastAPI:
    return build_app(build_store(clock, recorder))


# --- sign in and steady state ------------------------------------------------------------


def test_sign_in_sets_every_cookie_with_configured_flags(clock: Clock, app: FastAPI) -> None:
    tc = client(app)
    response = tc.post(
        "/login", json={"token": make_token(clock), "refresh": "r0", "user_state": {"n": 1}}
    )
    cookies = set_cookies(response)
    assert set(cookies) == set(AUTH_COOKIES)
    for name, header in cookies.items():
        assert "; Secure" in header
        assert "; SameSite=Lax" in header
        assert "; Path=/" in header
        assert ("; HttpOnly" in header) is (name != "_auth_csrf")
    assert "Max-Age=300;" in cookies["_auth"]  # follows the token's own exp
    assert "Max-Age=300;" in cookies["_auth_type"]
    assert "Max-Age=1209600;" in cookies["_auth_refresh"]  # refresh_max_age default
    assert response.headers["cache-control"] == "no-store"


def test_signed_in_request_sees_user_state_and_no_cookie_is_rewritten(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    tc = client(app)
    login(tc, clock, user_state={"name": "Alice"})
    response = tc.get("/me")
    assert response.json() == {"user": {"name": "Alice"}, "sub": "alice"}
    assert response.headers.get_list("set-cookie") == []
    assert "cache-control" not in response.headers
    assert recorder.calls == []


class Revoking(Recorder):
    """A refresh callback with the revocation hook sign-out calls."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.revoked: list[str] = []

    async def revoke(self, refresh_token: str) -> None:
        self.revoked.append(refresh_token)


def test_a_remembered_session_hands_routes_the_tokens_its_request_carries(clock: Clock) -> None:
    """The reader's record of a signed-in session keeps neither token: a route asking for
    them gets this request's own cookies, whether the record served the very same Cookie
    header or the session's cookies beside others, and sign-out revokes the right one."""
    recorder = Revoking(clock)
    app = build_app(build_store(clock, recorder))

    @app.get("/tokens")
    async def tokens(state: AuthStateDep) -> dict[str, Any]:
        return {"token": state.token, "refresh": state.refresh_token, "header": state.header}

    @app.get("/sign-out")
    async def get_sign_out(request: Request) -> dict[str, bool]:
        sign_out(request)
        return {"ok": True}

    tc = client(app)
    login(tc, clock, refresh="refresh-0")
    access = tc.cookies["_auth"]
    expected = {"token": access, "refresh": "refresh-0", "header": f"Bearer {access}"}
    for junk in ("", "", "1", "2"):  # the same header again, then beside a changing cookie
        if junk:
            tc.cookies.set("junk", junk, domain="testserver.local")
        assert tc.get("/tokens").json() == expected
    assert tc.get("/sign-out").status_code == 200
    assert recorder.revoked == ["refresh-0"]
    assert recorder.calls == []  # every read was the record's: no refresh was due


def test_without_user_state_current_user_is_the_claims(clock: Clock, app: FastAPI) -> None:
    tc = client(app)
    login(tc, clock)
    assert tc.get("/me").json()["user"]["sub"] == "alice"


def test_anonymous_gets_401_with_www_authenticate(app: FastAPI) -> None:
    response = client(app).get("/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert client(app).get("/public").json() == {"user": None}


def test_sign_in_with_a_token_that_does_not_verify_raises(clock: Clock, app: FastAPI) -> None:
    tc = client(app)
    with pytest.raises(TokenError, match="sign_in: the access token does not verify"):
        tc.post("/login", json={"token": make_token(clock, key="another-key" * 4)})
    with pytest.raises(TokenError):
        tc.post("/login", json={"token": make_token(clock, ttl=-10)})


# --- refresh outcomes ----------------------------------------------------------------------


def test_near_expiry_refreshes_once_before_the_route(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    tc = client(app)
    login(tc, clock, ttl=100, user_state={"name": "Alice"})
    clock.advance(50)  # 50 s left, inside the 60 s interval
    response = tc.get("/me")
    assert response.status_code == 200
    assert response.json()["sub"] == "alice-1"  # the route already sees the new identity
    assert len(recorder.calls) == 1
    call = recorder.calls[0]
    assert call.refresh_token == "refresh-0"
    assert call.auth_user_state == {"name": "Alice"}
    cookies = set_cookies(response)
    assert set(cookies) == set(AUTH_COOKIES)
    assert cookies["_auth_refresh"].startswith("_auth_refresh=refresh-1;")
    assert "Max-Age=3600;" in cookies["_auth_refresh"]
    assert response.headers["cache-control"] == "no-store"
    # The new cookies carry on: no second refresh while the new token is fresh.
    assert tc.get("/me").json()["sub"] == "alice-1"
    assert len(recorder.calls) == 1


def test_expired_and_dropped_access_cookie_refreshes_from_refresh_cookie(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    tc = client(app)
    login(tc, clock, ttl=100)
    tc.cookies.delete("_auth")  # the browser dropped it at Max-Age
    clock.advance(200)
    response = tc.get("/me")
    assert response.status_code == 200
    assert recorder.calls[0].auth_token is None


def test_expired_access_token_is_refreshed(clock: Clock, app: FastAPI, recorder: Recorder) -> None:
    tc = client(app)
    login(tc, clock, ttl=100)
    old = tc.cookies["_auth"]
    clock.advance(500)
    response = tc.get("/me")
    assert response.status_code == 200
    assert recorder.calls[0].auth_token == old


def test_definitive_failure_clears_every_cookie(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    async def ended(param: RefreshParam) -> RefreshResult:
        return RefreshResult(is_success=False)

    recorder.behaviour = ended
    tc = client(app)
    login(tc, clock, ttl=100)
    clock.advance(90)
    response = tc.get("/me")
    assert response.status_code == 401
    cookies = set_cookies(response)
    assert set(cookies) == set(AUTH_COOKIES)
    for header in cookies.values():
        assert "=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT" in header
    assert list(tc.cookies.keys()) == []


def test_transient_failure_keeps_the_session(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    async def down(param: RefreshParam) -> RefreshResult:
        raise ConnectionError("auth server down")

    recorder.behaviour = down
    tc = client(app)
    login(tc, clock, ttl=100)
    clock.advance(90)  # still valid for 10 s: the old token keeps working
    response = tc.get("/me")
    assert response.status_code == 200
    assert response.json()["sub"] == "alice"
    assert response.headers.get_list("set-cookie") == []
    clock.advance(20)  # now expired: protected routes 503, public ones answer
    response = tc.get("/me")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.headers.get_list("set-cookie") == []
    assert tc.get("/public").json() == {"user": None}
    # The auth server comes back: the very same cookies still work.
    recorder.behaviour = None
    assert tc.get("/me").status_code == 200


def test_callback_timeout_is_transient(clock: Clock, recorder: Recorder) -> None:
    gate = anyio.Event()

    async def hang(param: RefreshParam) -> RefreshResult:
        await gate.wait()
        raise AssertionError("unreachable")  # pragma: no cover

    recorder.behaviour = hang
    store = build_store(clock, None, refresh=_refresh_config(recorder, timeout=0.05))
    tc = client(build_app(store))
    login(tc, clock, ttl=10)
    clock.advance(20)
    response = tc.get("/me")
    assert response.status_code == 503
    assert response.headers.get_list("set-cookie") == []


def _refresh_config(callback: Any, **options: Any) -> Any:
    from fastapi_authkit import create_refresh

    return create_refresh(interval=60, refresh_api_callback=callback, **options)


@pytest.mark.parametrize(
    ("result", "log"),
    [
        (RefreshResult(is_success=True, new_auth_token="not-a-jwt"), "does not verify"),
        (RefreshResult(is_success=True, new_auth_token=""), "new_auth_token is missing"),
        ("yes", "must return RefreshResult"),
    ],
)
def test_unusable_callback_result_is_not_stored(
    clock: Clock,
    app: FastAPI,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
    result: Any,
    log: str,
) -> None:
    async def bad(param: RefreshParam) -> Any:
        return result

    recorder.behaviour = bad
    tc = client(app)
    login(tc, clock, ttl=100)
    clock.advance(200)
    with caplog.at_level(logging.ERROR, logger="fastapi_authkit"):
        response = tc.get("/me")
    assert response.status_code == 503
    assert response.headers.get_list("set-cookie") == []
    assert log in caplog.text


def test_callback_token_too_large_for_a_cookie_is_not_stored(
    clock: Clock, app: FastAPI, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    async def huge(param: RefreshParam) -> RefreshResult:
        return RefreshResult(is_success=True, new_auth_token=make_token(clock, padding="x" * 5000))

    recorder.behaviour = huge
    tc = client(app)
    login(tc, clock, ttl=100)
    clock.advance(200)
    with caplog.at_level(logging.ERROR, logger="fastapi_authkit"):
        response = tc.get("/me")
    assert response.status_code == 503
    assert response.headers.get_list("set-cookie") == []
    assert "4096-byte limit" in caplog.text


def test_sync_callback_runs_and_refreshes(clock: Clock) -> None:
    calls: list[str] = []

    def sync_refresh(param: RefreshParam) -> RefreshResult:
        calls.append(param.refresh_token)
        return RefreshResult(is_success=True, new_auth_token=make_token(clock, sub="sync"))

    tc = client(build_app(build_store(clock, None, refresh=_refresh_config(sync_refresh))))
    login(tc, clock, ttl=10)
    clock.advance(20)
    response = tc.get("/me")
    assert response.json()["sub"] == "sync"
    assert calls == ["refresh-0"]
    # No new refresh token: the refresh cookie is kept, not rewritten.
    assert "_auth_refresh" not in set_cookies(response)
    assert tc.cookies["_auth_refresh"] == "refresh-0"


def test_new_user_state_from_callback_replaces_the_old(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    async def promote(param: RefreshParam) -> RefreshResult:
        return RefreshResult(
            is_success=True,
            new_auth_token=make_token(clock),
            new_auth_user_state={"role": "admin"},
        )

    recorder.behaviour = promote
    tc = client(app)
    login(tc, clock, ttl=10, user_state={"role": "user"})
    clock.advance(20)
    assert tc.get("/me").json()["user"] == {"role": "admin"}
    assert tc.get("/me").json()["user"] == {"role": "admin"}  # persisted in the cookie


def test_refresh_cookies_also_on_error_responses(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    tc = client(app)
    login(tc, clock, ttl=10)
    clock.advance(20)
    response = tc.get("/missing")
    assert response.status_code == 404
    assert "_auth" in set_cookies(response)
    clock.advance(400)
    response = tc.get("/broken")
    assert response.status_code == 500
    assert "_auth" in set_cookies(response)
    assert len(recorder.calls) == 2


def test_forged_access_token_is_not_refreshed(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    tc = client(app)
    tc.cookies.set("_auth", make_token(clock, key="forged-key-" * 4))
    tc.cookies.set("_auth_refresh", "refresh-0")
    assert tc.get("/me").status_code == 401
    assert recorder.calls == []


# --- single flight ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_fifty_concurrent_requests_share_one_refresh(
    clock: Clock, recorder: Recorder
) -> None:
    app = build_app(build_store(clock, recorder))
    recorder.delay = 0.05  # hold the call open so the requests really overlap
    tc_cookies = _signed_in_cookies(clock, app, ttl=10)
    clock.advance(20)
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="https://testserver") as http:
        responses: list[httpx2.Response] = []

        async def one() -> None:
            responses.append(await http.get("/me", headers={"cookie": tc_cookies}))

        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(one)
    assert len(recorder.calls) == 1
    assert {r.status_code for r in responses} == {200}
    set_cookie_lists = {tuple(r.headers.get_list("set-cookie")) for r in responses}
    assert len(set_cookie_lists) == 1  # byte-identical Set-Cookie on every response
    (only,) = set_cookie_lists
    assert not any("Max-Age=0" in value for value in only)
    assert {r.json()["sub"] for r in responses} == {"alice-1"}


def _signed_in_cookies(clock: Clock, app: FastAPI, *, ttl: float) -> str:
    tc = client(app)
    login(tc, clock, ttl=ttl)
    return "; ".join(f"{k}={v}" for k, v in tc.cookies.items())


def test_old_refresh_token_within_grace_gets_the_same_result(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    cookie = _signed_in_cookies(clock, app, ttl=10)
    clock.advance(20)
    tc = client(app)
    first = tc.get("/me", headers={"cookie": cookie})
    clock.advance(5)  # a request that was already in flight with the old cookies
    second = tc.get("/me", headers={"cookie": cookie})
    assert len(recorder.calls) == 1
    assert first.headers.get_list("set-cookie") == second.headers.get_list("set-cookie")
    clock.advance(10)  # past the 10 s grace period: the callback decides again
    tc.get("/me", headers={"cookie": cookie})
    assert len(recorder.calls) == 2


# --- CSRF -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"json": {"a": 1}},
        {"data": {"a": "1"}},
        {"content": b"a=1", "headers": {"content-type": "text/plain"}},
    ],
)
def test_unsafe_request_without_csrf_header_is_refused_before_refresh(
    clock: Clock, app: FastAPI, recorder: Recorder, body: dict[str, Any]
) -> None:
    tc = client(app)
    login(tc, clock, ttl=10)
    clock.advance(20)  # a refresh would be due
    response = tc.post("/write", **body)
    assert response.status_code == 403
    assert response.json()["detail"].startswith("CSRF token missing or invalid: ")
    assert recorder.calls == []
    assert response.headers.get_list("set-cookie") == []


def test_csrf_header_must_match_this_session(clock: Clock, app: FastAPI) -> None:
    tc = client(app)
    login(tc, clock)
    other = client(app)
    login(other, clock)
    for method in ("post", "put", "patch", "delete"):
        assert getattr(tc, method)("/write", headers={"x-csrf-token": "wrong"}).status_code == 403
    foreign = other.cookies["_auth_csrf"]
    assert tc.post("/write", headers={"x-csrf-token": foreign}).status_code == 403
    mine = tc.cookies["_auth_csrf"]
    assert tc.post("/write", headers={"x-csrf-token": mine}).json() == {"written": True}
    # Two copies of the header are ambiguous.
    doubled = [("x-csrf-token", mine), ("x-csrf-token", mine)]
    assert tc.post("/write", headers=doubled).status_code == 403


def test_pre_rotation_csrf_token_still_accepted_after_refresh(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    tc = client(app)
    login(tc, clock, ttl=10)
    before = tc.cookies["_auth_csrf"]
    clock.advance(20)
    assert tc.get("/me").status_code == 200
    assert len(recorder.calls) == 1
    assert tc.post("/write", headers={"x-csrf-token": before}).status_code == 200


def test_csrf_not_required_without_auth_cookies_or_on_exempt_paths(clock: Clock) -> None:
    store = build_store(clock, None, csrf_exempt_paths={"/login"})
    tc = client(build_app(store))
    assert tc.post("/write").status_code == 401  # anonymous: no CSRF question, just 401
    login(tc, clock)
    login(tc, clock)  # /login is exempt even with auth cookies present
    assert tc.post("/write").status_code == 403


# --- state cookie ---------------------------------------------------------------------------


def test_tampered_state_cookie_is_ignored(clock: Clock, app: FastAPI) -> None:
    tc = client(app)
    login(tc, clock, user_state={"role": "user"})
    value = tc.cookies["_auth_state"]
    payload, rest = value.split(".", 1)
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + rest
    tc.cookies.set("_auth_state", forged)
    response = tc.get("/me")
    # No identity without the session's state cookie: never the claims in its place.
    assert response.status_code == 401
    assert set_cookies(response) == {}  # the cookies are left as they are
    assert tc.get("/public").json() == {"user": None}
    # Without a verifiable session there is no CSRF binding either.
    csrf = tc.cookies["_auth_csrf"]
    assert tc.post("/write", headers={"x-csrf-token": csrf}).status_code == 403


# --- the route's own cookie writes -------------------------------------------------------------


def test_route_sign_out_wins_over_refresh_in_the_same_request(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    tc = client(app)
    login(tc, clock, ttl=10)
    clock.advance(20)
    csrf = tc.cookies["_auth_csrf"]
    response = tc.post("/logout", headers={"x-csrf-token": csrf})
    assert len(recorder.calls) == 1  # the refresh ran before the route...
    cookies = set_cookies(response)
    assert set(cookies) == set(AUTH_COOKIES)
    assert all("Max-Age=0" in value for value in cookies.values())  # ...but sign_out wins
    assert list(tc.cookies.keys()) == []


def _response_kinds_app(clock: Clock) -> FastAPI:
    app = build_app(build_store(clock, None))

    @app.get("/redirect-login")
    async def redirect_login(request: Request) -> RedirectResponse:
        sign_in(request, auth={"token": make_token(clock)}, refresh="r")
        return RedirectResponse("/me", status_code=303)

    @app.get("/stream-login")
    async def stream_login(request: Request) -> StreamingResponse:
        sign_in(request, auth={"token": make_token(clock)})

        async def body() -> Any:
            for chunk in (b"one,", b"two,", b"three"):
                yield chunk

        return StreamingResponse(body(), media_type="text/plain")

    @app.get("/stream-logout")
    async def stream_logout(request: Request) -> StreamingResponse:
        sign_out(request)

        async def body() -> Any:
            yield b"bye"

        return StreamingResponse(body())

    return app


def test_sign_in_and_out_on_redirect_and_streaming_responses(clock: Clock) -> None:
    tc = client(_response_kinds_app(clock))
    response = tc.get("/redirect-login", follow_redirects=False)
    assert response.status_code == 303
    assert {"_auth", "_auth_refresh"} <= set(set_cookies(response))
    assert tc.get("/me").status_code == 200

    response = tc.get("/stream-login")
    assert response.text == "one,two,three"
    assert "_auth" in set_cookies(response)
    # A session without a refresh token: the replaced session's refresh cookie goes, so
    # that the new state cookie (bound to the access token) pairs with the new session.
    assert "Max-Age=0" in set_cookies(response)["_auth_refresh"]
    assert tc.get("/me").status_code == 200

    response = tc.get("/stream-logout")
    assert response.text == "bye"
    assert all("Max-Age=0" in v for v in set_cookies(response).values())
    assert tc.get("/me").status_code == 401


def test_old_state_cookie_is_not_accepted_with_a_newer_session(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    """The state cookie is bound to its session's refresh token: an old one (say, the user
    state from before a role change) cannot be paired with the rotated tokens."""
    tc = client(app)
    login(tc, clock, ttl=10, user_state={"role": "admin"})
    old_state = tc.cookies["_auth_state"]
    clock.advance(20)
    assert tc.get("/me").json()["user"] == {"role": "admin"}  # refreshed: state re-bound
    tc.cookies.delete("_auth_state")
    tc.cookies.set("_auth_state", old_state)
    response = tc.get("/me")
    assert response.status_code == 401  # neither the old state nor the claims in its place
    assert set_cookies(response) == {}
    csrf = tc.cookies["_auth_csrf"]
    assert tc.post("/write", headers={"x-csrf-token": csrf}).status_code == 403
