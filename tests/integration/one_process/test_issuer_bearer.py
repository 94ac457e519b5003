"""The built-in issuer serving browsers (cookies) and mobile apps or services
(``Authorization: Bearer``) on the same routes: sign-in and refresh in the body, the same
rotation and revocation for both, the precedence of docs/behaviour.md."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
import pytest
from fastapi import Depends, FastAPI, Request, WebSocket
from starlette.testclient import TestClient, WebSocketDisconnect

from fastapi_authkit import (
    AuthKitMiddleware,
    ConfigurationError,
    create_store,
    get_auth_state,
)
from fastapi_authkit.config import AuthType
from fastapi_authkit.dependencies import AuthHeader, AuthStateDep, CurrentUser, dependencies_for
from fastapi_authkit.errors import InvalidGrantError
from fastapi_authkit.issuer import Issuer, TokenResponse
from fastapi_authkit.stores import MemoryStore, RedisStore, SessionStore
from fastapi_authkit.testing import auth_client, login_as, store_down

from tests.support.apps import issuer_base_app, make_issuer
from tests.support.clock import Clock
from tests.support.redis_servers import RedisServer
from tests.support.tokens import SECRET_KEY
from tests.support.waiting import eventually_sync

BOTH: AuthType = ("cookie", "header")


def bearer_app(
    backend: SessionStore, clock: Clock, *, auth_type: Any = BOTH, **options: Any
) -> FastAPI:
    """Browsers sign in at /login (cookies), apps at /app-login and refresh at /token (the
    body); /who says who and by which credential."""
    issuer = make_issuer(backend, clock)
    app = issuer_base_app(issuer, clock, auth_type=auth_type, **options)
    app.post("/token")(issuer.token_endpoint)

    @app.post("/login")
    async def login(request: Request) -> dict[str, bool]:
        await issuer.sign_in(request, request.query_params.get("as", "alice"))
        return {"ok": True}

    @app.post("/app-login")
    async def app_login(request: Request) -> TokenResponse:
        # (The app checks the client's password or code first.)
        return await issuer.issue_tokens(request, request.query_params.get("as", "alice"))

    @app.post("/app-refresh")
    async def app_refresh(request: Request) -> TokenResponse:
        # The app's own route around refresh_tokens, letting InvalidGrantError through.
        return await issuer.refresh_tokens(request, (await request.json())["refresh_token"])

    @app.get("/who")
    async def who(state: AuthStateDep, header: AuthHeader) -> dict[str, Any]:
        claims = state.claims or {}
        return {
            "sub": claims.get("sub"),
            "sid": claims.get("sid"),
            "credential": state.credential,
            "header": header,
        }

    @app.get("/me")
    async def me(user: CurrentUser) -> Any:
        return user

    @app.post("/write")
    async def write(user: CurrentUser) -> dict[str, bool]:
        return {"ok": True}

    @app.get("/sessions")
    async def sessions(request: Request, user: CurrentUser) -> list[dict[str, Any]]:
        return [
            {"id": s.id, "current": s.current, "user_agent": s.user_agent}
            for s in await issuer.sessions(request)
        ]

    return app


@pytest.fixture
def tc(clock: Clock) -> Iterator[TestClient]:
    with TestClient(bearer_app(MemoryStore(), clock), base_url="https://testserver") as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@contextmanager
def no_cookie_jar(tc: TestClient) -> Iterator[None]:
    """Requests as a mobile app makes them: the browser's cookies (in the same test
    client) are not sent."""
    jar, tc.cookies = tc.cookies, httpx2.Cookies()
    try:
        yield
    finally:
        tc.cookies = jar


def app_login(tc: TestClient, subject: str = "alice") -> dict[str, Any]:
    """A mobile app's sign-in (the response sets no cookie)."""
    with no_cookie_jar(tc):
        response = tc.post(f"/app-login?as={subject}", headers={"user-agent": "MobileApp/1.0"})
    assert response.status_code == 200, response.text
    assert response.headers.get_list("set-cookie") == []
    body: dict[str, Any] = response.json()
    return body


