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

from servers import RedisClusterServers, RedisServer, SentinelSet

TOKEN_KEY = "test-token-key-0123456789abcdef0123456789"
SECRET_KEY = "test-secret-key-0123456789abcdef012345678"
T0 = 1_800_000_000.0  # a fixed "now" for tests; 2027-01-15


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Every async test on asyncio, what uvicorn and the kit run on (anyio before 4.11
    parametrized over every backend it knows, trio included, installed or not)."""
    return "asyncio"


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


@pytest.fixture(scope="module")
def sentinel_set(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSet]:
    """A primary, its replica and Sentinel of the test module's own (its tests fail over
    and kill servers)."""
    servers = SentinelSet(tmp_path_factory.mktemp("sentinel"))
    servers.start()
    yield servers
    servers.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, for tests that kill and restart it."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """One real 3-primary Redis Cluster for the whole session; tests isolate by prefix."""
    cluster = RedisClusterServers(tmp_path_factory.mktemp("cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


def redis_store(
    request: pytest.FixtureRequest, kind: str, label: str = "t", **options: Any
) -> RedisStore:
    """A RedisStore with a fresh prefix on the session's server (``redis``) or cluster
    (``cluster``); ``options`` go to ``RedisStore.from_url``."""
    fixture = "redis_server" if kind == "redis" else "redis_cluster"
    server = request.getfixturevalue(fixture)
    return RedisStore.from_url(server.url, prefix=f"{label}-{uuid.uuid4().hex}:", **options)


async def keys_under(store: RedisStore, prefix: str) -> dict[int, list[bytes]]:
    """Every key under ``prefix`` in ``store``'s deployment, by the port of the primary
    that holds it."""
    found: dict[int, list[bytes]] = {}
    for primary in await store.topology.primaries():
        port = primary.connection_pool.connection_kwargs["port"]
        found[port] = [key async for key in primary.scan_iter(match=f"{prefix}*")]
    return found


@pytest.fixture(params=["memory", "redis", "cluster"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[SessionStore]:
    """Each store in turn: in memory, one real redis-server and a real 3-primary cluster
    (shared by the session, isolated by prefix)."""
    if request.param == "memory":
        yield MemoryStore()
        return
    store = redis_store(request, request.param)
    yield store
    await store.aclose()
