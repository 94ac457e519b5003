"""What one open WebSocket costs a worker, and how fast a revocation closes it.

An app on the built-in issuer (MemoryStore) serves ``/ws`` (accept, then echo until the
client leaves). ``--sockets`` sessions are signed in and each opens one WebSocket,
in-process (raw ASGI messages, one event loop): RSS (VmRSS, after a garbage collection) is
read before and after the sockets are open, and the difference divided by their number is
the memory per open socket: the app's handler, its scope and the kit's record of it.

Then ``--revocations`` of those sessions are signed out one at a time, each through the
app (``POST /logout``), and the time from the sign-out's answer to the socket's
``websocket.close`` is taken: p50, p99 and max.

The same is measured with the kit's watching turned off (each variant in a fresh process),
so that the kit's own share shows: its record, the future that ends it and the task that
holds the server's pending ``receive``. Targets: the kit's share at most 4 KiB per open
socket; every close within 100 ms of its sign-out (the view's default ``max_lag``), p99
within 10 ms in one process.

    .venv/bin/python -m benchmarks.live_connections [--sockets 10000] [--revocations 200]

``Socket`` and ``Stream`` drive one WebSocket or streamed response in-process; the tests
use them too.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx2
from fastapi import Depends, FastAPI, Request, WebSocket, WebSocketDisconnect
from starlette.types import ASGIApp, Message

from benchmarks.stats import rss_bytes
from benchmarks.targets import Target, bench_parser, finish
from fastapi_authkit import AuthKitMiddleware, create_issuer, create_store, current_user
from fastapi_authkit.stores import MemoryStore

CurrentUser = Annotated[Any, Depends(current_user)]
SECRET = "live-connections-benchmark-secret-0123456789"
ORIGIN = b"https://testserver"


def cookie_header(cookies: httpx2.Cookies | dict[str, str]) -> bytes:
    return "; ".join(f"{name}={value}" for name, value in dict(cookies).items()).encode()


async def _run(
    app: ASGIApp,
    scope: dict[str, Any],
    to_app: asyncio.Queue[Message],
    from_app: asyncio.Queue[Message],
) -> None:
    await app(scope, to_app.get, from_app.put)


class Socket:
    """One WebSocket client, in-process: the app runs as a task on the current loop."""

    def __init__(self, app: ASGIApp, cookies: bytes, path: str = "/ws") -> None:
        self._app = app
        self._cookies = cookies
        self._path = path
        self.to_app: asyncio.Queue[Message] = asyncio.Queue()
        self.from_app: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def open(self) -> Message:
        """Connect; the app's first answer (``websocket.accept`` or ``websocket.close``)."""
        scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "scheme": "wss",
            "http_version": "1.1",
            "path": self._path,
            "raw_path": self._path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"testserver"),
                (b"origin", ORIGIN),
                (b"cookie", self._cookies),
            ],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 443),
            "subprotocols": [],
        }
        self.task = asyncio.create_task(_run(self._app, scope, self.to_app, self.from_app))
        await self.to_app.put({"type": "websocket.connect"})
        return await self.from_app.get()

    async def next(self, within: float = 5.0) -> Message:
        async with asyncio.timeout(within):
            return await self.from_app.get()

    async def say(self, text: str) -> None:
        await self.to_app.put({"type": "websocket.receive", "text": text})

    async def closed(self, within: float = 5.0) -> Message:
        """The ``websocket.close`` the app (or the kit) sends, skipping other messages."""
        async with asyncio.timeout(within):
            while True:
                message = await self.from_app.get()
                if message["type"] == "websocket.close":
                    return message

    async def leave(self) -> None:
        await self.to_app.put({"type": "websocket.disconnect", "code": 1001})
        if self.task is not None:
            await self.task


class Stream:
    """One streamed response to a GET, in-process."""

    def __init__(
        self, app: ASGIApp, cookies: bytes, path: str = "/events", spec_version: str = "2.3"
    ) -> None:
        self._app = app
        self._cookies = cookies
        self._path = path
        self._spec_version = spec_version
        self.to_app: asyncio.Queue[Message] = asyncio.Queue()
        self.from_app: asyncio.Queue[Message] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def open(self) -> Message:
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": self._spec_version},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "https",
            "path": self._path,
            "raw_path": self._path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"testserver"), (b"cookie", self._cookies)],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 443),
        }
        self.task = asyncio.create_task(_run(self._app, scope, self.to_app, self.from_app))
        return await self.next()

    async def next(self, within: float = 5.0) -> Message:
        async with asyncio.timeout(within):
            return await self.from_app.get()

    async def ended(self, within: float = 5.0) -> int:
        """Wait for the end of the body; how many chunks came before it."""
        chunks = 0
        async with asyncio.timeout(within):
            while True:
                message = await self.from_app.get()
                if not message.get("more_body", False):
                    return chunks
                chunks += 1


def live_app(backend: Any = None, **options: Any) -> FastAPI:
    """An app on the built-in issuer: /login?as=<subject>, /logout, /ws (echo)."""
    issuer = create_issuer(
        backend=backend if backend is not None else MemoryStore(),
        signing_key="live-benchmark-signing-key-0123456789abcdef",
    )
    store = create_store(secret_key=SECRET, token_issuer=issuer, **options)
    app = FastAPI()
    app.add_middleware(AuthKitMiddleware, store=store)

    @app.post("/login")
    async def login_route(request: Request) -> dict[str, bool]:
        await issuer.sign_in(request, request.query_params.get("as", "alice"))
        return {"ok": True}

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, bool]:
        return {"revoked": await issuer.sign_out(request)}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, user: CurrentUser) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.send_text(await websocket.receive_text())
        except WebSocketDisconnect:
            pass

    return app


