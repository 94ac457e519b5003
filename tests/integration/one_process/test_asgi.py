"""The middleware at the ASGI level and the FastAPI layer: message ordering and headers,
lifespan, background tasks, contextvars, WebSocket, bearer mode, dependencies, OpenAPI."""

from __future__ import annotations

import contextvars
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import pytest
from fastapi import BackgroundTasks, Depends, FastAPI, Request, WebSocket
from starlette.applications import Starlette
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from fastapi_authkit import (
    AuthKitMiddleware,
    ConfigurationError,
    auth_header,
    create_store,
    current_user,
    get_auth_state,
    require_auth,
    sign_in,
)
from fastapi_authkit.dependencies import AuthHeader, CurrentUser, IsAuthenticated, OptionalUser

from tests.support.apps import Recorder, build_app, build_store, client, login, set_cookies
from tests.support.clock import Clock
from tests.support.tokens import SECRET_KEY, TOKEN_KEY, make_token


async def _call(app: Any, scope: Scope) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _scope(path: str = "/", cookie: str | None = None, method: str = "GET") -> Scope:
    headers = [(b"host", b"testserver")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1234),
        "server": ("testserver", 443),
    }


@pytest.mark.anyio
async def test_app_set_cookie_survives_and_cache_control_is_replaced(clock: Clock) -> None:
    store = build_store(clock, None)

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        sign_in(HTTPConnection(scope), auth={"token": make_token(clock)})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"set-cookie", b"theme=dark; Path=/"),
                    (b"Cache-Control", b"public, max-age=600"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})

    sent = await _call(AuthKitMiddleware(inner, store=store), _scope())
    headers = sent[0]["headers"]
    cookies = [v for k, v in headers if k == b"set-cookie"]
    assert cookies[0] == b"theme=dark; Path=/"  # appended after the app's own
    assert {c.split(b"=", 1)[0] for c in cookies[1:]} == {
        b"_auth",
        b"_auth_type",
        b"_auth_state",
        b"_auth_csrf",
    }
    assert [v for k, v in headers if k.lower() == b"cache-control"] == [b"no-store"]
    assert sent[1] == {"type": "http.response.body", "body": b"ok"}


@pytest.mark.anyio
async def test_lifespan_and_other_scopes_pass_through_untouched(clock: Clock) -> None:
    seen: list[Scope] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    middleware = AuthKitMiddleware(inner, store=build_store(clock, None))
    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    await middleware(scope, None, None)  # type: ignore[arg-type]
    assert seen == [{"type": "lifespan", "asgi": {"version": "3.0"}}]


def test_lifespan_runs_through_the_middleware(clock: Clock) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append("startup")
        yield
        events.append("shutdown")

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(AuthKitMiddleware, store=build_store(clock, None))
    with TestClient(app):
        assert events == ["startup"]
    assert events == ["startup", "shutdown"]


def test_background_tasks_and_contextvars_pass_through(clock: Clock) -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
    done: list[str] = []

    class SetContext:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            token = request_id.set("abc")
            try:
                await self.app(scope, receive, send)
            finally:
                request_id.reset(token)

    app = FastAPI()

    @app.get("/ctx")
    async def ctx(background: BackgroundTasks, user: OptionalUser) -> dict[str, str]:
        background.add_task(lambda: done.append("background"))
        return {"request_id": request_id.get()}

    app.add_middleware(AuthKitMiddleware, store=build_store(clock, None))
    app.add_middleware(SetContext)  # outermost: the value must cross our middleware
    response = client(app).get("/ctx")
    assert response.json() == {"request_id": "abc"}
    assert done == ["background"]


def test_plain_starlette_app_without_fastapi_layer(clock: Clock) -> None:
    async def home(request: Request) -> PlainTextResponse:
        state = get_auth_state(request)
        return PlainTextResponse(str(state.claims["sub"]) if state.claims else "anonymous")

    async def enter(request: Request) -> PlainTextResponse:
        sign_in(request, auth={"token": make_token(clock, sub="bob")})
        return PlainTextResponse("in")

    app = Starlette(routes=[Route("/", home), Route("/enter", enter)])
    wrapped = AuthKitMiddleware(app, store=build_store(clock, None))
    tc = client(wrapped)  # type: ignore[arg-type]
    assert tc.get("/").text == "anonymous"
    tc.get("/enter")
    assert tc.get("/").text == "bob"


