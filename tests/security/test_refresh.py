"""SECURITY.md, "Refresh": the refresh callback's every outcome through the real app.

A definitive "no" (``is_success=False``) ends the session; anything short of a usable "yes"
(raised, timed out, unusable result) must never lose it. Every response is checked for
"no 500" by SafeClient / the raw ASGI driver.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from typing import Any

import anyio
import pytest
from fastapi import FastAPI

from fastapi_authkit import AuthState, RefreshParam, RefreshResult, create_refresh
from fastapi_authkit.dependencies import AuthStateDep

from .helpers import (
    AUTH_COOKIES,
    LONG_KEY,
    OTHER_KEY,
    Reply,
    asgi_http,
    claims_at,
    cookie_header,
    forge,
    jar_without,
    safe_client,
    security_app,
    set_cookies,
    unsigned,
)
from tests.support.apps import Recorder, build_store, login
from tests.support.clock import Clock
from tests.support.http_client import CookieKeeper
from tests.support.tokens import make_token


def app_with(clock: Clock, callback: Any, **options: Any) -> FastAPI:
    refresh = create_refresh(interval=60, refresh_api_callback=callback, **options)
    return security_app(build_store(clock, None, refresh=refresh))


# --- success --------------------------------------------------------------------------------------


def test_access_token_in_the_refresh_window_refreshes_once_before_the_route(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    tc = safe_client(app)
    login(tc, clock, ttl=100, user_state={"name": "Alice"})
    old_token = tc.cookies["_auth"]
    clock.advance(50)  # 50 s left, inside the 60 s interval
    response = tc.get("/me")
    assert response.status_code == 200
    assert response.json()["sub"] == "alice-1"  # the route already sees the new identity
    assert len(recorder.calls) == 1
    assert recorder.calls[0].auth_token == old_token
    assert recorder.calls[0].refresh_token == "refresh-0"
    cookies = set_cookies(response)
    assert set(cookies) == set(AUTH_COOKIES)
    assert not any("Max-Age=0" in value for value in cookies.values())
    assert cookies["_auth"].startswith(f"_auth={tc.cookies['_auth']};")
    assert cookies["_auth_refresh"].startswith("_auth_refresh=refresh-1;")
    assert response.headers["cache-control"] == "no-store"
    # The new cookies carry on without another call.
    assert tc.get("/me").json()["sub"] == "alice-1"
    assert len(recorder.calls) == 1


@pytest.mark.parametrize("access", ["expired", "dropped"])
def test_expired_or_dropped_access_token_is_refreshed(
    clock: Clock, app: FastAPI, recorder: Recorder, access: str
) -> None:
    tc = safe_client(app)
    login(tc, clock, ttl=100)
    if access == "dropped":
        tc.cookies.delete("_auth")  # the browser dropped it at Max-Age
    clock.advance(500)
    response = tc.get("/me")
    assert response.status_code == 200
    assert response.json()["sub"] == "alice-1"
    assert len(recorder.calls) == 1


# --- is_success=False -----------------------------------------------------------------------------


@pytest.mark.parametrize("access", ["near-expiry", "expired", "dropped"])
def test_is_success_false_clears_every_auth_cookie(
    clock: Clock, app: FastAPI, recorder: Recorder, access: str
) -> None:
    async def ended(param: RefreshParam) -> RefreshResult:
        return RefreshResult(is_success=False)

    recorder.behaviour = ended
    tc = safe_client(app)
    login(tc, clock, ttl=100, user_state={"name": "Alice"})
    if access == "dropped":
        tc.cookies.delete("_auth")
    clock.advance({"near-expiry": 90, "expired": 500, "dropped": 500}[access])
    response = tc.get("/me")
    assert response.status_code == 401
    cookies = set_cookies(response)
    assert set(cookies) == set(AUTH_COOKIES)
    for header in cookies.values():
        assert "=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT" in header
    assert list(tc.cookies.keys()) == []
    assert tc.get("/whoami").json()["auth"] is False
    assert tc.get("/public").json() == {"user": None}
    assert len(recorder.calls) == 1


def test_is_success_false_on_a_public_route_leaves_it_anonymous(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    async def ended(param: RefreshParam) -> RefreshResult:
        return RefreshResult(is_success=False)

    recorder.behaviour = ended
    tc = safe_client(app)
    login(tc, clock, ttl=100)
    clock.advance(90)  # the old token is still valid for 10 s, but the session is over
    response = tc.get("/whoami")
    assert response.json()["auth"] is False
    assert all("Max-Age=0" in v for v in set_cookies(response).values())


# --- transient failures: nothing cleared ----------------------------------------------------------


class _RaiseAsync:
    async def __call__(self, param: RefreshParam) -> RefreshResult:
        raise ConnectionError("auth server down")


class _HangAsync:
    async def __call__(self, param: RefreshParam) -> RefreshResult:
        await anyio.sleep(30)
        raise AssertionError("unreachable")  # pragma: no cover


def _raise_sync(param: RefreshParam) -> RefreshResult:
    raise TimeoutError("auth server timed out at the TCP level")


def _hang_sync(param: RefreshParam) -> RefreshResult:
    time.sleep(0.3)  # abandoned by the middleware after its 0.05 s timeout
    return RefreshResult(is_success=False)  # arrives too late to matter


def _garbage(param: RefreshParam) -> Any:
    return {"is_success": True}


def _success_without_token(param: RefreshParam) -> RefreshResult:
    return RefreshResult(is_success=True)  # raises ValueError: a failure of the callback


TRANSIENT = {
    "raises-async": _RaiseAsync(),
    "hangs-async": _HangAsync(),
    "raises-sync": _raise_sync,
    "hangs-sync": _hang_sync,
    "returns-not-a-refresh-result": _garbage,
    "success-without-token": _success_without_token,
}


@pytest.mark.parametrize("failure", list(TRANSIENT))
def test_transient_failure_never_clears_cookies(clock: Clock, failure: str) -> None:
    calls: list[str] = []
    behaviour = TRANSIENT[failure]

    def counted(param: RefreshParam) -> Any:
        calls.append(param.refresh_token)
        return behaviour(param)

    callback: Any = counted
    if failure.endswith("-async"):

        async def counted_async(param: RefreshParam) -> RefreshResult:
            calls.append(param.refresh_token)
            result: RefreshResult = await behaviour(param)
            return result

        callback = counted_async
    # Only the hanging callbacks need the short timeout; the others get a generous one, so a
    # slow thread start on a loaded machine cannot turn "raised" into "timed out" and leave a
    # late call behind.
    timeout = 0.05 if failure.startswith("hangs") else 5.0
    tc = safe_client(app_with(clock, callback, timeout=timeout, grace_period=0))
    login(tc, clock, ttl=100)
    cookies = dict(tc.cookies.items())

    # Still valid: the old token keeps working, nothing is written.
    clock.advance(90)
    response = tc.get("/me")
    assert response.status_code == 200
    assert response.json()["sub"] == "alice"
    assert response.headers.get_list("set-cookie") == []
    # Expired: protected routes 503 + Retry-After, public routes still answer.
    clock.advance(20)
    response = tc.get("/me")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.headers.get_list("set-cookie") == []
    public = tc.get("/public")
    assert public.status_code == 200
    assert public.json() == {"user": None}
    assert public.headers.get_list("set-cookie") == []
    assert tc.get("/whoami").json()["unavailable"] is True
    assert dict(tc.cookies.items()) == cookies
    assert len(calls) == 4  # each request tried again: nothing was remembered


def test_after_a_transient_failure_the_same_cookies_refresh(
    clock: Clock, recorder: Recorder
) -> None:
    async def down(param: RefreshParam) -> RefreshResult:
        raise ConnectionError("auth server down")

    recorder.behaviour = down
    tc = safe_client(security_app(build_store(clock, recorder)))
    login(tc, clock, ttl=10)
    clock.advance(20)
    assert tc.get("/me").status_code == 503
    recorder.behaviour = None  # the auth server is back
    response = tc.get("/me")
    assert response.status_code == 200
    assert response.json()["sub"] == "alice-1"
    assert recorder.calls[-1].refresh_token == "refresh-0"


def test_transient_failure_with_a_websocket_route_answers_1013(
    clock: Clock, recorder: Recorder
) -> None:
    from starlette.websockets import WebSocketDisconnect

    async def down(param: RefreshParam) -> RefreshResult:
        raise ConnectionError("auth server down")

    recorder.behaviour = down
    tc = safe_client(security_app(build_store(clock, recorder)))
    login(tc, clock, ttl=10)
    clock.advance(20)
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        tc.websocket_connect("wss://testserver/ws", headers={"origin": "https://testserver"}),
    ):
        pass  # pragma: no cover
    assert closed.value.code == 1013


# --- unusable results: rejected, nothing stored, a clear log line ---------------------------------


def _unusable_tokens(clock: Clock) -> dict[str, str]:
    now = clock()
    return {
        "not-a-jwt": "not-a-jwt",
        "other-key": make_token(clock, key=OTHER_KEY),
        "alg-none": unsigned({"alg": "none"}, claims_at(now)),
        "hs512": forge({"alg": "HS512"}, claims_at(now), key=LONG_KEY, digest=hashlib.sha512),
        "already-expired": make_token(clock, ttl=-10),
        "future-nbf": make_token(clock, nbf=int(now) + 3600),
        "exp-years-ahead": make_token(clock, ttl=10 * 365 * 86400),
        "no-exp": forge({"alg": "HS256"}, {"sub": "alice"}),
    }


def _assert_refresh_result_rejected(
    app: FastAPI,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    *,
    logged: str = "refresh result rejected, nothing stored",
    level: int = logging.ERROR,
) -> Any:
    """Sign in, let a refresh fall due, and check the callback's answer was refused: 503,
    no Set-Cookie, the browser's cookies unchanged, ``logged`` in the log at ``level`` or
    above. Returns the client."""
    tc = safe_client(app)
    login(tc, clock, ttl=100)
    cookies = dict(tc.cookies.items())
    clock.advance(200)
    with caplog.at_level(level, logger="fastapi_authkit"):
        response = tc.get("/me")
    assert response.status_code == 503
    assert response.headers.get_list("set-cookie") == []
    assert dict(tc.cookies.items()) == cookies  # nothing stored, no rotated token either
    assert logged in caplog.text
    return tc


UNUSABLE_KINDS = [
    "not-a-jwt",
    "other-key",
    "alg-none",
    "hs512",
    "already-expired",
    "future-nbf",
    "exp-years-ahead",
    "no-exp",
]


@pytest.mark.parametrize("kind", UNUSABLE_KINDS)
def test_callback_token_that_does_not_verify_is_not_stored(
    clock: Clock,
    app: FastAPI,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    async def bad(param: RefreshParam) -> RefreshResult:
        return RefreshResult(is_success=True, new_auth_token=_unusable_tokens(clock)[kind])

    recorder.behaviour = bad
    tc = _assert_refresh_result_rejected(app, clock, caplog)
    assert "does not verify" in caplog.text
    # Not remembered either: the next request asks again, with the same refresh token.
    tc.get("/me")
    assert [call.refresh_token for call in recorder.calls] == ["refresh-0", "refresh-0"]


@pytest.mark.parametrize("kind", UNUSABLE_KINDS)
def test_callback_token_that_does_not_verify_still_keeps_the_rotated_refresh_token(
    clock: Clock,
    app: FastAPI,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
    kind: str,
) -> None:
    """Issue 16: the auth server consumed the old refresh token when it rotated it, so the
    successor must reach the browser even though the access token is refused, and the old
    one must never be presented again (a rotating server would take it for theft)."""

    async def bad(param: RefreshParam) -> RefreshResult:
        return RefreshResult(
            is_success=True,
            new_auth_token=_unusable_tokens(clock)[kind],
            new_refresh_token="rotated-1",
            new_refresh_token_expires_in=600,
        )

    recorder.behaviour = bad
    tc = safe_client(app)
    login(tc, clock, ttl=100)
    old_access = tc.cookies["_auth"]
    clock.advance(200)
    with caplog.at_level(logging.ERROR, logger="fastapi_authkit"):
        response = tc.get("/me")
    assert response.status_code == 503  # no usable access token: try again later
    written = CookieKeeper().update(response)
    # The successor and the state/CSRF cookies bound to it; the access cookie untouched.
    assert set(written) == {"_auth_state", "_auth_refresh", "_auth_csrf"}
    assert written["_auth_refresh"]["value"] == "rotated-1"
    assert written["_auth_refresh"]["max-age"] == "600"
    assert all(attrs["max-age"] != "0" for attrs in written.values())
    assert tc.cookies["_auth"] == old_access
    assert "the rotated refresh token is kept" in caplog.text

    # Once the cause is gone, the session continues with the successor.
    recorder.behaviour = None
    response = tc.get("/me")
    assert response.status_code == 200
    assert [call.refresh_token for call in recorder.calls] == ["refresh-0", "rotated-1"]
    assert CookieKeeper().update(response)["_auth_refresh"]["value"] == "refresh-1"


# itsdangerous compresses the state payload, so a large state must be incompressible.
INCOMPRESSIBLE = secrets.token_urlsafe(4000)


def _too_large(clock: Clock) -> dict[str, RefreshResult]:
    big_token = make_token(clock, padding="x" * 5000)
    return {
        "access-token": RefreshResult(is_success=True, new_auth_token=big_token),
        "refresh-token": RefreshResult(
            is_success=True, new_auth_token=make_token(clock), new_refresh_token="r" * 5000
        ),
        "user-state": RefreshResult(
            is_success=True,
            new_auth_token=make_token(clock),
            new_auth_user_state={"x": INCOMPRESSIBLE},
        ),
    }


@pytest.mark.parametrize("part", ["access-token", "refresh-token", "user-state"])
def test_callback_result_too_large_for_a_cookie_is_not_stored(
    clock: Clock,
    app: FastAPI,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
    part: str,
) -> None:
    async def huge(param: RefreshParam) -> RefreshResult:
        return _too_large(clock)[part]

    recorder.behaviour = huge
    _assert_refresh_result_rejected(app, clock, caplog)
    assert "4096-byte limit" in caplog.text


@pytest.mark.parametrize(
    "result",
    [
        {"new_refresh_token": "has;semicolon"},
        {"new_refresh_token": "has space"},
        {"new_refresh_token": "naïve"},
        {"new_auth_token_type": "Bearer\r\nSet-Cookie: evil=1"},
        {"new_auth_token_type": 'quo"ted'},
    ],
    ids=["semicolon", "space", "non-ascii", "header-injection", "quote"],
)
def test_callback_result_that_a_cookie_cannot_carry_is_not_stored(
    clock: Clock,
    app: FastAPI,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
    result: dict[str, str],
) -> None:
    async def odd(param: RefreshParam) -> RefreshResult:
        return RefreshResult(is_success=True, new_auth_token=make_token(clock), **result)  # type: ignore[arg-type]

    recorder.behaviour = odd
    _assert_refresh_result_rejected(app, clock, caplog)


# --- many concurrent requests ---------------------------------------------------------------------


def _signed_in_jar(clock: Clock, app: FastAPI, *, ttl: float) -> dict[str, str]:
    tc = safe_client(app)
    login(tc, clock, ttl=ttl)
    return dict(tc.cookies.items())


async def _concurrently(app: FastAPI, headers: list[tuple[bytes, bytes]], n: int) -> list[Reply]:
    replies: list[Reply] = []

    async def one() -> None:
        replies.append(await asgi_http(app, "GET", "/me", headers))

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
    return replies


@pytest.mark.anyio
async def test_fifty_concurrent_requests_share_one_call_and_identical_cookies(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    recorder.delay = 0.05  # hold the call open so the requests really overlap
    jar = _signed_in_jar(clock, app, ttl=10)
    clock.advance(20)
    replies = await _concurrently(app, [(b"cookie", cookie_header(jar).encode())], 50)
    assert len(recorder.calls) == 1
    assert {r.status for r in replies} == {200}
    assert {r.json()["sub"] for r in replies} == {"alice-1"}
    set_cookie_lists = {tuple(r.header_values(b"set-cookie")) for r in replies}
    assert len(set_cookie_lists) == 1  # byte-identical Set-Cookie on every response
    (only,) = set_cookie_lists
    assert {v.split(b"=", 1)[0].decode() for v in only} == set(AUTH_COOKIES)
    assert not any(b"Max-Age=0" in value for value in only)


@pytest.mark.anyio
async def test_fifty_concurrent_requests_during_an_outage_delete_nothing(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    async def down(param: RefreshParam) -> RefreshResult:
        await anyio.sleep(0.05)
        raise ConnectionError("auth server down")

    recorder.behaviour = down
    jar = _signed_in_jar(clock, app, ttl=10)
    clock.advance(20)
    replies = await _concurrently(app, [(b"cookie", cookie_header(jar).encode())], 50)
    assert len(recorder.calls) == 1
    assert {r.status for r in replies} == {503}
    assert all(r.header_values(b"set-cookie") == [] for r in replies)


@pytest.mark.parametrize("expires_in", [float("inf"), float("nan"), "14 days"])
def test_rotated_refresh_token_with_an_unreadable_lifetime_is_kept_with_the_default_one(
    clock: Clock, app: FastAPI, recorder: Recorder, expires_in: Any
) -> None:
    # The result cannot be used as given, but the refresh token was rotated: losing it would
    # lose the session, so it is kept with the lifetime the kit would pick without one.
    # (RefreshResult refuses such a lifetime when it is built,
    # tests/integration/one_process/test_misuse_messages.py; this one was changed
    # after construction, and the middleware still copes.)
    async def odd(param: RefreshParam) -> RefreshResult:
        result = RefreshResult(
            is_success=True, new_auth_token=make_token(clock), new_refresh_token="r1"
        )
        object.__setattr__(result, "new_refresh_token_expires_in", expires_in)
        return result

    recorder.behaviour = odd
    tc = safe_client(app)
    login(tc, clock, ttl=100)
    clock.advance(200)
    response = tc.get("/me")
    assert response.status_code == 503
    written = CookieKeeper().update(response)
    assert written["_auth_refresh"]["value"] == "r1"
    assert written["_auth_refresh"]["max-age"] == str(14 * 86400)  # refresh_max_age
    assert "_auth" not in written


WRONG_FIELDS = [
    pytest.param({"new_auth_token_expire_in": float("inf")}, id="expire-in-inf"),
    pytest.param({"new_auth_token_expire_in": "x"}, id="expire-in-text"),
    pytest.param({"new_refresh_token_expires_in": -1}, id="refresh-expires-in-negative"),
    pytest.param({"new_auth_token_type": None}, id="token-type-none"),
    pytest.param({"new_auth_token_type": 5}, id="token-type-int"),
    pytest.param({"new_refresh_token": 5}, id="refresh-token-int"),
    pytest.param({"new_refresh_token": b"r1"}, id="refresh-token-bytes"),
    pytest.param({"new_auth_token": b"bytes"}, id="token-bytes"),
]


@pytest.mark.parametrize("fields", WRONG_FIELDS)
def test_callback_result_with_fields_of_the_wrong_type_is_a_transient_failure(
    clock: Clock,
    app: FastAPI,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
    fields: dict[str, Any],
) -> None:
    """A callback that copies an auth server's JSON into RefreshResult as the README shows
    (new_refresh_token_expires_in=body.get("refresh_expires_in")) can hand over anything:
    RefreshResult refuses it when built, so the callback raises, which is a transient
    failure (503 once the token expired, nothing stored) logged with the field's name."""

    async def odd(param: RefreshParam) -> RefreshResult:
        result: dict[str, Any] = {"new_auth_token": make_token(clock), **fields}
        return RefreshResult(is_success=True, **result)

    recorder.behaviour = odd
    (field,) = fields
    _assert_refresh_result_rejected(
        app, clock, caplog, logged="refresh failed transiently", level=logging.WARNING
    )
    assert f"RefreshResult.{field} must be" in caplog.text


