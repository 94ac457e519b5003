"""The suite's fixtures: a clock, the real Redis deployments, each store in turn, no network."""

from __future__ import annotations

import logging
import socket
import urllib.request
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from fastapi_authkit.stores import MemoryStore, SessionStore

from tests.support.clock import Clock
from tests.support.processes import LaunchError
from tests.support.redis_cluster import RedisClusterServers
from tests.support.redis_sentinel import SentinelSet
from tests.support.redis_servers import RedisServer
from tests.support.redis_stores import redis_store


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Every async test on asyncio, what uvicorn and the kit run on (anyio before 4.11
    parametrized over every backend it knows, trio included, installed or not)."""
    return "asyncio"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A server that did not start is reported by its message (which says why and how to
    fix it), without the launcher's traceback."""
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(LaunchError):
        report.longrepr = str(call.excinfo.value)
    return report


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


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Refuse, and record, every attempt to resolve a name or open a connection."""
    attempts: list[str] = []

    def refuse(what: str) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            attempts.append(what)
            raise OSError(f"network access attempted in a test: {what}")

        return refused

    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "gethostbyname", refuse("gethostbyname"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    monkeypatch.setattr(urllib.request, "urlopen", refuse("urlopen"))
    return attempts