def test_dependencies_without_middleware_fail_clearly() -> None:
    app = FastAPI()

    @app.get("/me")
    async def me(user: CurrentUser) -> Any:
        return user  # pragma: no cover

    with pytest.raises(ConfigurationError, match="add AuthKitMiddleware"):
        TestClient(app).get("/me")


async def _session_for(user: CurrentUser) -> AsyncIterator[str]:
    """A dependency with yield (request scope by default) on the CurrentUser alias."""
    yield f"db-session-for-{user['sub']}"


def test_aliases_mix_with_plain_depends_and_yield_dependencies(clock: Clock) -> None:
    """The aliases declare scope="request": a route may still use the plain
    Depends(current_user) beside them (same user), and a dependency with yield may depend
    on them (FastAPI refuses only function-scoped children of request-scoped ones)."""
    app = build_app(build_store(clock, None))

    @app.get("/both")
    async def both(
        user: CurrentUser,
        plain: Annotated[Any, Depends(current_user)],
        db: Annotated[str, Depends(_session_for)],
    ) -> dict[str, Any]:
        return {"same": user is plain, "db": db}

    tc = client(app)
    assert tc.get("/both").status_code == 401
    login(tc, clock, refresh=None)
    assert tc.get("/both").json() == {"same": True, "db": "db-session-for-alice"}


def test_middleware_requires_a_store() -> None:
    with pytest.raises(ConfigurationError):
        AuthKitMiddleware(FastAPI(), store={"secret_key": "x"})  # type: ignore[arg-type]


# --- dependencies -------------------------------------------------------------------------------


def _dependency_app(clock: Clock, **store_options: Any) -> FastAPI:
    app = build_app(build_store(clock, None, **store_options))

    @app.get("/page")
    async def page(user: Annotated[Any, Depends(require_auth(fallback_path="/login"))]) -> Any:
        return user

    @app.get("/flags")
    async def flags(signed_in: IsAuthenticated, header: AuthHeader) -> dict[str, Any]:
        return {"signed_in": signed_in, "header": header}

    return app


def test_is_authenticated_and_auth_header(clock: Clock) -> None:
    tc = client(_dependency_app(clock))
    assert tc.get("/flags").json() == {"signed_in": False, "header": None}
    login(tc, clock)
    body = tc.get("/flags").json()
    assert body["signed_in"] is True
    assert body["header"] == f"Bearer {tc.cookies['_auth']}"


def test_require_auth_redirects_browsers_and_refuses_api_clients(clock: Clock) -> None:
    tc = client(_dependency_app(clock))
    html = tc.get("/page", headers={"accept": "text/html,*/*"}, follow_redirects=False)
    assert html.status_code == 303
    assert html.headers["location"] == "/login"
    api = tc.get("/page", headers={"accept": "application/json"})
    assert api.status_code == 401
    login(tc, clock, user_state={"name": "A"})
    assert tc.get("/page", headers={"accept": "text/html"}).json() == {"name": "A"}


def test_require_auth_answers_503_not_redirect_while_refresh_is_down(clock: Clock) -> None:
    recorder = Recorder(clock)

    async def down(param: Any) -> Any:
        raise TimeoutError("upstream")

    recorder.behaviour = down
    app = build_app(build_store(clock, recorder))

    @app.get("/page")
    async def page(user: Annotated[Any, Depends(require_auth())]) -> Any:
        return user  # pragma: no cover

    tc = client(app)
    login(tc, clock, ttl=10)
    clock.advance(30)
    response = tc.get("/page", headers={"accept": "text/html"}, follow_redirects=False)
    assert response.status_code == 503


@pytest.mark.parametrize(
    "path",
    [
        "login",
        "//evil.example/login",
        "https://evil.example",
        # Browsers read a backslash as a slash, and drop tabs and newlines from URLs: each of
        # these is //evil.example to them.
        "/\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        # A header injection, were it ever copied into Location unchecked.
        "/login\r\nSet-Cookie: planted=1",
        "/log in",
        "/\x7f",
        # Location is latin-1 on the wire: this one would be a 500 at the first redirect.
        "/\u30ed\u30b0\u30a4\u30f3",
        "",
    ],
)
def test_require_auth_rejects_non_local_fallback(path: str) -> None:
    with pytest.raises(ConfigurationError, match=r"fallback_path .*like '/login'"):
        require_auth(fallback_path=path)