def test_callback_result_with_a_user_state_that_is_not_json_is_not_stored(
    clock: Clock, app: FastAPI, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    async def odd(param: RefreshParam) -> RefreshResult:
        return RefreshResult(
            is_success=True, new_auth_token=make_token(clock), new_auth_user_state={1, 2}
        )

    recorder.behaviour = odd
    _assert_refresh_result_rejected(app, clock, caplog)


def test_a_kept_successor_is_shared_with_requests_still_carrying_the_old_token(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    """Within the grace period a request that still carries the rotated-out refresh token
    (it was in flight) gets the same kept successor, and the callback never sees the old
    token again."""

    async def other_key(param: RefreshParam) -> RefreshResult:
        return RefreshResult(
            is_success=True,
            new_auth_token=make_token(clock, key=OTHER_KEY),  # a key we do not hold
            new_refresh_token=f"rotated-{len(recorder.calls)}",
        )

    tc = safe_client(app)
    login(tc, clock, ttl=100)
    stale = dict(tc.cookies.items())
    clock.advance(200)
    recorder.behaviour = other_key
    first = tc.get("/me")
    tc.cookies.clear()
    second = tc.get("/me", headers={"cookie": cookie_header(stale)})
    assert first.status_code == second.status_code == 503
    assert set_cookies(first) == set_cookies(second)  # byte-identical successor cookies
    assert [call.refresh_token for call in recorder.calls] == ["refresh-0"]


# --- a refresh result is shared; what each request is given is its own (issue 17, item 5) ----


def _app_with_mutating_routes(clock: Clock, recorder: Recorder) -> FastAPI:
    async def with_state(param: RefreshParam) -> RefreshResult:
        recorder.calls.append(param)
        if recorder.delay:
            await anyio.sleep(recorder.delay)
        return RefreshResult(
            is_success=True,
            new_auth_token=make_token(clock, ttl=300, sub="alice-1", org={"id": "o1"}),
            new_refresh_token="refresh-1",
            new_auth_user_state={"name": "Alice", "roles": ["user"]},
        )

    app = app_with(clock, with_state)
    edited = anyio.Event()

    @app.get("/escalate")
    async def escalate(state: AuthStateDep) -> dict[str, bool]:
        assert state.claims is not None
        state.claims["sub"] = "mallory"
        state.claims["org"]["id"] = "other-org"
        state.user_state["roles"].append("admin")
        edited.set()
        return {"edited": True}

    async def identity(state: AuthState) -> dict[str, Any]:
        assert state.claims is not None
        return {"sub": state.claims["sub"], "org": state.claims["org"], "user": state.user_state}

    @app.get("/look")
    async def look(state: AuthStateDep) -> dict[str, Any]:
        return await identity(state)

    @app.get("/look-after-the-edit")
    async def look_later(state: AuthStateDep) -> dict[str, Any]:
        await edited.wait()
        return await identity(state)

    return app


UNTOUCHED = {"sub": "alice-1", "org": {"id": "o1"}, "user": {"name": "Alice", "roles": ["user"]}}


def test_a_route_editing_a_refreshed_identity_leaves_the_grace_replay_untouched(
    clock: Clock, recorder: Recorder
) -> None:
    # The result of a refresh is remembered for the grace period and handed to requests
    # still carrying the old cookies; what one route does to its claims and user state must
    # not reach them (it did: they were the same objects).
    app = _app_with_mutating_routes(clock, recorder)
    tc = safe_client(app)
    login(tc, clock, ttl=100, user_state={"name": "Alice", "roles": ["user"]})
    stale = cookie_header(dict(tc.cookies.items()))
    clock.advance(50)
    tc.cookies.clear()
    assert tc.get("/escalate", headers={"cookie": stale}).json() == {"edited": True}
    replayed = tc.get("/look", headers={"cookie": stale})
    assert replayed.json() == UNTOUCHED
    assert len(recorder.calls) == 1  # the second request was given the remembered result


@pytest.mark.anyio
async def test_requests_sharing_one_refresh_call_get_their_own_identity(
    clock: Clock, recorder: Recorder
) -> None:
    # Requests that waited on one refresh call (single flight) share its result: one
    # route's edits must not show in another's.
    recorder.delay = 0.05  # both requests wait on the one call
    app = _app_with_mutating_routes(clock, recorder)
    tc = safe_client(app)
    login(tc, clock, ttl=100, user_state={"name": "Alice", "roles": ["user"]})
    headers = [(b"cookie", cookie_header(dict(tc.cookies.items())).encode())]
    clock.advance(50)
    replies: dict[str, Reply] = {}

    async def get(path: str) -> None:
        replies[path] = await asgi_http(app, "GET", path, headers)

    async with anyio.create_task_group() as tg:
        tg.start_soon(get, "/look-after-the-edit")
        tg.start_soon(get, "/escalate")
    assert len(recorder.calls) == 1
    assert replies["/escalate"].json() == {"edited": True}
    assert replies["/look-after-the-edit"].json() == UNTOUCHED


# --- the callback is the auth server's door: only a session's own cookies open it ----------------
# (issue 17, item 3)


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({}, id="refresh-cookie-alone"),
        pytest.param({"_auth": "expired"}, id="with-an-expired-access-token"),
        pytest.param({"_auth_state": "another-session"}, id="with-another-sessions-state"),
        pytest.param({"_auth_state": "forged"}, id="with-a-forged-state"),
    ],
)
def test_a_refresh_cookie_without_its_sessions_state_never_reaches_the_callback(
    clock: Clock, app: FastAPI, recorder: Recorder, extra: dict[str, str]
) -> None:
    # Anyone can send a refresh cookie; each used to cost the auth server a call (500
    # requests, 500 calls, on any method and path). Only a refresh cookie paired with the
    # signed state cookie issued with it is a session's.
    tc = safe_client(app)
    login(tc, clock, ttl=100)  # a real session, whose state cookie the attacker may hold
    other_state = tc.cookies["_auth_state"]
    tc.cookies.clear()
    values = {
        "expired": make_token(clock, ttl=-1000),
        "another-session": other_state,
        "forged": other_state[:-4] + "AAAA",
    }
    for i in range(60):
        jar = {"_auth_refresh": secrets.token_urlsafe(24)}
        jar.update({name: values[value] for name, value in extra.items()})
        headers = {"cookie": cookie_header(jar)}
        method, path = [("GET", "/me"), ("HEAD", "/public"), ("OPTIONS", "/whoami")][i % 3]
        assert tc.request(method, path, headers=headers).status_code in (200, 401, 405)
        assert tc.get("/no-such-page", headers=headers).status_code == 404
        # Refused POSTs were a way in too (the CSRF check needs the state as well).
        assert tc.post("/write", headers=headers).status_code == 403
    assert recorder.calls == []


