"""Open WebSockets and event streams end when their session does (issue 26).

Each test opens a connection of a signed-in session, ends the session in one of the ways
the kit knows (sign-out, sign out everywhere, reuse detected, a session revoked by id, the
absolute lifetime) and checks that the kit closes the connection with 1008 within the
bound, and that the app's handler saw its client leave. And the other way round: a
session that is not revoked keeps its sockets through a Redis restart and a pub/sub drop.

Connections run in-process (raw ASGI messages, see ``benchmarks.live_connections``); one
test goes through Starlette's TestClient, whose connections run on an event loop of their
own (the revocation reaches them across threads). Two workers sharing Redis are two apps
in this process, each on a RedisStore of its own: on one redis-server, and on the
session's 3-primary Redis Cluster. Real ``uvicorn --workers 2`` processes are at the end.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import httpx2
import pytest
from fastapi import Depends, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from redis.crc import key_slot
from starlette.requests import ClientDisconnect
from starlette.types import Message

from benchmarks.live_connections import Socket, Stream, cookie_header
from fastapi_authkit import AuthKitMiddleware, create_issuer, create_store, current_user
from fastapi_authkit.errors import ConfigurationError
from fastapi_authkit.stores import MemoryStore, RedisStore, SessionStore
from fastapi_authkit.stores.redis.keys import KeyLayout

from tests.support.clock import Clock
from tests.support.example_server import run_example_app
from tests.support.example_site import Site, site_env
from tests.support.redis_cluster import RedisClusterServers
from tests.support.redis_servers import RedisServer
from tests.support.tokens import SECRET_KEY

pytestmark = pytest.mark.anyio

CurrentUser = Annotated[Any, Depends(current_user)]
INTERVAL = 0.05  # live_check_interval in these tests
BOUND = 2.0  # any close here must come within this (a message takes milliseconds)


def live_app(backend: SessionStore, clock: Clock, **options: Any) -> FastAPI:
    """The built-in issuer (access 60 s, idle 1 h, absolute 2 h, no grace or late replay,
    so a rotated-out refresh token is reuse at once) and: /login?as=, /logout,
    /logout-everywhere, DELETE /sessions/{id}, /me, /ws (echo), /push (sends only),
    /events (server-sent events). ``app.state.left`` lists what handlers saw end."""
    issuer = create_issuer(
        backend=backend,
        signing_key="live-test-signing-key-0123456789abcdef-012",
        access_ttl=60,
        idle_ttl=3600,
        absolute_ttl=7200,
        grace=0,
        late_replay=0,
        clock=clock,
    )
    options.setdefault("live_check_interval", INTERVAL)
    store = create_store(secret_key=SECRET_KEY, token_issuer=issuer, clock=clock, **options)
    app = FastAPI()
    app.add_middleware(AuthKitMiddleware, store=store)
    left: list[Any] = []
    app.state.left = left

    @app.post("/login")
    async def login(request: Request) -> dict[str, bool]:
        await issuer.sign_in(request, request.query_params.get("as", "alice"))
        return {"ok": True}

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, bool]:
        return {"revoked": await issuer.sign_out(request)}

    @app.post("/logout-everywhere")
    async def everywhere(request: Request) -> dict[str, bool]:
        return {"revoked": await issuer.sign_out(request, everywhere=True)}

    @app.delete("/sessions/{session_id}")
    async def revoke(request: Request, session_id: str) -> dict[str, bool]:
        return {"revoked": await issuer.revoke_session(request, session_id)}

    @app.get("/me")
    async def me(request: Request, user: CurrentUser) -> dict[str, Any]:
        claims = request.scope["fastapi_authkit"].claims
        return {"sub": claims["sub"], "sid": claims["sid"]}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, user: CurrentUser) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.send_text(await websocket.receive_text())
        except WebSocketDisconnect as exc:
            left.append(("ws", exc.code))

    @app.websocket("/push")
    async def push(websocket: WebSocket, user: CurrentUser) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.send_text("tick")
                await asyncio.sleep(0.01)
        except WebSocketDisconnect as exc:
            left.append(("push", exc.code))

    @app.get("/events")
    async def events(user: CurrentUser) -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            n = 0
            try:
                while True:
                    yield f"data: {n}\n\n"
                    n += 1
                    await asyncio.sleep(0.01)
            finally:
                left.append(("events", n))

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.get("/download")
    async def download(user: CurrentUser) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            while True:
                yield b"chunk"
                await asyncio.sleep(0.01)

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    return app


class Browser:
    """One browser's cookie jar on an app, driven in-process."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.http = httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="https://testserver"
        )

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def sign_in(self, subject: str = "alice") -> str:
        response = await self.http.post(f"/login?as={subject}")
        assert response.status_code == 200, response.text
        me = await self.http.get("/me")
        return str(me.json()["sid"])

    async def post(self, path: str) -> httpx2.Response:
        return await self.http.post(path, headers=self.csrf)

    @property
    def csrf(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.http.cookies["_auth_csrf"]}

    def cookies(self) -> bytes:
        return cookie_header(self.http.cookies)

    async def socket(self, path: str = "/ws", app: FastAPI | None = None) -> Socket:
        socket = Socket(app or self.app, self.cookies(), path)
        accepted = await socket.open()
        assert accepted["type"] == "websocket.accept", accepted
        return socket


