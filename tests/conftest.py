"""Shared test helpers: an injectable clock and token minting with the test keys."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from fastapi_authkit.stores import MemoryStore, RedisStore, SessionStore

from servers import RedisServer

TOKEN_KEY = "test-token-key-0123456789abcdef0123456789"
SECRET_KEY = "test-secret-key-0123456789abcdef012345678"
T0 = 1_800_000_000.0  # a fixed "now" for tests; 2027-01-15


class Clock:
    """A settable clock: pass ``clock`` to create_store, move it with ``advance``."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(autouse=True)
def kit_logger_as_found() -> Iterator[None]:
    """A store with debug=True sets the kit's logger to DEBUG (and may give it a handler)
    when it is built: put the logger back after each test, so no test sees another's."""
    kit = logging.getLogger("fastapi_authkit")
    saved = (list(kit.handlers), kit.level, kit.propagate)
    yield
    kit.handlers[:], kit.level, kit.propagate = saved
    kit.manager._clear_cache()


def make_token(
    clock: Clock | float,
    *,
    ttl: float = 300,
    sub: str = "alice",
    key: str | bytes = TOKEN_KEY,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
    **claims: Any,
) -> str:
    """An access JWT issued at the clock's now, valid for ``ttl`` seconds."""
    now = clock() if callable(clock) else clock
    payload: dict[str, Any] = {"sub": sub, "iat": int(now), "exp": int(now + ttl), **claims}
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the whole session; tests isolate by key prefix."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, for tests that kill and restart it."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    """Each store in turn; Redis tests share the session's server, isolated by prefix."""
    if request.param == "memory":
        yield MemoryStore()
        return
    server = request.getfixturevalue("redis_server")
    store = RedisStore.from_url(server.url, prefix=f"t-{uuid.uuid4().hex}:")
    yield store
    await store.aclose()
