"""SECURITY.md, "CSRF and WebSocket": forged cookie-carrying requests are refused with 403
before any refresh; cross-site WebSocket handshakes are refused and never refresh.

In every case that must be refused, the access token is inside its refresh window (or the
access cookie is gone and only the refresh cookie is left), so a refresh *would* run: the
recorder proves it did not.

"Constant-time comparison" cannot be asserted with timings in a test; what is asserted is
that the offered token goes through ``hmac.compare_digest`` (itsdangerous), never ``==``.
"""

from __future__ import annotations

import hmac
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from itsdangerous.encoding import base64_decode
from starlette.websockets import WebSocketDisconnect

from fastapi_authkit.stores import MemoryStore

from .helpers import (
    UNSAFE_METHODS,
    SafeClient,
    asgi_websocket,
    call,
    cookie_header,
    flip_char,
    jar_without,
    safe_client,
    security_app,
)
from tests.support.apps import Recorder, build_store, issuer_app, login, set_cookies
from tests.support.clock import Clock
from tests.support.tokens import make_token

CSRF_BODY = {
    "detail": "CSRF token missing or invalid: an unsafe request (POST, PUT, PATCH, DELETE) "
    "authenticated by cookie must send the X-CSRF-Token header with the value of the "
    "_auth_csrf cookie"
}


def signed_in(app: FastAPI, clock: Clock, *, ttl: float = 100) -> tuple[SafeClient, dict[str, str]]:
    tc = safe_client(app)
    login(tc, clock, ttl=ttl)
    return tc, dict(tc.cookies.items())


def assert_refused_before_refresh(response: Any, recorder: Recorder) -> None:
    assert response.status_code == 403
    # The CSRF answer, or the cross-site one (Origin, Sec-Fetch-Site), each saying what passes.
    assert response.json() == CSRF_BODY or response.json()["detail"].startswith(
        "cross-site request refused ("
    )
    assert response.headers.get_list("set-cookie") == []
    assert response.headers["cache-control"] == "no-store"
    assert recorder.calls == [], "a refresh ran for a forged request"