async def echoes(socket: Socket, text: str = "hello") -> bool:
    await socket.say(text)
    message = await socket.next(BOUND)
    return message == {"type": "websocket.send", "text": text, "bytes": None} or (
        message.get("text") == text
    )


async def closed_1008(socket: Socket, within: float = BOUND) -> Message:
    close = await socket.closed(within)
    assert close["code"] == 1008, close
    assert socket.task is not None
    async with asyncio.timeout(BOUND):
        await socket.task  # the handler saw its client leave and returned
    return close


# --- one process, MemoryStore ------------------------------------------------------------


async def test_sign_out_closes_the_sessions_socket(clock: Clock) -> None:
    app = live_app(MemoryStore(), clock)
    async with Browser(app) as browser:
        await browser.sign_in()
        socket = await browser.socket()
        assert await echoes(socket)
        assert (await browser.post("/logout")).json() == {"revoked": True}
        close = await closed_1008(socket, within=0.5)
        assert close["reason"] == "session ended"
    assert app.state.left == [("ws", 1008)]


async def test_a_socket_that_only_sends_is_closed_too(clock: Clock) -> None:
    app = live_app(MemoryStore(), clock)
    async with Browser(app) as browser:
        await browser.sign_in()
        socket = await browser.socket("/push")
        assert (await socket.next())["text"] == "tick"
        await browser.post("/logout")
        await closed_1008(socket)
    # Its next send raised as for a gone client (Starlette: WebSocketDisconnect 1006).
    assert app.state.left == [("push", 1006)]


async def test_sign_out_everywhere_closes_every_socket_of_the_subject_and_no_other(
    clock: Clock,
) -> None:
    app = live_app(MemoryStore(), clock)
    async with Browser(app) as phone, Browser(app) as laptop, Browser(app) as bob:
        await phone.sign_in("alice")
        await laptop.sign_in("alice")
        await bob.sign_in("bob")
        alice_sockets = [await phone.socket(), await laptop.socket(), await laptop.socket()]
        bobs = await bob.socket()
        assert (await phone.post("/logout-everywhere")).json() == {"revoked": True}
        for socket in alice_sockets:
            await closed_1008(socket)
        assert await echoes(bobs)
        await asyncio.sleep(3 * INTERVAL)
        assert await echoes(bobs)
        await bobs.leave()


async def test_reuse_detected_closes_the_familys_sockets(clock: Clock) -> None:
    app = live_app(MemoryStore(), clock)
    async with Browser(app) as browser, Browser(app) as thief:
        await browser.sign_in()
        socket = await browser.socket()
        thief.http.cookies.update(dict(browser.http.cookies))  # a copy of the cookies
        clock.advance(55)  # into the refresh window: the browser's next request rotates
        assert (await browser.http.get("/me")).status_code == 200
        clock.advance(1)  # past the grace period (0 s: the same instant is still within)
        # The thief presents the rotated-out refresh token: reuse, the family is revoked.
        assert (await thief.http.get("/me")).status_code == 401
        await closed_1008(socket)


async def test_revoke_session_by_id_closes_that_session_only(clock: Clock) -> None:
    app = live_app(MemoryStore(), clock)
    async with Browser(app) as phone, Browser(app) as laptop:
        await phone.sign_in("alice")
        laptop_sid = await laptop.sign_in("alice")
        phones, laptops = await phone.socket(), await laptop.socket()
        response = await phone.http.delete(f"/sessions/{laptop_sid}", headers=phone.csrf)
        assert response.json() == {"revoked": True}
        await closed_1008(laptops)
        assert await echoes(phones)
        await phones.leave()


async def test_absolute_lifetime_closes_the_socket(clock: Clock) -> None:
    app = live_app(MemoryStore(), clock)
    async with Browser(app) as browser:
        await browser.sign_in()
        socket = await browser.socket()
        clock.advance(7199)
        await asyncio.sleep(3 * INTERVAL)
        assert await echoes(socket)
        clock.advance(1)
        await closed_1008(socket, within=10 * INTERVAL)