def refresh(tc: TestClient, refresh_token: str) -> Any:
    with no_cookie_jar(tc):
        return tc.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            headers={"user-agent": "MobileApp/1.0"},
        )


def browser_login(tc: TestClient, subject: str = "alice") -> None:
    assert tc.post(f"/login?as={subject}").status_code == 200
    assert "_auth" in tc.cookies


def csrf(tc: TestClient) -> dict[str, str]:
    return {"X-CSRF-Token": tc.cookies["_auth_csrf"]}


# --- sign-in and refresh in the body -----------------------------------------------------------


def test_sign_in_answers_an_oauth_token_response(tc: TestClient) -> None:
    body = app_login(tc)
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 60
    who = tc.get("/who", headers=bearer(body["access_token"])).json()
    assert (who["sub"], who["credential"]) == ("alice", "header")
    assert who["header"] == f"Bearer {body['access_token']}"
    assert tc.get("/me", headers=bearer(body["access_token"])).json()["sub"] == "alice"


def test_refreshes_past_access_expiry_rotate_the_pair(tc: TestClient, clock: Clock) -> None:
    tokens = app_login(tc)
    seen = {tokens["refresh_token"]}
    for _ in range(4):
        clock.advance(61)  # the access token is past exp
        assert tc.get("/me", headers=bearer(tokens["access_token"])).status_code == 401
        response = refresh(tc, tokens["refresh_token"])
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["pragma"] == "no-cache"
        assert response.headers.get_list("set-cookie") == []
        tokens = response.json()
        assert tokens["token_type"] == "Bearer"
        assert tokens["expires_in"] == 60
        assert tokens["refresh_token"] not in seen  # rotated every time
        seen.add(tokens["refresh_token"])
        assert tc.get("/me", headers=bearer(tokens["access_token"])).json()["sub"] == "alice"


def test_a_lost_reply_gets_the_same_successor_within_the_grace_period(
    tc: TestClient, clock: Clock
) -> None:
    tokens = app_login(tc)
    first = refresh(tc, tokens["refresh_token"]).json()
    clock.advance(5)  # the client never got the answer, and asks again
    again = refresh(tc, tokens["refresh_token"])
    assert again.status_code == 200
    assert again.json()["refresh_token"] == first["refresh_token"]
    assert refresh(tc, first["refresh_token"]).status_code == 200  # and it rotates on


def test_reuse_of_an_old_refresh_token_revokes_the_session_at_once(
    tc: TestClient, clock: Clock
) -> None:
    tokens = app_login(tc)
    first = refresh(tc, tokens["refresh_token"]).json()
    clock.advance(20)
    second = refresh(tc, first["refresh_token"]).json()
    assert tc.get("/me", headers=bearer(second["access_token"])).status_code == 200
    clock.advance(11)  # past the grace period; its successor was used: reuse
    response = refresh(tc, tokens["refresh_token"])
    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "the refresh token is invalid, expired or revoked",
    }
    assert response.headers["cache-control"] == "no-store"
    # The family is revoked: the live access token stops working now, not at its exp.
    assert tc.get("/me", headers=bearer(second["access_token"])).status_code == 401
    assert tc.get("/who", headers=bearer(second["access_token"])).json()["sub"] is None
    assert refresh(tc, second["refresh_token"]).status_code == 400


def test_refused_refreshes_answer_the_documented_400s(tc: TestClient) -> None:
    def error(response: Any) -> str:
        assert response.status_code == 400, response.text
        assert response.headers["cache-control"] == "no-store"
        return str(response.json()["error"])

    assert error(refresh(tc, "not-a-refresh-token")) == "invalid_grant"
    assert error(refresh(tc, "x" * 5000)) == "invalid_grant"
    assert error(tc.post("/token", data={"grant_type": "password"})) == "unsupported_grant_type"
    assert error(tc.post("/token", data={"grant_type": "refresh_token"})) == "invalid_request"
    json_body = {"grant_type": "refresh_token", "refresh_token": "t"}
    assert error(tc.post("/token", json=json_body)) == "invalid_request"
    repeated = "grant_type=refresh_token&refresh_token=a&refresh_token=b"
    form = {"content-type": "application/x-www-form-urlencoded"}
    assert error(tc.post("/token", content=repeated, headers=form)) == "invalid_request"
    assert error(tc.post("/token", content=b"x=" + b"y" * 9000, headers=form)) == (
        "invalid_request"
    )
    # The app's own route around refresh_tokens: InvalidGrantError is an HTTPException.
    response = tc.post("/app-refresh", json={"refresh_token": "unknown.token"})
    assert response.status_code == 400
    assert "invalid_grant" in response.json()["detail"]