@pytest.fixture(params=["access-and-refresh", "refresh-only"])
def due(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def forged_request(
    tc: SafeClient, jar: dict[str, str], due: str, method: str, **headers: str | bytes
) -> Any:
    cookies = jar if due == "access-and-refresh" else jar_without(jar, "_auth")
    tc.cookies.clear()
    return tc.request(method, "/write", headers={"cookie": cookie_header(cookies), **headers})


# --- the CSRF token -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", UNSAFE_METHODS)
def test_unsafe_method_without_csrf_header_is_403_before_refresh(
    clock: Clock, app: FastAPI, recorder: Recorder, method: str, due: str
) -> None:
    tc, jar = signed_in(app, clock)
    clock.advance(90)  # the refresh would be due
    assert_refused_before_refresh(forged_request(tc, jar, due, method), recorder)


@pytest.mark.parametrize("method", UNSAFE_METHODS)
@pytest.mark.parametrize(
    "token",
    ["", "wrong", "x" * 43, "cookie-value-but-altered", "latin1"],
    ids=["empty", "wrong", "right-length", "altered", "latin1"],
)
def test_unsafe_method_with_a_wrong_csrf_header_is_403_before_refresh(
    clock: Clock, app: FastAPI, recorder: Recorder, method: str, token: str, due: str
) -> None:
    tc, jar = signed_in(app, clock)
    if token == "cookie-value-but-altered":
        csrf = jar["_auth_csrf"]
        token = flip_char(csrf, len(csrf) // 2)
    clock.advance(90)
    headers: dict[str, str | bytes] = {"x-csrf-token": token}
    if token == "latin1":
        headers["x-csrf-token"] = jar["_auth_csrf"].encode() + b"\xe9"
    assert_refused_before_refresh(forged_request(tc, jar, due, method, **headers), recorder)


@pytest.mark.parametrize("method", UNSAFE_METHODS)
def test_csrf_token_of_another_session_is_403_before_refresh(
    clock: Clock, app: FastAPI, recorder: Recorder, method: str, due: str
) -> None:
    tc, jar = signed_in(app, clock)
    _, other_jar = signed_in(app, clock)  # the attacker's own session, same app
    clock.advance(90)
    headers = {"x-csrf-token": other_jar["_auth_csrf"]}
    assert_refused_before_refresh(forged_request(tc, jar, due, method, **headers), recorder)


def test_two_csrf_headers_are_ambiguous(clock: Clock, app: FastAPI, recorder: Recorder) -> None:
    tc, jar = signed_in(app, clock)
    clock.advance(90)
    doubled = [("x-csrf-token", jar["_auth_csrf"])] * 2
    assert_refused_before_refresh(tc.post("/write", headers=doubled), recorder)


def test_the_right_csrf_token_passes_and_then_the_refresh_runs(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    tc, jar = signed_in(app, clock)
    clock.advance(90)
    for method in UNSAFE_METHODS:
        response = tc.request(method, "/write", headers={"x-csrf-token": jar["_auth_csrf"]})
        assert response.status_code == 200, method
        assert response.json() == {"written": True}
    assert len(recorder.calls) == 1  # refreshed once, on the first request


def test_csrf_comparison_is_constant_time(
    clock: Clock, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Timing cannot be asserted reliably; what can be is that the offered token is compared
    # with hmac.compare_digest (through itsdangerous), never with ==.
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    tc, jar = signed_in(app, clock)
    compared.clear()
    guess = "Z" * len(jar["_auth_csrf"])
    assert tc.post("/write", headers={"x-csrf-token": guess}).status_code == 403
    offered = base64_decode(guess)  # itsdangerous compares the decoded signature bytes
    assert any(offered in (a, b) for a, b in compared)


def test_pre_rotation_csrf_token_is_accepted_right_after_a_refresh(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    tc, jar = signed_in(app, clock, ttl=10)
    before = jar["_auth_csrf"]
    clock.advance(20)
    assert tc.get("/me").status_code == 200
    assert len(recorder.calls) == 1
    assert tc.cookies["_auth"] != jar["_auth"]  # a new access token...
    for method in UNSAFE_METHODS:  # ...and the CSRF token from before still works
        assert tc.request(method, "/write", headers={"x-csrf-token": before}).status_code == 200


def test_pre_rotation_csrf_token_on_the_refreshing_request_itself(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    # The page's first POST after the token expired carries the old CSRF token and causes
    # the refresh: CSRF is checked first, against the session, so it passes.
    tc, jar = signed_in(app, clock, ttl=10)
    clock.advance(20)
    response = tc.post("/write", headers={"x-csrf-token": jar["_auth_csrf"]})
    assert response.status_code == 200
    assert len(recorder.calls) == 1


def test_anonymous_unsafe_request_needs_no_csrf_token(app: FastAPI, recorder: Recorder) -> None:
    tc = safe_client(app)
    assert tc.post("/write").status_code == 401  # 401, not 403: no cookie, nothing to forge
    assert tc.post("/whoami", headers={"origin": "https://evil.example"}).status_code == 200


# --- Sec-Fetch-Site and Origin --------------------------------------------------------------------


@pytest.mark.parametrize("method", UNSAFE_METHODS)
@pytest.mark.parametrize("value", ["cross-site", "Cross-Site", " cross-site "])
def test_sec_fetch_site_cross_site_is_403_even_with_the_right_token(
    clock: Clock, app: FastAPI, recorder: Recorder, method: str, value: str, due: str
) -> None:
    tc, jar = signed_in(app, clock)
    clock.advance(90)
    headers = {"x-csrf-token": jar["_auth_csrf"], "sec-fetch-site": value}
    assert_refused_before_refresh(forged_request(tc, jar, due, method, **headers), recorder)


@pytest.mark.parametrize("value", ["same-origin", "same-site", "none"])
def test_sec_fetch_site_other_values_pass(clock: Clock, app: FastAPI, value: str) -> None:
    tc, jar = signed_in(app, clock)
    headers = {"x-csrf-token": jar["_auth_csrf"], "sec-fetch-site": value}
    assert tc.post("/write", headers=headers).status_code == 200


FOREIGN_ORIGINS = [
    "https://evil.example",
    "null",
    "NULL",
    "http://testserver",  # same host, other scheme
    "https://testserver:8443",  # same host, other port
    "https://testserver.evil.example",
    "https://evil.example/https://testserver",
    "https://user@testserver",
    "https://testserver/path",
    "garbage",
    "",
    "file://",
]


@pytest.mark.parametrize("method", UNSAFE_METHODS)
@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
def test_foreign_or_null_origin_on_unsafe_method_is_403_even_with_the_right_token(
    clock: Clock, app: FastAPI, recorder: Recorder, method: str, origin: str, due: str
) -> None:
    tc, jar = signed_in(app, clock)
    clock.advance(90)
    headers = {"x-csrf-token": jar["_auth_csrf"], "origin": origin}
    assert_refused_before_refresh(forged_request(tc, jar, due, method, **headers), recorder)


def test_raw_origin_edge_cases_are_refused(clock: Clock, app: FastAPI, recorder: Recorder) -> None:
    _, jar = signed_in(app, clock)
    base = [(b"cookie", cookie_header(jar).encode()), (b"x-csrf-token", jar["_auth_csrf"].encode())]
    for extra in (
        [(b"origin", b"https://testserver"), (b"origin", b"https://testserver")],  # two
        [(b"origin", b"https://testserver"), (b"origin", b"https://evil.example")],
        [(b"origin", b"https://t\xe9stserver")],  # not ASCII
        [(b"origin", b"https://testserver\x00.evil.example")],
    ):
        reply = call(app, "POST", "/write", [*base, *extra])
        assert reply.status == 403, extra
        assert reply.header_values(b"set-cookie") == []
    assert recorder.calls == []


@pytest.mark.parametrize(
    "origin", ["https://testserver", "https://TESTSERVER", "https://testserver:443"]
)
def test_own_origin_passes(clock: Clock, app: FastAPI, origin: str) -> None:
    tc, jar = signed_in(app, clock)
    headers = {"x-csrf-token": jar["_auth_csrf"], "origin": origin}
    assert tc.post("/write", headers=headers).status_code == 200


def test_allowed_origins_adds_an_origin_and_only_that_one(clock: Clock, recorder: Recorder) -> None:
    app = security_app(build_store(clock, recorder, allowed_origins=["https://app.example"]))
    tc, jar = signed_in(app, clock)
    good = {"x-csrf-token": jar["_auth_csrf"], "origin": "https://app.example"}
    assert tc.post("/write", headers=good).status_code == 200
    for origin in ("https://evil.example", "http://app.example", "https://app.example:444"):
        bad = {"x-csrf-token": jar["_auth_csrf"], "origin": origin}
        assert tc.post("/write", headers=bad).status_code == 403


def test_allowed_origins_admits_a_cross_site_origin(clock: Clock, recorder: Recorder) -> None:
    # A browser sends Sec-Fetch-Site: cross-site with every request from an origin on
    # another site, so an allowed origin on another site (the usual reason to list one) was
    # refused by the Sec-Fetch-Site check before its Origin was looked at (issue 17, item 9).
    app = security_app(build_store(clock, recorder, allowed_origins=["https://app.other.example"]))
    tc, jar = signed_in(app, clock)
    headers = {
        "x-csrf-token": jar["_auth_csrf"],
        "origin": "https://app.other.example",
        "sec-fetch-site": "cross-site",
    }
    assert tc.post("/write", headers=headers).status_code == 200
    # The allowed origin is what admits it: another cross-site origin, or none, still fails.
    for origin in ("https://evil.example", None):
        bad = {k: v for k, v in headers.items() if k != "origin"}
        if origin is not None:
            bad["origin"] = origin
        assert tc.post("/write", headers=bad).status_code == 403, origin


def test_csrf_exempt_paths_are_route_paths_under_a_root_path(
    clock: Clock, recorder: Recorder
) -> None:
    # Mounted under a root path (uvicorn --root-path /api, a proxy prefix), the ASGI scope's
    # path includes the root path while routes, and csrf_exempt_paths, do not (issue 17,
    # item 9: the exempt path never matched there).
    app = security_app(build_store(clock, recorder, csrf_exempt_paths={"/write"}))
    _, jar = signed_in(app, clock)
    cookies = [(b"cookie", cookie_header(jar).encode())]
    exempt = call(app, "POST", "/api/write", cookies, root_path="/api")
    assert exempt.status == 200, exempt
    assert exempt.json() == {"written": True}
    # Only that route: another one under the same root path still needs the token.
    assert call(app, "POST", "/api/whoami", cookies, root_path="/api").status == 403
    # And a path that merely ends like it, or is not under the root path at all, does not
    # match (Starlette's rule: the root path itself is the route path "").
    for path in ("/api/api/write", "/apiwrite", "/api"):
        assert call(app, "POST", path, cookies, root_path="/api").status == 403, path


def test_safe_methods_are_not_refused_on_origin(clock: Clock, app: FastAPI) -> None:
    # GET/HEAD/OPTIONS change nothing, so a cross-site navigation or image load stays allowed
    # (SameSite decides whether cookies come along at all).
    tc, _ = signed_in(app, clock)
    headers = {"origin": "https://evil.example", "sec-fetch-site": "cross-site"}
    assert tc.get("/whoami", headers=headers).json()["auth"] is True
    assert tc.options("/whoami", headers=headers).status_code == 200


# --- WebSocket ------------------------------------------------------------------------------------


def ws_headers(jar: dict[str, str], origin: str | None) -> dict[str, str]:
    headers = {"cookie": cookie_header(jar)}
    if origin is not None:
        headers["origin"] = origin
    return headers


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://testserver", ""])
def test_websocket_handshake_with_foreign_or_null_origin_is_refused_without_refresh(
    clock: Clock, app: FastAPI, recorder: Recorder, origin: str, due: str
) -> None:
    tc, jar = signed_in(app, clock)
    clock.advance(90)  # a refresh would be due
    tc.cookies.clear()
    cookies = jar if due == "access-and-refresh" else jar_without(jar, "_auth")
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        tc.websocket_connect("wss://testserver/ws", headers=ws_headers(cookies, origin)),
    ):
        pass  # pragma: no cover
    assert refused.value.code == 1008
    assert recorder.calls == []


def test_websocket_refusal_never_accepts_at_the_asgi_level(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    _, jar = signed_in(app, clock)
    clock.advance(90)
    cookie = (b"cookie", cookie_header(jar).encode())

    async def run() -> None:
        for origin in (b"https://evil.example", b"null"):
            sent = await asgi_websocket(app, "/ws", [cookie, (b"origin", origin)])
            assert [m["type"] for m in sent] == ["websocket.close"]
            assert sent[0]["code"] == 1008

    anyio.run(run)
    assert recorder.calls == []


@pytest.mark.parametrize("origin", ["https://testserver", None])
def test_websocket_own_origin_or_no_origin_is_accepted_and_current_user_works(
    clock: Clock, app: FastAPI, origin: str | None
) -> None:
    tc, jar = signed_in(app, clock)
    tc.cookies.clear()
    with tc.websocket_connect("wss://testserver/ws", headers=ws_headers(jar, origin)) as ws:
        assert ws.receive_json() == {
            "user": {"sub": "alice", "iat": int(clock()), "exp": int(clock()) + 100}
        }


def test_websocket_own_origin_refreshes_and_current_user_sees_the_new_identity(
    clock: Clock, app: FastAPI, recorder: Recorder
) -> None:
    tc, jar = signed_in(app, clock, ttl=10)
    clock.advance(20)
    tc.cookies.clear()
    headers = ws_headers(jar, "https://testserver")
    with tc.websocket_connect("wss://testserver/ws", headers=headers) as ws:
        assert ws.receive_json()["user"]["sub"] == "alice-1"
        names = {v.split(b"=", 1)[0] for k, v in ws.extra_headers if k == b"set-cookie"}
        assert b"_auth" in names
    assert len(recorder.calls) == 1


def test_websocket_allowed_origins_adds_an_origin(clock: Clock, recorder: Recorder) -> None:
    app = security_app(build_store(clock, recorder, allowed_origins=["https://app.example"]))
    tc, jar = signed_in(app, clock)
    tc.cookies.clear()
    with tc.websocket_connect(
        "wss://testserver/ws", headers=ws_headers(jar, "https://app.example")
    ) as ws:
        assert ws.receive_json()["user"]["sub"] == "alice"
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        tc.websocket_connect(
            "wss://testserver/ws", headers=ws_headers(jar, "https://evil.example")
        ),
    ):
        pass  # pragma: no cover
    assert refused.value.code == 1008


def test_websocket_without_cookies_is_closed_by_current_user(app: FastAPI) -> None:
    tc = safe_client(app)
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        tc.websocket_connect("wss://testserver/ws", headers={"origin": "https://evil.example"}),
    ):
        pass  # pragma: no cover
    assert refused.value.code == 1008  # not authenticated (no cookies: no forgery question)


# --- login CSRF: nobody is signed in from another site (issue 17, item 2) -------------------------


CROSS_SITE = [
    pytest.param({"origin": "https://evil.example", "sec-fetch-site": "cross-site"}, id="both"),
    pytest.param({"origin": "https://evil.example"}, id="foreign-origin"),
    pytest.param({"origin": "null"}, id="null-origin"),
    pytest.param({"sec-fetch-site": "cross-site"}, id="sec-fetch-site"),
]


def _login_from(app: FastAPI, clock: Clock, headers: dict[str, str]) -> Any:
    """A browser without cookies (SameSite keeps them off a cross-site POST anyway) posting
    the attacker's credentials: here, the attacker's own valid token."""
    tc = safe_client(app)
    body = {"token": make_token(clock, sub="attacker"), "refresh": "attackers-refresh"}
    return tc.post("/login", json=body, headers=headers)


@pytest.mark.parametrize("headers", CROSS_SITE)
def test_cross_site_post_to_an_exempt_login_path_is_refused_without_cookies(
    clock: Clock, recorder: Recorder, headers: dict[str, str]
) -> None:
    # An exempt login form posted from another site signed the victim in as the attacker:
    # without cookies, the Origin and Fetch-Metadata checks were skipped.
    app = security_app(build_store(clock, recorder, csrf_exempt_paths={"/login"}))
    response = _login_from(app, clock, headers)
    assert response.status_code == 403
    assert response.headers.get_list("set-cookie") == []
    # The control: the same form from the site itself (or a client sending neither
    # header) signs in.
    assert set_cookies(_login_from(app, clock, {"origin": "https://testserver"}))
    assert set_cookies(_login_from(app, clock, {"sec-fetch-site": "same-origin"}))
    assert set_cookies(_login_from(app, clock, {}))


@pytest.mark.parametrize("headers", CROSS_SITE)
def test_sign_in_refuses_a_cross_site_request_on_any_path(
    clock: Clock, app: FastAPI, headers: dict[str, str]
) -> None:
    # Not exempt, no cookies: nothing for the CSRF check to look at, but sign_in itself
    # refuses to start a session for another site (403, not a 500).
    response = _login_from(app, clock, headers)
    assert response.status_code == 403
    assert "cross-site" in response.json()["detail"]
    assert response.headers.get_list("set-cookie") == []
    assert set_cookies(_login_from(app, clock, {"origin": "https://testserver"}))


def test_an_allowed_origin_may_sign_in(clock: Clock, recorder: Recorder) -> None:
    app = security_app(build_store(clock, recorder, allowed_origins=["https://app.other.example"]))
    headers = {"origin": "https://app.other.example", "sec-fetch-site": "cross-site"}
    assert set_cookies(_login_from(app, clock, headers))


def test_sign_in_over_an_existing_session_revokes_it(clock: Clock) -> None:
    # Signing in again (as another user, or the same) replaced the cookies but left the
    # previous session live at the issuer: its refresh token still worked.
    with SafeClient(issuer_app(MemoryStore(), clock), base_url="https://testserver") as tc:
        assert tc.post("/login?as=alice").status_code == 200
        alice = dict(tc.cookies.items())
        response = tc.post("/login?as=bob", headers={"x-csrf-token": alice["_auth_csrf"]})
        assert response.status_code == 200
        assert tc.get("/me").json()["user"] == {"name": "bob"}
        # Alice's cookies, replayed: her session is over, access and refresh token alike.
        tc.cookies.clear()
        replayed = tc.get("/me", headers={"cookie": cookie_header(alice)})
        assert replayed.status_code == 401
        clock.advance(61)
        dropped = cookie_header(jar_without(alice, "_auth"))
        assert tc.get("/me", headers={"cookie": dropped}).status_code == 401
