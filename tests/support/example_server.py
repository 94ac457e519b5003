"""An ASGI app (the example app by default) served by uvicorn on a loopback port, for tests."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2

from tests.support.processes import LaunchError, free_port, running

# Each worker imports the app (FastAPI, pydantic, redis-py, the kit) before it answers:
# about 2 s of CPU, and over 30 s of wall-clock time for two workers on a busy 2-core
# machine. How fast a server starts is no test's subject; a bound is kept for one that hangs.
STARTUP_TIMEOUT = 120.0
KEEP_ALIVE = 60
# A client whose one connection stays with the worker that accepted it: httpx closes an
# idle connection after 5 s by default, and a request after that opens a new one, to
# whichever worker accepts it (a burst of them all to one: asyncio accepts a whole backlog).
PINNED = httpx2.Limits(max_connections=1, keepalive_expiry=KEEP_ALIVE)


@contextmanager
def run_example_app(
    tmp_path: Path,
    env: dict[str, str],
    *,
    workers: int = 1,
    app: str = "example_app.main:app",
    ready_path: str = "/login",
) -> Iterator[str]:
    """Run ``uvicorn example_app.main:app`` (or ``app``; ``--workers N``) on a free loopback
    port and yield its base URL once ``ready_path`` answers 200; the server's output is in
    the failure message if it does not come up, and the process group is always stopped."""
    if importlib.util.find_spec("uvicorn") is None:
        raise LaunchError("uvicorn is not installed: pip install -e '.[example]'")
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHKIT_")}
    full_env.update(env)
    base_url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "uvicorn", app, "--app-dir", "."]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    # Tests pin a worker by a keep-alive connection it answered (PINNED); uvicorn's default
    # 5 s idle limit can close one between two requests on a busy machine.
    command += ["--timeout-keep-alive", str(KEEP_ALIVE)]

    def ready() -> bool:
        try:
            return httpx2.get(f"{base_url}{ready_path}", timeout=1.0).status_code == 200
        except httpx2.TransportError:
            return False

    log = tmp_path / f"uvicorn-{port}.log"
    with running(
        command,
        what="uvicorn",
        log=log,
        env=full_env,
        ready=ready,
        poll=0.1,
        timeout=STARTUP_TIMEOUT,
    ):
        yield base_url
