"""Starting and always stopping the real processes of tests and benchmarks, on loopback."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
STARTUP_TIMEOUT = 30.0


class LaunchError(RuntimeError):
    """A server did not start (a missing binary, an early exit, no answer in time). Under
    pytest it is reported with its message alone (tests/conftest.py)."""


class Service:
    """Something with ``start()`` and ``stop()`` (a server, a set of them); as a context
    manager it is started on entry and always stopped on exit."""

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _ephemeral_ports_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):  # pragma: no cover - not Linux
        return 32768


_PICK = random.SystemRandom()  # not the tests' seeded random: two runs would pick alike


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range. A server stopped and started
    again on its port (a provider's restart, Redis killed and restarted, a failover's
    rejoin) must find it free; a port from that range can meanwhile have become the local
    end of any outgoing connection on the machine (EADDRINUSE, seen under load)."""
    start = _ephemeral_ports_start()
    for _ in range(200):
        port = _PICK.randrange(start // 2, start)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise LaunchError(f"no free loopback port between {start // 2} and {start}")


def wait_until(what: str, check: Callable[[], bool], timeout: float = STARTUP_TIMEOUT) -> float:
    """Poll ``check`` until it holds; raise LaunchError (with ``what``) after ``timeout``
    seconds. Returns the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise LaunchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - started


_PR_SET_PDEATHSIG = 1
try:
    _LIBC: Any = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _LIBC = None


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGTERM when the parent dies, even by
    SIGKILL, so no server outlives the run that started it."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def start_process(
    command: Sequence[str],
    *,
    log: Path,
    env: Mapping[str, str] | None = None,
    own_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in the repository, its output appended to ``log``.

    ``own_session`` (what benchmarks use) starts it in a session of its own: a process group
    that :func:`stop_process` stops whole (a uvicorn supervisor's workers), tied to the
    starting process's life, and, with the kernel's autogroup scheduling, a CPU share of its
    own rather than a part of its starter's (a server and its load generator do not split
    one). Tests start their servers in pytest's session, so that their timings under load
    stay what they were."""
    # The kernel's "parent" is the thread that forked: a server started from a worker
    # thread would die when that thread ends, so only the main thread's children are tied.
    tied = own_session and threading.current_thread() is threading.main_thread()
    with log.open("ab") as out:
        return subprocess.Popen(
            list(command),
            cwd=REPO_ROOT,
            env=dict(env) if env is not None else None,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=own_session,
            preexec_fn=_die_with_parent if tied else None,
        )


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process`` (and its process group when it leads one: a uvicorn supervisor's
    workers): SIGTERM, then SIGKILL for whatever is left."""
    try:
        leads_group = os.getpgid(process.pid) == process.pid
    except ProcessLookupError:  # already gone
        leads_group = False

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if leads_group:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)

    if process.poll() is None:
        send(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            process.wait(timeout=10)
    if leads_group:  # workers that outlived their supervisor are still in its group
        send(signal.SIGKILL)


def start_ready(
    command: Sequence[str],
    *,
    what: str,
    log: Path,
    ready: Callable[[], bool],
    env: Mapping[str, str] | None = None,
    timeout: float = STARTUP_TIMEOUT,
    poll: float = 0.02,
    own_session: bool = False,
) -> subprocess.Popen[bytes]:
    """Start ``command`` (:func:`start_process`) and return it once ``ready()`` holds; if it
    exits first or is not ready within ``timeout`` seconds, stop it and raise LaunchError
    with its log."""
    process = start_process(command, log=log, env=env, own_session=own_session)
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            problem = f"exited with code {process.returncode} before answering"
        elif time.monotonic() > deadline:
            problem = f"did not answer within {timeout:.0f}s"
        else:
            time.sleep(poll)
            continue
        stop_process(process)
        raise LaunchError(f"{what} {problem}:\n{log.read_text(errors='replace')}")
    return process


@contextlib.contextmanager
def running(
    command: Sequence[str],
    *,
    what: str,
    log: Path,
    ready: Callable[[], bool],
    env: Mapping[str, str] | None = None,
    timeout: float = STARTUP_TIMEOUT,
    poll: float = 0.02,
    own_session: bool = False,
) -> Iterator[subprocess.Popen[bytes]]:
    """:func:`start_ready` as a context: the process is always stopped at the end."""
    process = start_ready(
        command,
        what=what,
        log=log,
        ready=ready,
        env=env,
        timeout=timeout,
        poll=poll,
        own_session=own_session,
    )
    try:
        yield process
    finally:
        stop_process(process)