async def _signed_in(http: httpx2.AsyncClient, subject: str) -> bytes:
    http.cookies.clear()
    response = await http.post(f"/login?as={subject}")
    assert response.status_code == 200, response.text
    return cookie_header(http.cookies)


async def _signed_in_once(app: FastAPI) -> None:
    """One request, so that Starlette builds the middleware stack."""
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="https://testserver") as http:
        await _signed_in(http, "warm-up")


async def _sockets(app: FastAPI, n: int) -> AsyncIterator[tuple[Socket, dict[str, str]]]:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="https://testserver") as http:
        for i in range(n):
            cookies = await _signed_in(http, f"user{i}")
            jar = dict(http.cookies)
            socket = Socket(app, cookies)
            accepted = await socket.open()
            assert accepted["type"] == "websocket.accept", accepted
            yield socket, jar


def unwatched(app: FastAPI) -> None:
    """Turn the kit's watching of open connections off in ``app`` (built already): the
    baseline that isolates what the kit's records cost."""
    layer: Any = app.middleware_stack
    while layer is not None and not isinstance(layer, AuthKitMiddleware):
        layer = getattr(layer, "app", None)
    assert layer is not None
    layer._live = None


async def _open(app: FastAPI, sockets: int) -> tuple[list[tuple[Socket, dict[str, str]]], float]:
    """Open ``sockets`` sockets (after 50 to warm up); RSS growth per socket."""
    opened: list[tuple[Socket, dict[str, str]]] = []
    async for pair in _sockets(app, 50):
        opened.append(pair)
    gc.collect()
    before = rss_bytes()
    async for pair in _sockets(app, sockets):
        opened.append(pair)
    gc.collect()
    return opened, (rss_bytes() - before) / sockets


async def _close_all(opened: list[tuple[Socket, dict[str, str]]]) -> None:
    for socket, _ in opened:
        if socket.task is not None and not socket.task.done():
            await socket.leave()


async def measure(sockets: int, revocations: int, *, watched: bool) -> dict[str, Any]:
    """In this process: RSS per open socket, and (watched) the close latencies."""
    app = live_app()
    if not watched:
        await _signed_in_once(app)
        unwatched(app)
    opened, per_socket = await _open(app, sockets)
    latencies: list[float] = []
    if watched:
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="https://testserver") as http:
            for socket, jar in opened[50 : 50 + revocations]:
                http.cookies.clear()
                http.cookies.update(jar)
                headers = {"X-CSRF-Token": jar["_auth_csrf"]}
                response = await http.post("/logout", headers=headers)
                assert response.status_code == 200, response.text
                signed_out = time.perf_counter()
                close = await socket.closed(within=5.0)
                latencies.append(time.perf_counter() - signed_out)
                assert close["code"] == 1008, close
    await _close_all(opened)
    return {"per_socket": per_socket, "latencies": latencies}


def _in_subprocess(sockets: int, revocations: int, variant: str) -> dict[str, Any]:
    # Each variant in a fresh process: memory one run freed would flatter the next.
    command = [sys.executable, "-m", "benchmarks.live_connections", "--variant", variant]
    command += ["--sockets", str(sockets), "--revocations", str(revocations)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def run(sockets: int, revocations: int) -> list[Target]:
    base = _in_subprocess(sockets, revocations, "unwatched")["per_socket"]
    watched = _in_subprocess(sockets, revocations, "watched")
    per_socket, latencies = watched["per_socket"], sorted(watched["latencies"])
    kit = per_socket - base
    print(
        f"{sockets} open sockets: RSS {per_socket:.0f} bytes per socket (handler task, "
        f"scope, session, the kit's record); {base:.0f} with the kit not watching: the "
        f"kit's share {kit:.0f} bytes per socket"
    )
    p50 = statistics.median(latencies)
    p99 = latencies[max(0, math.ceil(len(latencies) * 0.99) - 1)]
    worst = latencies[-1]
    print(
        f"{len(latencies)} sign-outs: close after p50 {p50 * 1e3:.2f} ms, "
        f"p99 {p99 * 1e3:.2f} ms, max {worst * 1e3:.2f} ms"
    )
    return [
        Target(
            "the kit's memory per open socket",
            kit <= 4096,
            f"{kit:.0f} bytes (target ≤ 4096; {per_socket:.0f} bytes for the whole socket)",
        ),
        Target("p99 close latency", p99 <= 0.010, f"{p99 * 1e3:.2f} ms (target ≤ 10 ms)"),
        Target("max close latency", worst <= 0.100, f"{worst * 1e3:.2f} ms (target ≤ 100 ms)"),
    ]


def main() -> None:
    parser = bench_parser(__doc__ or "")
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--revocations", type=int, default=200)
    parser.add_argument("--variant", choices=("watched", "unwatched"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    revocations = min(args.revocations, args.sockets)
    if args.variant is not None:
        result = asyncio.run(measure(args.sockets, revocations, watched=args.variant == "watched"))
        print(json.dumps(result))
        return
    targets = run(args.sockets, revocations)
    finish(targets, args.json)


if __name__ == "__main__":
    main()
