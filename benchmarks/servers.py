"""The real servers a benchmark starts in its working directory: the app under uvicorn, and
Redis (tests.support's launchers)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.http_client import http_get

from tests.support.processes import REPO_ROOT, STARTUP_TIMEOUT, free_port, running
from tests.support.redis_cluster import RedisClusterServers
from tests.support.redis_sentinel import SentinelSet
from tests.support.redis_servers import NOT_PERSISTED, RedisServer

# Each Redis deployment below is a context manager (started, always stopped), in a session
# of its own (tests.support.processes.start_process), its data not persisted.


def redis_server(directory: Path) -> RedisServer:
    """One redis-server."""
    return RedisServer(directory, extra=NOT_PERSISTED, own_session=True)


def redis_cluster(directory: Path) -> RedisClusterServers:
    """A Redis Cluster of three primaries."""
    return RedisClusterServers(directory, own_session=True)


def redis_sentinel(directory: Path, **options: Any) -> SentinelSet:
    """A primary, replicas and Sentinels; ``options`` go to :class:`SentinelSet`."""
    return SentinelSet(directory, own_session=True, **options)


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"authkit-bench-{prefix}-") as path:
        yield Path(path)


@dataclass(frozen=True)
class Server:
    port: int
    log: Path


@contextlib.contextmanager
def uvicorn_server(
    app_ref: str,
    *,
    directory: Path,
    env: Mapping[str, str],
    workers: int = 1,
    ready_path: str = "/health",
) -> Iterator[Server]:
    """``uvicorn app_ref`` on a free loopback port (asyncio loop, h11, no access log),
    ready when ``ready_path`` answers 200 from ``workers`` distinct processes (its JSON
    carries ``pid``); always stopped, workers included."""
    port = free_port()
    # benchmarks.serve is uvicorn's CLI with TCP_NODELAY kept under --workers (see there).
    command = [sys.executable, "-m", "benchmarks.serve", app_ref, "--host", "127.0.0.1"]
    command += ["--port", str(port), "--loop", "asyncio", "--http", "h11", "--no-access-log"]
    command += ["--log-level", "warning", "--timeout-keep-alive", "120"]
    if workers > 1:
        command += ["--workers", str(workers)]
    log = directory / f"uvicorn-{port}.log"
    # The repository first; a PYTHONPATH of the caller's (extra packages) after it.
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    full_env = {**os.environ, **env, "PYTHONPATH": path}
    pids: set[int] = set()
    deadline = time.monotonic() + STARTUP_TIMEOUT

    def ready() -> bool:
        with contextlib.suppress(OSError, TimeoutError, asyncio.IncompleteReadError):
            response = asyncio.run(asyncio.wait_for(http_get(port, ready_path), 1.0))
            if response.status == 200:
                pids.add(int(response.json()["pid"]))
        # Serving, but the kernel kept handing connections to fewer workers: go on.
        return len(pids) >= workers or (bool(pids) and time.monotonic() > deadline)

    with running(
        command, what="uvicorn", log=log, env=full_env, ready=ready, poll=0.05, own_session=True
    ):
        yield Server(port, log)
