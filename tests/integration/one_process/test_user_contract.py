"""The user object never changes shape (issue 13).

The contract: in cookie mode an identity is the access token *with* its session's state
cookie (signed, bound to the session's tokens). ``current_user`` is then the user state
``sign_in`` (or the latest refresh) gave, or the token's claims when it gave none, and
``user_loader(claims, user_state)`` is called with the same pair. A request whose access
token comes without that state cookie (missing, tampered, too old, another session's, an
older issue of this one) is anonymous: 401 on protected routes (1008 on a WebSocket), the
cookies left as they are, no refresh. It used to get the bare claims instead, so a route
reading ``user["name"]`` answered 500. In header mode there is no state cookie: the user is
always the claims.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI, Request, WebSocket
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from example_app.main import Settings, create_app
from fastapi_authkit import AuthKitMiddleware, sign_in
from fastapi_authkit.config import AuthStore
from fastapi_authkit.dependencies import CurrentUser, OptionalUser

from tests.support.apps import build_store, client, set_cookies
from tests.support.clock import Clock
from tests.support.tokens import make_token

ALICE = {"name": "Alice"}


def contract_app(store: AuthStore) -> FastAPI:
    """A route that relies on the user state's shape, on HTTP and WebSocket."""
    app = FastAPI()
    app.add_middleware(AuthKitMiddleware, store=store)

    @app.post("/login")
    async def login(request: Request) -> dict[str, bool]:
        body = await request.json()
        sign_in(request, auth={"token": body["token"]}, user_state=body.get("user_state"))
        return {"ok": True}

    @app.get("/name")
    async def name(user: CurrentUser) -> dict[str, Any]:
        return {"name": user["name"]}  # a KeyError here is a 500

    @app.get("/sub")
    async def sub(user: CurrentUser) -> dict[str, Any]:
        return {"sub": user["sub"]}

    @app.get("/maybe")
    async def maybe(user: OptionalUser) -> dict[str, Any]:
        return {"user": user}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, user: CurrentUser) -> None:
        await websocket.accept()
        await websocket.send_json({"name": user["name"]})
        await websocket.close()

    return app


def signed_in(
    tc: TestClient, clock: Clock, user_state: Any = ALICE, sub: str = "alice"
) -> dict[str, str]:
    body: dict[str, Any] = {"token": make_token(clock, sub=sub)}
    if user_state is not None:
        body["user_state"] = user_state
    response = tc.post("/login", json=body)
    assert response.status_code == 200
    return dict(tc.cookies.items())


def other_session_state(clock: Clock, store: AuthStore) -> str:
    """A valid state cookie of another session (another sign-in, another token)."""
    tc = client(contract_app(store))
    return signed_in(tc, clock, {"name": "Mallory"}, sub="mallory")["_auth_state"]


LOSSES = ["missing", "tampered", "another-session", "too-old"]


def lose_state(jar: dict[str, str], how: str, clock: Clock, store: AuthStore) -> dict[str, str]:
    jar = dict(jar)
    if how == "missing":
        del jar["_auth_state"]
    elif how == "tampered":
        jar["_auth_state"] = jar["_auth_state"][:-3] + "xyz"
    elif how == "another-session":
        jar["_auth_state"] = other_session_state(clock, store)
    else:  # too old: older than state_max_age (60 s here), the token still valid
        clock.advance(61)
    return jar