def test_require_auth_rejects_a_fallback_that_is_not_a_str() -> None:
    with pytest.raises(ConfigurationError, match="fallback_path"):
        require_auth(fallback_path=b"/login")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("root_path", "location"),
    [("/app", "/app/login?from=page"), ("", "/login?from=page")],
)
def test_require_auth_redirects_under_the_apps_root_path(
    clock: Clock, root_path: str, location: str
) -> None:
    # Behind a proxy that serves the app under /app (uvicorn --root-path /app), the
    # fallback path is the app's own: the browser must be sent to /app/login.
    app = build_app(build_store(clock, None))

    @app.get("/page")
    async def page(
        user: Annotated[Any, Depends(require_auth(fallback_path="/login?from=page"))],
    ) -> Any:
        return user  # pragma: no cover

    tc = TestClient(app, base_url="https://testserver", root_path=root_path)
    response = tc.get(
        f"{root_path.rstrip('/')}/page", headers={"accept": "text/html"}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == location


@pytest.mark.anyio
@pytest.mark.parametrize("root_path", ["/", "//evil.example", "/\\evil.example"])
async def test_require_auth_never_redirects_off_site_whatever_the_root_path(
    clock: Clock, root_path: str
) -> None:
    # root_path comes from the server's configuration, not from the request; still, "/"
    # (a root_path some servers are given) must not turn "/login" into "//login".
    app = build_app(build_store(clock, None))

    @app.get("/page")
    async def page(user: Annotated[Any, Depends(require_auth())]) -> Any:
        return user  # pragma: no cover

    scope = {**_scope("/page"), "root_path": root_path}
    scope["headers"] = [*scope["headers"], (b"accept", b"text/html")]
    start = (await _call(app, scope))[0]
    assert start["status"] == 303
    assert dict(start["headers"])[b"location"] == b"/login"


@pytest.mark.parametrize("is_async", [False, True])
def test_user_loader_result_is_current_user(clock: Clock, is_async: bool) -> None:
    loads: list[str] = []

    def load(claims: dict[str, Any], state: Any) -> dict[str, Any]:
        loads.append(claims["sub"])
        return {"id": claims["sub"], "state": state}

    async def aload(claims: dict[str, Any], state: Any) -> dict[str, Any]:
        return load(claims, state)

    app = build_app(build_store(clock, None, user_loader=aload if is_async else load))

    @app.get("/page")
    async def page(user: Annotated[Any, Depends(require_auth())], other: CurrentUser) -> Any:
        return {"user": user, "same": user is other}

    tc = client(app)
    login(tc, clock, user_state={"plan": "pro"})
    assert tc.get("/me").json()["user"] == {"id": "alice", "state": {"plan": "pro"}}
    assert tc.get("/public").json()["user"] == {"id": "alice", "state": {"plan": "pro"}}
    answer = tc.get("/page").json()
    assert answer == {"user": {"id": "alice", "state": {"plan": "pro"}}, "same": True}
    assert loads == ["alice", "alice", "alice"]  # once per request, not per dependency use


def test_openapi_lists_the_cookie_scheme_on_protected_operations(clock: Clock) -> None:
    schema = client(_dependency_app(clock)).get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["AuthKitCookie"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "_auth",
        "description": "Access token cookie set by fastapi-authkit (HttpOnly).",
    }
    assert schema["paths"]["/me"]["get"]["security"] == [{"AuthKitCookie": []}]
    assert schema["paths"]["/page"]["get"]["security"] == [{"AuthKitCookie": []}]


# --- bearer mode ---------------------------------------------------------------------------------


def test_header_mode_reads_bearer_tokens_and_sets_no_cookies(clock: Clock) -> None:
    app = build_app(build_store(clock, None, auth_type="header"))

    @app.get("/header")
    async def header(value: Annotated[str | None, Depends(auth_header)]) -> Any:
        return value

    tc = client(app)
    token = make_token(clock)
    response = tc.get("/me", headers={"authorization": f"Bearer {token}"})
    assert response.json()["sub"] == "alice"
    assert response.headers.get_list("set-cookie") == []
    assert tc.get("/header", headers={"authorization": f"bearer  {token}"}).json() == (
        f"Bearer {token}"
    )
    tc.cookies.set("_auth", token)  # cookies mean nothing in header mode
    assert tc.get("/me").status_code == 401
    tc.cookies.clear()
    for bad in (
        f"Basic {token}",
        "Bearer",
        "Bearer ",
        f"Bearer {make_token(clock, ttl=-5)}",
        f"Bearer {make_token(clock, key='other-key' * 4)}",
        "Bearer " + "a" * 9000,
    ):
        assert tc.get("/me", headers={"authorization": bad}).status_code == 401, bad
    doubled = [("authorization", f"Bearer {token}")] * 2
    assert tc.get("/me", headers=doubled).status_code == 401
    non_ascii = {"authorization": "Bearer tök".encode("latin-1")}
    assert tc.get("/me", headers=non_ascii).status_code == 401  # type: ignore[arg-type]
    # POSTs need no CSRF token: a bearer header is not sent by browsers on their own.
    assert tc.post("/write", headers={"authorization": f"Bearer {token}"}).status_code == 200


def test_header_mode_refuses_sign_in_and_sign_out(clock: Clock) -> None:
    tc = client(build_app(build_store(clock, None, auth_type="header")))
    with pytest.raises(ConfigurationError, match="auth_type='cookie'"):
        login(tc, clock)
    with pytest.raises(ConfigurationError, match="auth_type='cookie'"):
        tc.post("/logout")


# --- WebSocket ---------------------------------------------------------------------------------


def _ws_app(clock: Clock) -> FastAPI:
    app = build_app(build_store(clock, None))

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, user: CurrentUser) -> None:
        await websocket.accept()
        await websocket.send_json({"user": user})
        await websocket.close()

    @app.websocket("/ws-login")
    async def ws_login(websocket: WebSocket) -> None:
        sign_in(websocket, auth={"token": make_token(clock, sub="ws")})
        await websocket.accept()
        await websocket.close()

    return app