async def test_close_code_is_configurable(clock: Clock) -> None:
    app = live_app(MemoryStore(), clock, close_code=4001)
    async with Browser(app) as browser:
        await browser.sign_in()
        socket = await browser.socket()
        await browser.post("/logout")
        assert (await socket.closed(BOUND))["code"] == 4001


@pytest.mark.parametrize("code", [1000, 1011, 3000, 5000, True, "1008"])
def test_close_code_outside_1008_and_4xxx_is_refused(clock: Clock, code: Any) -> None:
    with pytest.raises(ConfigurationError, match="close_code"):
        create_store(secret_key=SECRET_KEY, token_key=SECRET_KEY, close_code=code)


async def test_token_expiry_closes_the_socket_only_when_asked(clock: Clock) -> None:
    for margin, expect_close in ((None, False), (5.0, True)):
        app = live_app(MemoryStore(), clock, close_at_token_expiry=margin)
        async with Browser(app) as browser:
            await browser.sign_in()
            socket = await browser.socket()
            clock.advance(60 + 4)  # the access token (60 s) expired; within the margin
            await asyncio.sleep(3 * INTERVAL)
            assert await echoes(socket)
            clock.advance(2)
            if expect_close:
                close = await socket.closed(10 * INTERVAL)
                assert (close["code"], close["reason"]) == (1008, "token expired")
            else:
                await asyncio.sleep(3 * INTERVAL)
                assert await echoes(socket)
                await socket.leave()


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_event_stream_ends_on_sign_out(clock: Clock, spec_version: str) -> None:
    """The app sees what a server shows it for a client that left: before ASGI 2.4 its
    sends are dropped and it stops on ``http.disconnect``; from 2.4 a send raises OSError,
    which Starlette turns into ``ClientDisconnect``."""
    app = live_app(MemoryStore(), clock)
    async with Browser(app) as browser:
        await browser.sign_in()
        stream = Stream(app, browser.cookies(), spec_version=spec_version)
        start = await stream.open()
        assert start["status"] == 200
        assert (await stream.next())["more_body"] is True
        await browser.post("/logout")
        await stream.ended(within=BOUND)
        assert stream.task is not None
        async with asyncio.timeout(BOUND):
            # the app saw the client leave and stopped streaming
            await asyncio.wait([stream.task])
        error = stream.task.exception()
        if spec_version == "2.3":
            assert error is None
        else:
            assert isinstance(error, ClientDisconnect), error


async def test_event_streams_are_left_alone_with_end_streams_none(clock: Clock) -> None:
    app = live_app(MemoryStore(), clock, end_streams="none")
    async with Browser(app) as browser:
        await browser.sign_in()
        stream = Stream(app, browser.cookies())
        await stream.open()
        await browser.post("/logout")
        await asyncio.sleep(3 * INTERVAL)
        assert (await stream.next())["more_body"] is True
        assert stream.task is not None
        stream.task.cancel()


@pytest.mark.parametrize("end_streams", ["event-stream", "all"])
async def test_other_streams_end_only_with_end_streams_all(clock: Clock, end_streams: Any) -> None:
    app = live_app(MemoryStore(), clock, end_streams=end_streams)
    async with Browser(app) as browser:
        await browser.sign_in()
        stream = Stream(app, browser.cookies(), "/download")
        await stream.open()
        await browser.post("/logout")
        if end_streams == "all":
            await stream.ended(within=BOUND)
        else:
            await asyncio.sleep(3 * INTERVAL)
            assert (await stream.next())["more_body"] is True
        assert stream.task is not None
        stream.task.cancel()


def test_testclient_socket_closes_on_sign_out_from_another_loop(clock: Clock) -> None:
    """TestClient runs each connection on an event loop of its own: the revocation, made
    by a request on another loop, reaches it across threads."""
    app = live_app(MemoryStore(), clock)
    tc = TestClient(app, base_url="https://testserver")
    assert tc.post("/login?as=alice").status_code == 200
    with tc.websocket_connect("wss://testserver/ws") as ws:
        ws.send_text("hi")
        assert ws.receive_text() == "hi"
        csrf = {"X-CSRF-Token": tc.cookies["_auth_csrf"]}
        assert tc.post("/logout", headers=csrf).json() == {"revoked": True}
        with pytest.raises(WebSocketDisconnect) as ended:
            ws.receive_text()
    assert ended.value.code == 1008


# --- Redis (one server, a 3-primary cluster): two in-process workers ---------------------


