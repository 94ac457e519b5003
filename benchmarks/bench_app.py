"""The app the network benchmarks serve with ``uvicorn benchmarks.bench_app:app`` (and that
``storm.py`` also drives in-process through :func:`create_app`).

Routes: ``GET /health`` (public, no auth dependency), ``GET /noop`` (public, a no-op
dependency: what any ``Depends`` costs), ``GET /me`` (``CurrentUser``), ``GET /login``
(signs in as ``?sub=``, default ``alice``, with a fresh random refresh token). The data
routes answer ``{"user": ..., "pid": ...}`` so their bodies are alike.

Environment, read when ``app`` is first accessed:

* ``BENCH_SECRET`` (required): the benchmark process derives the same keys from it, so
  it can mint access tokens (expired ones for storms) the workers accept.
* ``BENCH_REDIS_URL``: share refresh flights across workers through Redis
  (``shared_store=RedisStore``) and count callback calls in Redis.
* ``BENCH_CALLBACK_DELAY``: seconds the refresh callback takes (default 0).
* ``BENCH_REFRESH_INTERVAL``: ``create_refresh(interval=...)`` (default 60; tokens minted
  here live an hour, so refresh is configured but not due).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
import jwt
from fastapi import Depends, FastAPI, Request
from redis.asyncio import Redis

from fastapi_authkit import (
    AuthKitMiddleware,
    RefreshParam,
    RefreshResult,
    create_refresh,
    create_store,
    sign_in,
)
from fastapi_authkit.dependencies import CurrentUser
from fastapi_authkit.stores import RedisStore

CALLS_KEY = "bench:refresh-calls"
ACCESS_TTL = 3600
PID = os.getpid()


@dataclass(frozen=True)
class Settings:
    secret: str
    redis_url: str | None = None
    callback_delay: float = 0.0
    refresh_interval: float = 60.0

    @classmethod
    def from_env(cls) -> Settings:
        secret = os.environ.get("BENCH_SECRET", "")
        if len(secret) < 32:
            raise RuntimeError("BENCH_SECRET must be set to at least 32 characters")
        return cls(
            secret=secret,
            redis_url=os.environ.get("BENCH_REDIS_URL") or None,
            callback_delay=float(os.environ.get("BENCH_CALLBACK_DELAY", "0")),
            refresh_interval=float(os.environ.get("BENCH_REFRESH_INTERVAL", "60")),
        )

    def env(self) -> dict[str, str]:
        """These settings as the environment ``from_env`` reads (for uvicorn workers)."""
        env = {
            "BENCH_SECRET": self.secret,
            "BENCH_CALLBACK_DELAY": str(self.callback_delay),
            "BENCH_REFRESH_INTERVAL": str(self.refresh_interval),
        }
        if self.redis_url:
            env["BENCH_REDIS_URL"] = self.redis_url
        return env


def _derive(secret: str, purpose: str) -> bytes:
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).digest()


def token_key(secret: str) -> bytes:
    return _derive(secret, "access-token")


def mint_access(secret: str, sub: str, exp: float) -> str:
    """An access token the app accepts; ``exp`` in the past gives an expired one."""
    now = int(time.time())
    claims = {"sub": sub, "iat": min(now, int(exp) - 1), "exp": int(exp)}
    return jwt.encode(claims, token_key(secret), algorithm="HS256")


class CallCounter:
    """Counts refresh-callback calls: in Redis when configured (every worker adds to one
    counter), else in this process."""

    def __init__(self, redis_url: str | None) -> None:
        self.local = 0
        self.redis = Redis.from_url(redis_url) if redis_url else None

    async def incr(self) -> None:
        if self.redis is not None:
            await self.redis.incr(CALLS_KEY)
        else:
            self.local += 1

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


async def _nothing() -> None:
    return None


def create_app(settings: Settings) -> FastAPI:
    counter = CallCounter(settings.redis_url)

    async def refresh_api_callback(param: RefreshParam) -> RefreshResult:
        await counter.incr()
        if settings.callback_delay:
            await anyio.sleep(settings.callback_delay)  # the auth server's round trip
        user_state = param.auth_user_state or {}
        return RefreshResult(
            is_success=True,
            new_auth_token=mint_access(
                settings.secret, user_state.get("sub", "alice"), time.time() + ACCESS_TTL
            ),
            new_refresh_token=secrets.token_urlsafe(32),  # rotation, as real servers do
            new_refresh_token_expires_in=86400,
        )

    shared = RedisStore.from_url(settings.redis_url) if settings.redis_url else None
    store = create_store(
        secret_key=_derive(settings.secret, "cookies"),
        token_key=token_key(settings.secret),
        refresh=create_refresh(
            interval=settings.refresh_interval, refresh_api_callback=refresh_api_callback
        ),
        shared_store=shared,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await counter.aclose()
        if shared is not None:
            await shared.aclose()

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(AuthKitMiddleware, store=store)
    app.state.counter = counter

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"user": "anonymous", "pid": PID}

    @app.get("/noop")
    async def noop(_: Annotated[None, Depends(_nothing)]) -> dict[str, Any]:
        return {"user": "anonymous", "pid": PID}

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, Any]:
        return {"user": user["sub"], "pid": PID}

    @app.get("/login")
    async def login(request: Request, sub: str = "alice") -> dict[str, Any]:
        sign_in(
            request,
            auth={
                "token": mint_access(settings.secret, sub, time.time() + ACCESS_TTL),
                "type": "Bearer",
            },
            refresh=secrets.token_urlsafe(32),
            user_state={"sub": sub, "name": "Bench User"},
        )
        return {"user": sub, "pid": PID}

    return app


_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    # ``uvicorn benchmarks.bench_app:app`` builds the app on first access, so importing this
    # module (as the benchmarks do, for mint_access) reads no environment.
    global _app
    if name == "app":
        if _app is None:
            _app = create_app(Settings.from_env())
        return _app
    raise AttributeError(name)