def test_invalid_grant_says_why_to_the_app_and_not_to_the_client(tc: TestClient) -> None:
    app: FastAPI = tc.app  # type: ignore[assignment]
    issuer: Issuer = app.state.issuer

    @app.post("/refresh-or-why")
    async def refresh_or_why(request: Request) -> dict[str, Any]:
        try:
            await issuer.refresh_tokens(request, request.query_params["token"])
        except InvalidGrantError as exc:
            return {"reason": exc.reason, "body": exc.body, "status": exc.status_code}
        return {}

    tokens = app_login(tc)
    tc.portal.call(issuer.revoke, tokens["refresh_token"])  # type: ignore[union-attr]
    answer = tc.post(f"/refresh-or-why?token={tokens['refresh_token']}").json()
    assert answer["reason"] == "revoked"
    assert answer["status"] == 400
    assert answer["body"]["error"] == "invalid_grant"
    assert "revoked or" not in answer["body"]["error_description"]  # the generic wording


def test_a_store_outage_answers_503_with_retry_after(tc: TestClient) -> None:
    tokens = app_login(tc)
    with store_down(tc.app):
        response = refresh(tc, tokens["refresh_token"])
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert response.json()["error"] == "temporarily_unavailable"
        assert tc.post("/app-login").status_code == 503
        assert tc.post("/app-login").headers["retry-after"] == "5"
    assert refresh(tc, tokens["refresh_token"]).status_code == 200  # nothing was lost


# --- one identity, browsers and apps -----------------------------------------------------------


def test_sign_out_everywhere_from_a_browser_ends_the_app_session(tc: TestClient) -> None:
    app = app_login(tc)
    browser_login(tc)
    listed = tc.get("/sessions").json()
    assert len(listed) == 2
    assert [s["current"] for s in listed] == [True, False]
    assert listed[1]["user_agent"] == "MobileApp/1.0"
    # The app sees the same list, its own session first.
    apps_view = tc.get("/sessions", headers=bearer(app["access_token"])).json()
    assert apps_view[0]["user_agent"] == "MobileApp/1.0"
    assert apps_view[0]["current"] is True
    assert tc.post("/logout-everywhere", headers=csrf(tc)).json() == {"revoked": True}
    assert tc.get("/me", headers=bearer(app["access_token"])).status_code == 401
    assert refresh(tc, app["refresh_token"]).json()["error"] == "invalid_grant"


def test_an_app_signs_out_its_own_session_and_no_cookie(tc: TestClient) -> None:
    browser_login(tc)
    app = app_login(tc)
    response = tc.post("/logout", headers=bearer(app["access_token"]))
    assert response.json() == {"revoked": True}
    assert response.headers.get_list("set-cookie") == []  # the browser's session is not its
    # The header counts as absent now: the browser's cookies, still signed in, are read.
    assert tc.get("/who", headers=bearer(app["access_token"])).json()["credential"] == "cookie"
    with no_cookie_jar(tc):
        assert tc.get("/me", headers=bearer(app["access_token"])).status_code == 401