def test_a_refresh_cookie_with_its_state_cookie_still_refreshes(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    # The control: the browser's access cookie gone (Max-Age), its refresh and state
    # cookies left: the session goes on, on any path.
    tc = safe_client(app)
    login(tc, clock, ttl=100)
    tc.cookies.delete("_auth")
    clock.advance(500)
    assert tc.get("/no-such-page").status_code == 404
    assert tc.get("/me").json()["sub"] == "alice-1"
    assert len(recorder.calls) == 1


def test_a_definitive_failure_is_remembered(clock: Clock, app: FastAPI, recorder: Recorder) -> None:
    # A session the auth server ended (is_success=False) stays ended: its cookies replayed
    # (by a script, or requests already in flight) do not ask the auth server again.
    async def ended(param: RefreshParam) -> RefreshResult:
        return RefreshResult(is_success=False)

    recorder.behaviour = ended
    tc = safe_client(app)
    login(tc, clock, ttl=100)
    dead = cookie_header(jar_without(dict(tc.cookies.items()), "_auth"))
    clock.advance(500)
    tc.cookies.clear()
    for _ in range(50):
        response = tc.get("/me", headers={"cookie": dead})
        assert response.status_code == 401
        assert all("Max-Age=0" in v for v in set_cookies(response).values())
        assert set(set_cookies(response)) == set(AUTH_COOKIES)
    assert len(recorder.calls) == 1
    # Briefly: a minute later the auth server is asked again.
    clock.advance(61)
    assert tc.get("/me", headers={"cookie": dead}).status_code == 401
    assert len(recorder.calls) == 2
