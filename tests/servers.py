"""Real processes for tests: a redis-server and free loopback ports.

Nothing here skips: a missing binary is a test failure with a message saying how to get it
(``bash scripts/test`` installs redis-server when it is missing).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A redis-server on a loopback port with an append-only file, so that a restart after
    a kill comes back with the same data (as a production Redis with persistence would)."""

    def __init__(self, data_dir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is not installed: run `bash scripts/test`, which installs it "
                "(apt-get install redis-server), or install it yourself",
                pytrace=False,
            )
        self.binary = binary
        self.dir = data_dir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server did not start on port {self.port}", pytrace=False)
            time.sleep(0.02)

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None


@contextmanager
def run_example_app(
    tmp_path: Path,
    env: dict[str, str],
    *,
    workers: int = 1,
    app: str = "example_app.main:app",
    ready_path: str = "/login",
    app_dir: str = ".",
) -> Iterator[str]:
    """Run ``uvicorn example_app.main:app`` (or ``app``; ``--workers N``) on a free loopback
    port and yield its base URL once ``ready_path`` answers 200; the server's output is in
    the failure message if it does not come up, and the process group is always stopped."""
    if importlib.util.find_spec("uvicorn") is None:
        pytest.fail("uvicorn is not installed: pip install -e '.[example]'", pytrace=False)
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHKIT_")}
    full_env.update(env)
    log_path = tmp_path / f"uvicorn-{port}.log"
    base_url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "uvicorn", app, "--app-dir", app_dir]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while True:
                if process.poll() is not None:
                    pytest.fail(
                        f"uvicorn exited with code {process.returncode} before answering:\n"
                        + log_path.read_text(errors="replace"),
                        pytrace=False,
                    )
                try:
                    if httpx2.get(f"{base_url}{ready_path}", timeout=1.0).status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"uvicorn did not answer on {base_url} within {STARTUP_TIMEOUT:.0f}s:\n"
                        + log_path.read_text(errors="replace"),
                        pytrace=False,
                    )
                time.sleep(0.1)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


class CookieKeeper:
    """A browser's cookie store for one site, by hand: name -> (value, expiry)."""

    def __init__(self) -> None:
        self._cookies: dict[str, tuple[str, float]] = {}

    def update(self, response: httpx2.Response) -> dict[str, dict[str, str]]:
        """Apply the response's Set-Cookie headers; return name -> attributes as set."""
        seen: dict[str, dict[str, str]] = {}
        for header in response.headers.get_list("set-cookie"):
            pair, *attributes = header.split(";")
            name, _, value = pair.strip().partition("=")
            attrs = {"value": value}
            for attribute in attributes:
                key, _, attr_value = attribute.strip().partition("=")
                attrs[key.lower()] = attr_value
            seen[name] = attrs
            max_age = int(attrs.get("max-age", "86400"))
            if max_age <= 0:
                self._cookies.pop(name, None)
            else:
                self._cookies[name] = (value, time.monotonic() + max_age)
        return seen

    def values(self) -> dict[str, str]:
        now = time.monotonic()
        return {name: value for name, (value, until) in self._cookies.items() if until > now}

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        values = self.values()
        if values:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in values.items())
        return headers
