"""A real redis-server on a loopback port, for tests and benchmarks.

Nothing here skips: a missing binary is a failure with a message saying how to get it
(``bash scripts/test`` and ``bash scripts/bench`` install redis-server when it is missing).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Sequence
from pathlib import Path

import redis

from tests.support.processes import LaunchError, Service, free_port, start_ready, stop_process

# A server whose data need not survive a restart: no append-only file (the last of a
# repeated option wins).
NOT_PERSISTED = ("--appendonly", "no")


def answers(port: int, command: bytes, reply: bytes) -> bool:
    """Whether what listens on ``port`` answers ``command`` (inline) with a reply that
    starts with ``reply``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(command + b"\r\n")
            return sock.recv(16).startswith(reply)
    except OSError:
        return False


def ping(port: int) -> bool:
    """Whether a Redis server (or Sentinel) answers PING on ``port``."""
    return answers(port, b"PING", b"+PONG")


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise LaunchError(
            "redis-server is not installed: run `bash scripts/test` (or `bash scripts/bench`), "
            "which installs it (apt-get install redis-server), or install it yourself"
        )
    return binary


class RedisServer(Service):
    """A redis-server on a loopback port with an append-only file, so that a restart after
    a kill comes back with the same data (as a production Redis with persistence would).
    ``extra`` adds command-line options (cluster mode, replicaof, :data:`NOT_PERSISTED`).
    Its log is ``redis.log`` in ``data_dir``; ``own_session`` as in
    :func:`~tests.support.processes.start_process`. As a context manager it is started and
    always stopped."""

    def __init__(
        self, data_dir: Path, *, extra: Sequence[str] = (), own_session: bool = False
    ) -> None:
        self.binary = redis_binary()
        self.dir = data_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.extra = list(extra)
        self.own_session = own_session
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def control(self) -> redis.Redis:
        """A plain synchronous client for the test's own commands (INFO, CLUSTER ...)."""
        return redis.Redis(port=self.port, socket_timeout=5, decode_responses=True)

    def start(self) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "always"]
        command += ["--save", "", "--protected-mode", "yes"]
        command += self.extra
        self.process = start_ready(
            command,
            what=f"redis-server on port {self.port}",
            log=self.dir / "redis.log",
            ready=lambda: ping(self.port),
            timeout=10,
            own_session=self.own_session,
        )

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def is_primary(self) -> bool:
        """Whether the server answers and takes writes (role master)."""
        try:
            with self.control() as control:
                return bool(control.info("replication")["role"] == "master")
        except redis.RedisError:
            return False

    def signal(self, sig: int) -> None:
        assert self.process is not None, "the server is not running"
        self.process.send_signal(sig)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
            self.process = None