def header(jar: dict[str, str]) -> dict[str, str]:
    return {"cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}


@pytest.mark.parametrize("how", LOSSES)
def test_without_its_state_cookie_the_request_is_anonymous_never_the_claims(
    clock: Clock, how: str
) -> None:
    store = build_store(clock, None, state_max_age=60)
    app = contract_app(store)
    tc = client(app)
    jar = signed_in(tc, clock)
    assert tc.get("/name").json() == {"name": "Alice"}  # the control
    lost = lose_state(jar, how, clock, store)
    fresh = client(app)  # a client that holds exactly these cookies
    response = fresh.get("/name", headers=header(lost))
    assert response.status_code == 401  # not a 500 from user["name"] on the claims
    assert response.headers["www-authenticate"] == "Bearer"
    assert set_cookies(response) == {}  # the cookies are left as they are
    assert fresh.get("/maybe", headers=header(lost)).json() == {"user": None}
    assert fresh.get("/sub", headers=header(lost)).status_code == 401


@pytest.mark.parametrize("how", LOSSES)
def test_on_a_websocket_the_handshake_is_closed_never_the_claims(clock: Clock, how: str) -> None:
    store = build_store(clock, None, state_max_age=60)
    app = contract_app(store)
    tc = client(app)
    jar = signed_in(tc, clock)
    with client(app).websocket_connect("/ws", headers=header(jar)) as ws:
        assert ws.receive_json() == {"name": "Alice"}  # the control
    lost = lose_state(jar, how, clock, store)
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client(app).websocket_connect("/ws", headers=header(lost)),
    ):
        pass  # pragma: no cover - the handshake is refused
    assert closed.value.code == 1008


def test_without_a_user_state_the_user_is_always_the_claims(clock: Clock) -> None:
    store = build_store(clock, None)
    tc = client(contract_app(store))
    jar = signed_in(tc, clock, user_state=None)
    user = tc.get("/maybe").json()["user"]
    assert user["sub"] == "alice"
    assert set(user) == {"sub", "iat", "exp"}
    # And without the state cookie, anonymous all the same: no shape depends on it.
    del jar["_auth_state"]
    assert client(tc.app).get("/sub", headers=header(jar)).status_code == 401  # type: ignore[arg-type]


def test_user_loader_sees_the_same_pair(clock: Clock) -> None:
    seen: list[tuple[dict[str, Any], Any]] = []

    async def loader(claims: dict[str, Any], user_state: Any) -> Any:
        seen.append((claims, user_state))
        return {"name": user_state["name"], "sub": claims["sub"]}

    store = build_store(clock, None, user_loader=loader)
    app = contract_app(store)
    tc = client(app)
    jar = signed_in(tc, clock)
    assert tc.get("/name").json() == {"name": "Alice"}
    del jar["_auth_state"]
    assert client(app).get("/name", headers=header(jar)).status_code == 401
    assert [state for _, state in seen] == [ALICE]  # never called with (claims, None)


def test_header_mode_the_user_is_the_claims(clock: Clock) -> None:
    store = build_store(clock, None, auth_type="header")
    app = contract_app(store)
    token = make_token(clock)
    response = client(app).get("/sub", headers={"authorization": f"Bearer {token}"})
    assert response.json() == {"sub": "alice"}


def test_the_example_apps_ping_answers_401_not_500_for_an_access_cookie_alone(
    clock: Clock,
) -> None:
    # POST /api/ping reads user["username"]: with the access cookie and its CSRF token but
    # without the state cookie it used to raise a KeyError on the claims.
    app = create_app(Settings(secret="example-app-test-secret-0123456789abcdef"), clock=clock)
    with TestClient(app, base_url="https://testserver") as tc:
        login = tc.post("/login", data={"username": "demo", "password": "demo"})
        assert login.status_code == 200
        csrf = {"x-csrf-token": tc.cookies["_auth_csrf"]}
        assert tc.post("/api/ping", headers=csrf).json() == {"ok": True, "user": "demo"}
        jar = {k: v for k, v in tc.cookies.items() if k != "_auth_state"}
        with TestClient(app, base_url="https://testserver") as bare:
            response = bare.post("/api/ping", headers={**csrf, **header(jar)})
    # An unsafe request without the session's state has no CSRF binding either: refused
    # before the route; the GET shows the identity itself is gone.
    assert response.status_code == 403
    with TestClient(app, base_url="https://testserver") as bare:
        assert bare.get("/api/me", headers=header(jar)).status_code == 401