def test_websocket_current_user(clock: Clock) -> None:
    tc = client(_ws_app(clock))
    with pytest.raises(WebSocketDisconnect) as refused, tc.websocket_connect("/ws"):
        pass  # pragma: no cover
    assert refused.value.code == 1008
    login(tc, clock, user_state={"n": "A"})
    # wss: the client's jar only sends Secure cookies over secure schemes.
    with tc.websocket_connect("wss://testserver/ws") as ws:
        assert ws.receive_json() == {"user": {"n": "A"}}


def test_websocket_sign_in_sets_cookies_on_accept(clock: Clock) -> None:
    tc = client(_ws_app(clock))
    with tc.websocket_connect("/ws-login") as ws:
        names = {v.split(b"=", 1)[0] for k, v in ws.extra_headers if k == b"set-cookie"}
        assert names == {b"_auth", b"_auth_type", b"_auth_state", b"_auth_csrf"}


# --- logging -------------------------------------------------------------------------------------


def test_debug_logs_each_decision(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder(clock)
    tc = client(build_app(build_store(clock, recorder, debug=True)))
    login(tc, clock, ttl=10)
    clock.advance(20)
    with caplog.at_level(logging.DEBUG, logger="fastapi_authkit"):
        tc.get("/me")
        tc.cookies.delete("_auth_state")
        tc.cookies.set("_auth_state", "garbage")
        tc.get("/me")
    assert "access token expired" in caplog.text
    assert "refresh succeeded" in caplog.text
    assert "state cookie rejected" in caplog.text
    assert "no valid state cookie for these tokens" in caplog.text  # so: anonymous


def test_without_debug_no_decision_is_logged(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder(clock)
    tc = client(build_app(build_store(clock, recorder)))
    login(tc, clock, ttl=100)
    clock.advance(50)  # due: refreshed in the token's last minute
    with caplog.at_level(logging.DEBUG, logger="fastapi_authkit"):
        assert tc.get("/me").status_code == 200
    assert len(recorder.calls) == 1
    assert caplog.text == ""


def test_two_differently_configured_apps_coexist(clock: Clock) -> None:
    a = client(build_app(create_store(secret_key=SECRET_KEY, token_key=TOKEN_KEY, clock=clock)))
    b_store = create_store(
        secret_key=SECRET_KEY, token_key="b" * 40, auth_name="other", clock=clock
    )
    b = client(build_app(b_store))
    login(a, clock)
    assert "_auth" in a.cookies
    token = a.cookies["_auth"]
    b.cookies.set("other", token)
    # With b's state cookie for that token: only the token's key can make it anonymous.
    b.cookies.set("other_state", b_store.state_codec.dumps("sid-0", None, token, (token,)))
    assert b.get("/me").status_code == 401  # signed with a's key: not b's
    b.cookies.clear()
    response = b.post("/login", json={"token": make_token(clock, key="b" * 40)})
    assert set(set_cookies(response)) == {"other", "other_type", "other_state", "other_csrf"}
