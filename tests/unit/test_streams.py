"""The app's ``send`` (streams.AppSend): cookie writes at a stream's start, and the watch.

The real middleware on the built-in issuer's MemoryStore, with raw ASGI messages
(``benchmarks.live_connections.Stream``); what ends a watched stream in every deployment
is in tests/integration/workers/test_live_revocation.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from benchmarks.live_connections import ORIGIN, Stream, cookie_header
from fastapi_authkit import AuthKitMiddleware, create_issuer, create_store
from fastapi_authkit.stores import MemoryStore

from tests.support.clock import Clock
from tests.support.tokens import SECRET_KEY

pytestmark = pytest.mark.anyio

ACCESS_TTL = 60
BOUND = 2.0  # an end comes within this (it takes milliseconds)


def streaming_app(clock: Clock) -> FastAPI:
    """/login?as=, /logout-everywhere, /events (server-sent events), /raw: a raw ASGI
    event stream whose header name is not lower-case (``app.state.left`` lists the ends it
    saw), and /ws: a WebSocket that returns as soon as it sees its client leave."""
    issuer = create_issuer(
        backend=MemoryStore(),
        signing_key="stream-test-signing-key-0123456789abcdef-012",
        access_ttl=ACCESS_TTL,
        clock=clock,
    )
    store = create_store(
        secret_key=SECRET_KEY, token_issuer=issuer, clock=clock, live_check_interval=0.05
    )
    app = FastAPI()
    app.add_middleware(AuthKitMiddleware, store=store)
    left: list[str] = []
    app.state.left = left

    @app.post("/login")
    async def login(request: Request) -> dict[str, bool]:
        await issuer.sign_in(request, request.query_params.get("as", "alice"))
        return {"ok": True}

    @app.post("/logout-everywhere")
    async def everywhere(request: Request) -> dict[str, bool]:
        return {"revoked": await issuer.sign_out(request, everywhere=True)}

    @app.get("/events")
    async def events() -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            while True:
                yield "data: tick\n\n"
                await asyncio.sleep(0.01)

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def raw(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"Content-Type", b"Text/Event-Stream; charset=utf-8")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            while True:
                await send(
                    {"type": "http.response.body", "body": b"data: x\n\n", "more_body": True}
                )
                await asyncio.sleep(0.01)
        except OSError as exc:
            left.append(type(exc).__name__)

    app.mount("/raw", raw)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            return  # at once: closing what the kit ended is the kit's to have done

    return app


class Browser:
    """One browser's cookie jar on the app, in-process."""

    def __init__(self, app: FastAPI) -> None:
        self.http = httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="https://testserver"
        )

    async def sign_in(self, subject: str = "alice") -> None:
        response = await self.http.post(f"/login?as={subject}")
        assert response.status_code == 200, response.text

    async def post(self, path: str) -> httpx2.Response:
        return await self.http.post(path, headers={"X-CSRF-Token": self.http.cookies["_auth_csrf"]})

    def cookies(self) -> bytes:
        return cookie_header(self.http.cookies)


def set_cookies(start: dict[str, Any]) -> list[bytes]:
    return [value for name, value in start["headers"] if name == b"set-cookie"]


async def test_a_stream_whose_get_refreshes_carries_the_cookies_and_still_ends() -> None:
    """The stream's own request refreshes (its access token expired): the new cookies go
    out with the stream's start, and the stream is still watched."""
    clock = Clock()
    app = streaming_app(clock)
    streaming, other = Browser(app), Browser(app)
    await streaming.sign_in()
    clock.advance(ACCESS_TTL + 1)
    stream = Stream(app, streaming.cookies())
    start = await stream.open()
    assert start["status"] == 200
    assert any(cookie.startswith(b"_auth=") for cookie in set_cookies(start)), start
    assert (await stream.next())["more_body"] is True
    await other.sign_in()
    assert (await other.post("/logout-everywhere")).json() == {"revoked": True}
    await stream.ended(within=BOUND)
    assert stream.task is not None
    async with asyncio.timeout(BOUND):
        await stream.task  # Starlette's StreamingResponse saw its client leave


async def test_a_stream_named_by_a_header_in_any_case_is_watched() -> None:
    """ASGI asks for lower-case header names; an app that sends ``Content-Type`` is
    still recognised as an event stream, and its sends fail as for a gone client."""
    clock = Clock()
    app = streaming_app(clock)
    browser = Browser(app)
    await browser.sign_in()
    stream = Stream(app, browser.cookies(), "/raw/", spec_version="2.4")
    start = await stream.open()
    assert start["status"] == 200
    assert set_cookies(start) == []
    assert (await stream.next())["more_body"] is True
    assert (await browser.post("/logout-everywhere")).json() == {"revoked": True}
    await stream.ended(within=BOUND)
    assert stream.task is not None
    async with asyncio.timeout(BOUND):
        await stream.task
    assert app.state.left == ["ConnectionEnded"]


async def test_a_websocket_ended_with_its_session_is_closed_before_the_app_returns() -> None:
    """What is sent after the application returned is not sent (the server drops the
    connection, without a close frame). A server writes the close over several steps of
    the loop; the kit's 1008 must be out before the application returns, even when the
    app leaves at once on the disconnect the kit gave it."""
    clock = Clock()
    app = streaming_app(clock)
    browser, other = Browser(app), Browser(app)
    await browser.sign_in()
    sent: list[Message] = []
    answered = asyncio.Event()

    async def server_send(message: Message) -> None:
        for _ in range(5):  # a frame written over several steps of the loop
            await asyncio.sleep(0)
        sent.append(message)
        answered.set()

    to_app: asyncio.Queue[Message] = asyncio.Queue()
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "scheme": "wss",
        "http_version": "1.1",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"origin", ORIGIN), (b"cookie", browser.cookies())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 443),
        "subprotocols": [],
    }
    task = asyncio.create_task(app(scope, to_app.get, server_send))
    await to_app.put({"type": "websocket.connect"})
    async with asyncio.timeout(BOUND):
        await answered.wait()
    assert sent[0]["type"] == "websocket.accept", sent
    await other.sign_in()
    assert (await other.post("/logout-everywhere")).json() == {"revoked": True}
    async with asyncio.timeout(BOUND):
        await task
    assert [m["code"] for m in sent if m["type"] == "websocket.close"] == [1008], sent