@pytest.mark.parametrize("cookie", ["none", "valid", "expired", "revoked"])
@pytest.mark.parametrize("header", ["none", "valid", "expired", "revoked", "garbage"])
def test_precedence_on_the_same_route(
    tc: TestClient, clock: Clock, cookie: str, header: str
) -> None:
    issuer: Issuer = tc.app.state.issuer  # type: ignore[attr-defined]
    app_tokens = app_login(tc, "mobile") if header != "none" else {}
    if cookie != "none":
        browser_login(tc, "browser")
    if cookie == "revoked":
        tc.portal.call(issuer.revoke_subject, "browser")  # type: ignore[union-attr]
    if header == "revoked":
        tc.portal.call(issuer.revoke, app_tokens["refresh_token"])  # type: ignore[union-attr]
    if cookie == "expired" or header == "expired":
        # Past the access token's exp: a cookie session refreshes; a header never does.
        clock.advance(61)
        if header == "valid":
            app_tokens = refresh(tc, app_tokens["refresh_token"]).json()
    if header == "none":
        headers = {}
    elif header == "garbage":
        headers = {"authorization": "Bearer not.a.jwt"}
    else:
        headers = bearer(app_tokens["access_token"])
    response = tc.get("/who", headers=headers)
    who = response.json()
    if header == "valid":
        assert (who["sub"], who["credential"]) == ("mobile", "header")
        assert response.headers.get_list("set-cookie") == []  # the cookies are not read
    elif cookie in ("valid", "expired"):
        # An invalid header counts as absent; an expired cookie session refreshes.
        assert (who["sub"], who["credential"]) == ("browser", "cookie")
    else:
        assert (who["sub"], who["credential"]) == (None, None)


def test_csrf_is_needed_for_cookies_only(tc: TestClient) -> None:
    app = app_login(tc)
    cross = {"origin": "https://evil.example", "sec-fetch-site": "cross-site"}
    assert tc.post("/write", headers=bearer(app["access_token"])).status_code == 200
    assert tc.post("/write", headers={**bearer(app["access_token"]), **cross}).status_code == 200
    browser_login(tc)
    assert tc.post("/write").status_code == 403
    assert tc.post("/write", headers=csrf(tc)).status_code == 200
    # A revoked header counts as absent: the cookies, and their CSRF check, apply.
    issuer: Issuer = tc.app.state.issuer  # type: ignore[attr-defined]
    tc.portal.call(issuer.revoke, app["refresh_token"])  # type: ignore[union-attr]
    assert tc.post("/write", headers=bearer(app["access_token"])).status_code == 403
    headers = {**bearer(app["access_token"]), **csrf(tc)}
    assert tc.post("/write", headers=headers).status_code == 200


def test_header_only_mode(clock: Clock) -> None:
    app = bearer_app(MemoryStore(), clock, auth_type="header")
    with TestClient(app, base_url="https://testserver") as tc:
        tokens = app_login(tc)
        assert tc.get("/who", headers=bearer(tokens["access_token"])).json()["credential"] == (
            "header"
        )
        clock.advance(61)
        tokens = refresh(tc, tokens["refresh_token"]).json()
        assert tc.post("/write", headers=bearer(tokens["access_token"])).status_code == 200
        with pytest.raises(ConfigurationError, match="issue_tokens"):
            tc.post("/login")
        assert tc.post("/logout", headers=bearer(tokens["access_token"])).json() == {
            "revoked": True
        }
        assert tc.get("/me", headers=bearer(tokens["access_token"])).status_code == 401


def test_user_loader_makes_the_same_user_from_either_credential(clock: Clock) -> None:
    def load(claims: dict[str, Any], user_state: Any) -> dict[str, Any]:
        return {"id": claims["sub"]}

    app = bearer_app(MemoryStore(), clock, user_loader=load)
    with TestClient(app, base_url="https://testserver") as tc:
        tokens = app_login(tc)
        browser_login(tc)
        assert tc.get("/me", headers=bearer(tokens["access_token"])).json() == {"id": "alice"}
        assert tc.get("/me").json() == {"id": "alice"}


def test_openapi_shows_both_schemes(clock: Clock) -> None:
    issuer = make_issuer(MemoryStore(), clock)
    store = create_store(secret_key=SECRET_KEY, token_issuer=issuer, auth_type=BOTH)
    deps = dependencies_for(store)
    app = FastAPI()
    app.add_middleware(AuthKitMiddleware, store=store)

    @app.get("/me")
    async def me(user: Any = Depends(deps.current_user)) -> Any:
        return user

    schema = TestClient(app).get("/openapi.json").json()
    assert set(schema["components"]["securitySchemes"]) == {"AuthKitCookie", "AuthKitBearer"}