def _two_apps(
    url: str, clock: Clock, prefix: str | None = None
) -> tuple[FastAPI, FastAPI, RedisStore, RedisStore]:
    prefix = prefix or f"live-{uuid.uuid4().hex}:"
    a = RedisStore.from_url(url, prefix=prefix)
    b = RedisStore.from_url(url, prefix=prefix)
    return live_app(a, clock), live_app(b, clock), a, b


def _deployment(request: pytest.FixtureRequest, kind: str) -> str:
    """The URL of the session's redis-server (``redis``) or 3-primary cluster (``cluster``,
    settled: another test may have moved a slot, and its epochs may still spread)."""
    if kind == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return server.url
    cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
    cluster.wait_settled()
    return cluster.url


@pytest.mark.parametrize(
    "how", ["logout", "logout-everywhere", "revoke-session", "reuse", "absolute"]
)
@pytest.mark.parametrize("kind", ["redis", "cluster"])
async def test_revocation_on_worker_b_closes_the_socket_on_worker_a(
    request: pytest.FixtureRequest, clock: Clock, kind: str, how: str
) -> None:
    """On one redis-server and on a 3-primary Redis Cluster (where worker A hears the
    revocation on its subscription to the primary that executed it)."""
    app_a, app_b, a, b = _two_apps(_deployment(request, kind), clock)
    try:
        async with Browser(app_a) as on_a, Browser(app_b) as on_b:
            sid = await on_a.sign_in()
            socket = await on_a.socket()
            other = await on_a.socket()  # a second socket of the same session
            on_b.http.cookies.update(dict(on_a.http.cookies))  # same browser, worker B
            if how == "logout":
                await on_b.post("/logout")
            elif how == "logout-everywhere":
                await on_b.post("/logout-everywhere")
            elif how == "revoke-session":
                await on_b.http.delete(f"/sessions/{sid}", headers=on_b.csrf)
            elif how == "reuse":
                clock.advance(55)
                assert (await on_a.http.get("/me")).status_code == 200  # rotates on A
                clock.advance(1)
                assert (await on_b.http.get("/me")).status_code == 401  # old token on B
            else:
                clock.advance(7200)
            within = 10 * INTERVAL if how == "absolute" else 0.5
            await closed_1008(socket, within=within)
            await closed_1008(other, within=within)
    finally:
        await a.aclose()
        await b.aclose()


async def test_sign_out_everywhere_on_a_cluster_closes_every_socket_of_the_subject_and_no_other(
    redis_cluster: RedisClusterServers, clock: Clock
) -> None:
    """Alice's sessions have their families on every primary of the cluster, and sockets
    open on both workers; "sign out everywhere" on worker B closes every one of them (on
    worker A by the messages of three primaries), and none of bob's."""
    redis_cluster.wait_settled()
    prefix = f"live-{uuid.uuid4().hex}:"
    keys = KeyLayout(prefix)
    with redis_cluster.nodes[0].control() as control:
        slots = control.execute_command("CLUSTER", "SLOTS")
    primaries = {int(primary[1]) for _, _, primary, *_ in slots}
    app_a, app_b, a, b = _two_apps(redis_cluster.url, clock, prefix)
    browsers: list[Browser] = []
    try:
        alice: dict[int, Browser] = {}  # one session of alice's per primary, by its port
        for _ in range(60):
            if alice.keys() == primaries:
                break
            browser = Browser(app_a)
            browsers.append(browser)
            sid = await browser.sign_in("alice")
            owner = redis_cluster.owner(key_slot(keys.family(sid).encode())).port
            alice.setdefault(owner, browser)
        assert alice.keys() == primaries, "no session of alice's on some primary"
        bob = Browser(app_a)
        browsers.append(bob)
        await bob.sign_in("bob")
        alices = [
            await browser.socket(app=app) for browser in alice.values() for app in (app_a, app_b)
        ]
        bobs = [await bob.socket(app=app_a), await bob.socket(app=app_b)]
        on_b = Browser(app_b)
        browsers.append(on_b)
        on_b.http.cookies.update(dict(next(iter(alice.values())).http.cookies))
        assert (await on_b.post("/logout-everywhere")).json() == {"revoked": True}
        for socket in alices:
            await closed_1008(socket, within=0.5)
        for socket in bobs:
            assert await echoes(socket)
        await asyncio.sleep(3 * INTERVAL)  # and after sweeps on both workers
        for socket in bobs:
            assert await echoes(socket)
            await socket.leave()
    finally:
        for browser in browsers:
            await browser.http.aclose()
        await a.aclose()
        await b.aclose()


