"""The app the revocation benchmark serves with ``uvicorn benchmarks.issuer_app:app``: the
kit as its own auth server (the built-in issuer) on a ``RedisStore``.

Routes: ``GET /health`` (public), ``GET /login?sub=`` (signs in as ``sub``), ``GET /me``
(``CurrentUser``), ``POST /logout`` and ``POST /logout-everywhere`` (with the CSRF header).
The data routes answer ``{"user": ..., "pid": ...}``. The WebSocket ``/ws``
(``CurrentUser``) sends ``"<pid> <n>"`` every 50 ms, the first at once, until the client
leaves or the kit closes it with its session (``live_close_latency.py``).

Environment, read when ``app`` is first accessed: ``BENCH_SECRET`` (required),
``BENCH_REDIS_URL`` (required), ``BENCH_ACCESS_TTL`` (default 60), ``BENCH_IDLE_TTL``
(default 3600), ``BENCH_ABSOLUTE_TTL`` (default 7200), ``BENCH_GRACE`` (default 0: a
rotated-out refresh token presented again is reuse at once), ``BENCH_REFRESH_INTERVAL``
(default 0.1: refresh only in the last 100 ms of an access token's life),
``BENCH_WAIT_REPLICAS`` (default 0: the store's ``wait_replicas``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect

from fastapi_authkit import AuthKitMiddleware, create_issuer, create_refresh, create_store
from fastapi_authkit.dependencies import CurrentUser
from fastapi_authkit.stores import RedisStore

PID = os.getpid()


def create_app(env: dict[str, str]) -> FastAPI:
    secret = env["BENCH_SECRET"]
    backend = RedisStore.from_url(
        env["BENCH_REDIS_URL"], wait_replicas=int(env.get("BENCH_WAIT_REPLICAS", "0"))
    )
    issuer = create_issuer(
        backend=backend,
        signing_key=f"{secret}-access-token-signing",
        access_ttl=float(env.get("BENCH_ACCESS_TTL", "60")),
        idle_ttl=float(env.get("BENCH_IDLE_TTL", "3600")),
        absolute_ttl=float(env.get("BENCH_ABSOLUTE_TTL", "7200")),
        grace=float(env.get("BENCH_GRACE", "0")),
    )
    store = create_store(
        secret_key=f"{secret}-cookies",
        token_issuer=issuer,
        refresh=create_refresh(
            interval=float(env.get("BENCH_REFRESH_INTERVAL", "0.1")),
            refresh_api_callback=issuer.refresh,
            grace_period=issuer.grace,
        ),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await backend.aclose()

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(AuthKitMiddleware, store=store)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"user": None, "pid": PID}

    @app.get("/login")
    async def login(request: Request, sub: str = "alice") -> dict[str, Any]:
        await issuer.sign_in(request, sub, user_state={"sub": sub})
        return {"user": sub, "pid": PID}

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, Any]:
        return {"user": user["sub"], "pid": PID}

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, Any]:
        return {"revoked": await issuer.sign_out(request), "pid": PID}

    @app.post("/logout-everywhere")
    async def everywhere(request: Request) -> dict[str, Any]:
        return {"revoked": await issuer.sign_out(request, everywhere=True), "pid": PID}

    @app.websocket("/ws")
    async def socket(websocket: WebSocket, user: CurrentUser) -> None:
        await websocket.accept()
        n = 0
        try:
            while True:
                await websocket.send_text(f"{PID} {n}")
                n += 1
                await asyncio.sleep(0.05)
        except (WebSocketDisconnect, OSError):  # the client left, or the kit ended the session
            return

    return app


_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    # Built on first access, so importing this module reads no environment.
    global _app
    if name == "app":
        if _app is None:
            _app = create_app(dict(os.environ))
        return _app
    raise AttributeError(name)