def test_combinations_that_make_no_sense_stay_errors(clock: Clock) -> None:
    issuer = make_issuer(MemoryStore(), clock)
    for auth_type in ("gateway", ("gateway", "header")):
        with pytest.raises(ConfigurationError, match="auth gateway"):
            create_store(secret_key=SECRET_KEY, token_issuer=issuer, auth_type=auth_type)
    # Header-only: no cookie refresh is built, none may be given.
    store = create_store(secret_key=SECRET_KEY, token_issuer=issuer, auth_type="header")
    assert store.refresh is None
    assert store.session_check is not None


# --- the revocation check on real Redis --------------------------------------------------------


async def revoke_elsewhere(url: str, prefix: str, clock: Clock, subject: str) -> int:
    """Another process's issuer on the same Redis prefix signs ``subject`` out everywhere."""
    other = make_issuer(RedisStore.from_url(url, prefix=prefix), clock)
    try:
        return await other.revoke_subject(subject)
    finally:
        await other.backend.aclose()


def test_bearer_revocation_on_redis_asks_the_store(redis_server: RedisServer, clock: Clock) -> None:
    """With no view (``view_size=0``) every bearer request asks Redis whether its session
    is live: a revocation made by another process counts at the next request, and the
    cookie session beside a revoked header is the identity."""
    prefix = f"bearer-{uuid.uuid4().hex}:"
    app = bearer_app(RedisStore.from_url(redis_server.url, prefix=prefix, view_size=0), clock)
    with TestClient(app, base_url="https://testserver") as tc:
        tokens = app_login(tc, "mobile")
        browser_login(tc, "browser")
        headers = bearer(tokens["access_token"])
        assert tc.get("/who", headers=headers).json()["credential"] == "header"

        revoked = tc.portal.call(  # type: ignore[union-attr]
            revoke_elsewhere, redis_server.url, prefix, clock, "mobile"
        )
        assert revoked == 1
        response = tc.get("/who", headers=headers)
        assert (response.json()["sub"], response.json()["credential"]) == ("browser", "cookie")
        assert response.headers.get_list("set-cookie") == []  # the browser's cookies stay
        assert tc.get("/me", headers=headers).json()["sub"] == "browser"
        tc.cookies.clear()
        assert tc.get("/me", headers=headers).status_code == 401
        # A bearer token whose session cannot be checked fails closed.
        live = bearer(app_login(tc, "mobile")["access_token"])
        with store_down(tc.app):
            response = tc.get("/me", headers=live)
            assert response.status_code == 503
            assert response.headers["retry-after"] == "5"
        assert tc.get("/me", headers=live).json()["sub"] == "mobile"


def test_audit_events_of_bearer_clients(clock: Clock) -> None:
    events: list[Any] = []
    app = bearer_app(MemoryStore(), clock, on_event=events.append)
    with TestClient(app, base_url="https://testserver") as tc:
        tokens = app_login(tc)
        assert refresh(tc, "junk.token").status_code == 400  # no session changed: no event
        first = refresh(tc, tokens["refresh_token"]).json()
        refresh(tc, tokens["refresh_token"])  # within the grace period: the same pair, no event
        clock.advance(20)
        refresh(tc, first["refresh_token"])
        clock.advance(11)
        assert refresh(tc, tokens["refresh_token"]).status_code == 400  # reuse
        browser_login(tc)
        # The revoked header is reported, and the cookies beside it are the identity: read
        # in full, then (a Cookie header seen before) as remembered.
        for _ in range(2):
            who = tc.get("/who", headers=bearer(first["access_token"])).json()
            assert (who["sub"], who["credential"]) == ("alice", "cookie")
    kinds = [event.kind for event in events]
    assert kinds == [
        "signed_in",
        "refreshed",
        "refreshed",
        "reuse_detected",
        "signed_in",
        "revoked_session",
        "revoked_session",
    ]
    assert {event.subject for event in events} == {"alice"}
    sessions = {event.session for event in events[:4]}
    assert len(sessions) == 1
    assert None not in sessions
    assert events[-1].session in sessions