async def test_a_live_sessions_socket_survives_a_pubsub_drop_and_a_redis_restart(
    own_redis: RedisServer, clock: Clock
) -> None:
    app_a, app_b, a, b = _two_apps(own_redis.url, clock)
    try:
        async with Browser(app_a) as on_a, Browser(app_b) as other:
            await on_a.sign_in("alice")
            await other.sign_in("bob")
            socket = await on_a.socket()
            bobs = await other.socket(app=app_a)
            # The subscriptions are dropped (the views reset and re-subscribe).
            with own_redis.control() as control:
                control.client_kill_filter(_type="pubsub")
            await asyncio.sleep(5 * INTERVAL)
            assert await echoes(socket)
            # Redis restarts (the same data, from its append-only file): unreachable
            # meanwhile, through several checks.
            own_redis.kill()
            await asyncio.sleep(6 * INTERVAL)
            assert await echoes(socket)
            own_redis.start()
            await asyncio.sleep(6 * INTERVAL)
            assert await echoes(socket)
            # And a revocation after all that still closes: bob's socket on worker A.
            other.http.cookies.update({})
            other_b = Browser(app_b)
            other_b.http.cookies.update(dict(other.http.cookies))
            for _ in range(50):
                response = await other_b.post("/logout")
                if response.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            await other_b.http.aclose()
            await closed_1008(bobs, within=BOUND)
            assert await echoes(socket)
            await socket.leave()
    finally:
        await a.aclose()
        await b.aclose()


# --- real processes: uvicorn --workers 2 and redis-server ---------------------------------


@pytest.mark.realserver
def test_sign_out_on_worker_b_ends_an_event_stream_open_on_worker_a(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    """A server-sent event stream open on one worker ends when the session is signed out
    on the other."""

    with run_example_app(
        tmp_path, site_env(own_redis), workers=2, app="tests.support.live_worker_app:app"
    ) as base_url:
        site = Site(base_url, own_redis)
        try:
            jar = site.sign_in()
            assert len(site.workers) == 2
            for _ in range(100):
                client = httpx2.Client(base_url=base_url, timeout=10.0)
                stream = client.stream("GET", "/api/events", headers=_cookie(jar))
                response = stream.__enter__()
                assert response.status_code == 200, response.read()
                lines = response.iter_lines()
                first = next(line for line in lines if line.startswith("data:"))
                worker_a = int(first.split()[1])
                if worker_a in site.workers:
                    break
                stream.__exit__(None, None, None)
                client.close()
            worker_b = next(pid for pid in site.workers if pid != worker_a)
            try:
                assert site.post(worker_b, jar, "/logout").json()["revoked"] is True
                signed_out = time.monotonic()
                for _ in lines:  # ends when the kit ends the response
                    assert time.monotonic() - signed_out < BOUND, "the stream is still open"
                assert time.monotonic() - signed_out < BOUND
            finally:
                stream.__exit__(None, None, None)
                client.close()
        finally:
            site.close()


@pytest.mark.realserver
def test_sign_out_on_worker_b_closes_a_websocket_open_on_worker_a(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    """The issue's case on real processes: a socket open on worker A, the sign-out on
    worker B; the client gets the close frame (1008, "session ended") within the bound."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    def signed_out_elsewhere(site: Site, url: str, jar: dict[str, str]) -> ConnectionClosed:
        headers = {**_cookie(jar), "origin": site.base_url}
        with connect(url, additional_headers=headers, open_timeout=10) as socket:
            worker_a = int(str(socket.recv(timeout=10)).split()[0])
            worker_b = next(pid for pid in site.workers if pid != worker_a)
            assert site.post(worker_b, jar, "/logout").json()["revoked"] is True
            signed_out = time.monotonic()
            try:
                while time.monotonic() - signed_out < BOUND:
                    socket.recv(timeout=BOUND)
            except ConnectionClosed as closed:
                assert time.monotonic() - signed_out < BOUND
                return closed
        raise AssertionError("the socket is still open")

    with run_example_app(
        tmp_path, site_env(own_redis), workers=2, app="tests.support.live_worker_app:app"
    ) as base_url:
        site = Site(base_url, own_redis)
        try:
            jar = site.sign_in()
            assert len(site.workers) == 2
            closed = signed_out_elsewhere(site, base_url.replace("http://", "ws://") + "/ws", jar)
            assert closed.rcvd is not None
            assert (closed.rcvd.code, closed.rcvd.reason) == (1008, "session ended")
        finally:
            site.close()


def _cookie(jar: dict[str, str]) -> dict[str, str]:
    return {"cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}