def test_revoke_session_between_a_browser_and_an_app(tc: TestClient) -> None:
    app: FastAPI = tc.app  # type: ignore[assignment]
    issuer: Issuer = app.state.issuer

    @app.post("/sessions/{session_id}/revoke")
    async def revoke(request: Request, session_id: str) -> dict[str, bool]:
        return {"revoked": await issuer.revoke_session(request, session_id)}

    browser_login(tc)
    phone = app_login(tc)
    tablet = app_login(tc)
    phone_sid = tc.get("/who", headers=bearer(phone["access_token"])).json()["sid"]
    tablet_sid = tc.get("/who", headers=bearer(tablet["access_token"])).json()["sid"]
    # The browser ends the phone's session from its sessions page.
    assert tc.post(f"/sessions/{phone_sid}/revoke", headers=csrf(tc)).json() == {"revoked": True}
    with no_cookie_jar(tc):
        assert tc.get("/me", headers=bearer(phone["access_token"])).status_code == 401
        # The tablet ends its own: no cookie is written, the browser stays signed in.
        response = tc.post(f"/sessions/{tablet_sid}/revoke", headers=bearer(tablet["access_token"]))
        assert response.json() == {"revoked": True}
        assert response.headers.get_list("set-cookie") == []
        assert tc.get("/me", headers=bearer(tablet["access_token"])).status_code == 401
    assert tc.get("/who").json()["credential"] == "cookie"
    assert len(tc.get("/sessions").json()) == 1


def test_a_bearer_websocket_ends_with_its_session(tc: TestClient) -> None:
    app: FastAPI = tc.app  # type: ignore[assignment]
    issuer: Issuer = app.state.issuer
    ends: list[int] = []

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json(get_auth_state(websocket).credential)
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect as gone:
            ends.append(gone.code)

    tokens = app_login(tc)
    with tc.websocket_connect("/ws", headers=bearer(tokens["access_token"])) as socket:
        assert socket.receive_json() == "header"
        tc.portal.call(issuer.revoke, tokens["refresh_token"])  # type: ignore[union-attr]
        with pytest.raises(WebSocketDisconnect) as closed:
            socket.receive_json()
        assert closed.value.code == 1008
    assert ends == [1008]  # the app saw its client leave


def test_bearer_revocation_on_redis_reaches_the_view(
    redis_server: RedisServer, clock: Clock
) -> None:
    """With the revocation view (the default), a revocation made by another process reaches
    this worker by its subscription: the bearer token is refused without asking Redis."""
    prefix = f"bearer-{uuid.uuid4().hex}:"
    app = bearer_app(RedisStore.from_url(redis_server.url, prefix=prefix), clock)
    with TestClient(app, base_url="https://testserver") as tc:
        tokens = app_login(tc, "mobile")
        headers = bearer(tokens["access_token"])
        issuer: Issuer = app.state.issuer
        sid = tc.get("/who", headers=headers).json()["sid"]

        # The view answers, not Redis, once it has learned the session from a store read
        # made while its subscription was up (each request asks until then).
        def view_knows() -> bool:
            assert tc.get("/me", headers=headers).status_code == 200
            return issuer.known_active(sid, clock()) is True

        eventually_sync(view_knows, within=20)

        revoked = tc.portal.call(  # type: ignore[union-attr]
            revoke_elsewhere, redis_server.url, prefix, clock, "mobile"
        )
        assert revoked == 1
        eventually_sync(lambda: issuer.known_active(sid, clock()) is False, within=20)
        assert tc.get("/me", headers=headers).status_code == 401


@pytest.mark.parametrize(("auth_type", "credential"), [(BOTH, "cookie"), ("header", "header")])
def test_login_as_signs_in_through_the_issuer(
    clock: Clock, auth_type: AuthType, credential: str
) -> None:
    app = bearer_app(MemoryStore(), clock, auth_type=auth_type)
    with auth_client(app) as client:
        session = login_as(client, "tester")
        who = client.get("/who").json()
        assert (who["sub"], who["credential"]) == ("tester", credential)
        assert len(client.get("/sessions").json()) == 1  # a session of the issuer's
        if credential == "header":
            assert session.refresh_token is not None
            assert refresh(client, session.refresh_token).status_code == 200
