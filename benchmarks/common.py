"""What the benchmarks share: driving an ASGI app in-process, interleaved timing rounds,
targets and their PASS/FAIL lines, session cookies, and the real processes (uvicorn,
redis-server) that network benchmarks start and always stop.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import gc
import hashlib
import hmac
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message

from fastapi_authkit import AuthState, sign_in
from fastapi_authkit.config import AuthStore
from fastapi_authkit.state import SCOPE_KEY

REPO_ROOT = Path(__file__).resolve().parent.parent
TIMES = "\u00d7"  # the multiplication sign (ruff's RUF001 would take a literal one for an x)

Headers = list[tuple[bytes, bytes]]


# --- targets ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One goal a benchmark is held to. ``passed`` is None when it could not be measured."""

    name: str
    passed: bool | None
    detail: str

    @property
    def status(self) -> str:
        return "SKIP" if self.passed is None else ("PASS" if self.passed else "FAIL")

    def line(self) -> str:
        return f"{self.status}  {self.name}: {self.detail}"


def ratio_target(
    name: str, value: float | None, op: Literal["<=", ">="], limit: float, *, why: str = ""
) -> Target:
    """A target on a ratio, e.g. ``ratio_target("x vs y", 1.3, "<=", 1.1)``."""
    if value is None:
        return Target(name, None, why or "not measured")
    passed = value <= limit if op == "<=" else value >= limit
    sign = "≤" if op == "<=" else "≥"
    return Target(name, passed, f"{value:.2f}{TIMES} (target {sign} {limit:.2f}{TIMES})")


def print_targets(targets: Sequence[Target]) -> None:
    print("\ntargets:")
    for target in targets:
        print(f"  {target.line()}")


def bench_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", type=Path, help="also write the targets to this file")
    return parser


def finish(targets: Sequence[Target], json_path: Path | None) -> None:
    """Print the targets and hand them to run_all. A FAILed target is a result, not an
    error: the benchmark itself still exits 0."""
    print_targets(targets)
    if json_path is not None:
        json_path.write_text(json.dumps([asdict(t) for t in targets]))


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that every ``finally`` (servers, redis) runs."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


# --- statistics --------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median of per-round ratios: each round's chunks ran back to back, so pairing them
    cancels most of the drift in machine load that a ratio of medians would keep."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


def rss_bytes() -> int:
    """Current resident set size (VmRSS), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0  # pragma: no cover - not Linux


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def mib(value: float) -> str:
    return f"{value / 2**20:.1f} MiB"


class UnexpectedRefresh:
    """The refresh callback of a steady-state run: it must never be called. It counts, so
    the benchmark can check afterwards (a callback that raised would go unnoticed: the old
    token is still valid, so the request still succeeds)."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, param: object) -> object:
        self.calls += 1
        raise RuntimeError("a steady-state benchmark request refreshed")

    def check(self, what: str) -> None:
        if self.calls:
            raise RuntimeError(f"{what}: {self.calls} refreshes in a steady-state run")


# --- tokens and cookies -------------------------------------------------------------------------


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


_HS256_HEADER = _b64(b'{"alg":"HS256","typ":"JWT"}')


def mint_hs256(claims: Mapping[str, Any], key: bytes) -> str:
    """An HS256 JWT exactly as PyJWT writes it, ~10x faster: 100,000 tokens take about a
    second instead of several. Only benchmarks mint this way; the kit verifies with PyJWT."""
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = _HS256_HEADER + b"." + payload
    signature = _b64(hmac.new(key, signing_input, hashlib.sha256).digest())
    return (signing_input + b"." + signature).decode()


def cookie_header(cookies: Mapping[str, str]) -> bytes:
    return "; ".join(f"{name}={value}" for name, value in cookies.items()).encode()


def request_headers(cookies: Mapping[str, str] | None = None) -> Headers:
    headers: Headers = [(b"host", b"testserver"), (b"accept", b"application/json")]
    if cookies:
        headers.append((b"cookie", cookie_header(cookies)))
    return headers


def parse_set_cookies(values: Sequence[bytes | str]) -> dict[str, str]:
    """Set-Cookie values to ``{name: value}`` (a deletion maps to "")."""
    cookies = {}
    for raw in values:
        text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
        name, _, rest = text.partition("=")
        value = rest.split(";", 1)[0]
        cookies[name.strip()] = "" if "Max-Age=0" in text else value
    return cookies


def session_cookies(
    store: AuthStore,
    token: str,
    *,
    refresh: str | None = None,
    user_state: Any = None,
) -> dict[str, str]:
    """The cookies a browser holds after ``sign_in``, produced by the kit's own public
    ``sign_in`` on a bare connection (no app or route needed)."""
    state = AuthState(store)
    sign_in(
        HTTPConnection({"type": "http", SCOPE_KEY: state}),
        auth={"token": token, "type": "Bearer"},
        refresh=refresh,
        user_state=user_state,
    )
    return parse_set_cookies(state.pending_cookies())


# --- driving an ASGI app in-process -------------------------------------------------------------

_REQUEST: Message = {"type": "http.request", "body": b"", "more_body": False}
_DISCONNECT: Message = {"type": "http.disconnect"}


def http_scope(path: str, headers: Headers, method: str = "GET") -> dict[str, Any]:
    """An HTTP scope as uvicorn's h11 protocol builds it, ``state`` included (uvicorn sends
    a copy of the lifespan state with every request; the key count matters: the scope dict
    grows as the stack adds its keys, and a benchmark scope one key short would make
    whichever stack adds the 22nd key pay a dict resize a real server never causes)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("testserver", 443),
        "client": ("127.0.0.1", 50000),
        # https, as in production (behind a TLS-terminating proxy the server trusts): the
        # kit's Secure cookies over http to a non-local host would rightly warn.
        "scheme": "https",
        "method": method,
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "state": {},
    }


class Exchange:
    """One request/response through the ASGI callable, with a server's receive(): the body
    once, then http.disconnect only after the response is complete."""

    __slots__ = ("body", "done", "finished", "headers", "keep", "requested", "status")

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep
        self.requested = False
        self.finished = False
        self.done: asyncio.Event | None = None
        self.status = 0
        self.headers: Headers = []
        self.body = b""

    async def receive(self) -> Message:
        if not self.requested:
            self.requested = True
            return _REQUEST
        if not self.finished:
            self.done = self.done or asyncio.Event()
            await self.done.wait()
        return _DISCONNECT

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.status = message["status"]
            if self.keep:
                self.headers = list(message.get("headers", ()))
        elif kind == "http.response.body":
            if self.keep:
                self.body += message.get("body", b"")
            if not message.get("more_body", False):
                self.finished = True
                if self.done is not None:
                    self.done.set()

    def set_cookies(self) -> dict[str, str]:
        return parse_set_cookies([v for k, v in self.headers if k == b"set-cookie"])

    def json(self) -> Any:
        return json.loads(self.body)


async def call(app: ASGIApp, path: str, headers: Headers, method: str = "GET") -> Exchange:
    """One request, keeping the response's headers and body."""
    exchange = Exchange(keep=True)
    await app(http_scope(path, headers, method), exchange.receive, exchange.send)
    return exchange


async def drive(
    app: ASGIApp, path: str, header_sets: Sequence[Headers], n: int, start: int = 0
) -> tuple[float, Counter[int]]:
    """Send ``n`` sequential GETs, cycling through ``header_sets`` from index ``start``;
    return (microseconds per request, status counts).

    Every :data:`YIELD_EVERY` requests the event loop gets a turn, as a server's loop has
    between requests (it reads the next one from a socket): background tasks (the kit's
    revocation subscriber and its heartbeats) run as they would under a server. A request
    that needs no I/O never yields by itself, so without this they would never run. Every
    variant pays it alike (about 0.1 µs a request)."""
    statuses: Counter[int] = Counter()
    template = http_scope(path, [])
    count = len(header_sets)
    begin = time.perf_counter()
    for i in range(start, start + n):
        exchange = Exchange()
        await app({**template, "headers": header_sets[i % count]}, exchange.receive, exchange.send)
        statuses[exchange.status] += 1
        if not i % YIELD_EVERY:
            await asyncio.sleep(0)
    return (time.perf_counter() - begin) / n * 1e6, statuses


YIELD_EVERY = 64


def expect_only(statuses: Counter[int], status: int, what: str) -> None:
    if set(statuses) != {status}:
        raise RuntimeError(f"{what}: expected only {status} responses, got {dict(statuses)}")


Chunk = Callable[[int], Awaitable[float]]


async def interleaved(
    variants: Mapping[str, Chunk],
    *,
    rounds: int,
    chunk_seconds: float,
    warmup: int = 300,
    max_chunk: int = 50_000,
) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Time every variant in ``rounds`` rounds of one chunk each, the order rotating from
    round to round, so slow drifts in machine load hit every variant alike.

    A variant is ``async (n) -> microseconds per request``. Chunk sizes are calibrated
    from a warm-up so that each chunk takes about ``chunk_seconds``.
    """
    sizes = {}
    for name, run in variants.items():
        await run(warmup // 3)  # first calls build caches (routes, dependency graphs)
        us = await run(warmup)
        sizes[name] = max(50, min(max_chunk, int(chunk_seconds * 1e6 / us)))
    results: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            results[name].append(await variants[name](sizes[name]))
    return results, sizes


# --- real processes -----------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
try:
    _LIBC: Any = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _LIBC = None


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGTERM when the benchmark process dies,
    even by SIGKILL, so no server outlives its benchmark."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Stop ``process`` and its process group (a uvicorn supervisor's workers): SIGTERM,
    then SIGKILL for whatever is left."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    # Workers that outlived their supervisor are still in its group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def managed_process(
    command: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``command`` in its own process group (output to ``log``); always stop it."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(command),
            cwd=REPO_ROOT,
            env=dict(env) if env is not None else None,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # one prctl() call between fork and exec
        )
    try:
        yield process
    finally:
        stop_process(process)


@contextlib.contextmanager
def workdir(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"authkit-bench-{prefix}-") as path:
        yield Path(path)


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _wait(what: str, check: Callable[[], bool], *, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.02)


@contextlib.contextmanager
def _redis_process(
    directory: Path, *, extra: Sequence[str] = (), sentinel: bool = False
) -> Iterator[int]:
    """One redis-server (or Sentinel) on a free loopback port, in its own ``directory``
    (no persistence); yields the port once it answers PING."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = directory / "redis.log"
    if sentinel:
        conf = directory / "sentinel.conf"
        conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {directory}\n" + "".join(extra))
        command = [binary, str(conf), "--sentinel"]
    else:
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--dir", str(directory), "--protected-mode", "yes"]
        command += list(extra)
    with managed_process(command, log=log) as process:
        deadline = time.monotonic() + 10
        while not _redis_ping(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start:\n{log.read_text()}")
            time.sleep(0.02)
        yield port


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A throwaway redis-server on a free loopback port (no persistence); yields its URL."""
    with _redis_process(directory) as port:
        yield f"redis://127.0.0.1:{port}/0"


@contextlib.contextmanager
def redis_cluster(directory: Path, size: int = 3) -> Iterator[str]:
    """A throwaway Redis Cluster of ``size`` primaries on loopback (slots split evenly);
    yields its ``redis+cluster://`` URL once every node reports the cluster ok."""
    import redis  # the sync client, for setting it up

    with contextlib.ExitStack() as stack:
        nodes = []  # (port, bus port)
        for i in range(size):
            bus = free_port()
            extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            extra += ["--cluster-port", str(bus), "--cluster-node-timeout", "5000"]
            port = stack.enter_context(_redis_process(directory / f"node{i}", extra=extra))
            nodes.append((port, bus))
        for i, (port, _) in enumerate(nodes):
            with redis.Redis(port=port) as control:
                first, last = 16384 * i // size, 16384 * (i + 1) // size - 1
                control.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
                if i:  # the bus port is not port + 10000 here, so MEET is told it
                    control.execute_command(
                        "CLUSTER", "MEET", "127.0.0.1", nodes[0][0], nodes[0][1]
                    )

        def formed() -> bool:
            for port, _ in nodes:
                with redis.Redis(port=port, decode_responses=True) as control:
                    info = control.execute_command("CLUSTER", "INFO")
                if "cluster_state:ok" not in info or f"cluster_known_nodes:{size}" not in info:
                    return False
            return True

        _wait("the cluster to form", formed)
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port, _ in nodes)


SENTINEL_SERVICE = "authkit"


@contextlib.contextmanager
def redis_sentinel(directory: Path) -> Iterator[str]:
    """A throwaway primary, its replica and one Sentinel watching them, on loopback;
    yields the ``redis+sentinel://`` URL once Sentinel names the primary and sees the
    replica."""
    import redis

    with contextlib.ExitStack() as stack:
        primary = stack.enter_context(_redis_process(directory / "primary"))
        extra = ["--replicaof", "127.0.0.1", str(primary), "--repl-diskless-sync-delay", "0"]
        replica = stack.enter_context(_redis_process(directory / "replica", extra=extra))
        monitor = [
            f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {primary} 1\n",
            f"sentinel down-after-milliseconds {SENTINEL_SERVICE} 5000\n",
        ]
        port = stack.enter_context(
            _redis_process(directory / "sentinel", extra=monitor, sentinel=True)
        )

        def watching() -> bool:
            with redis.Redis(port=port, decode_responses=True) as sentinel:
                replicas = sentinel.sentinel_slaves(SENTINEL_SERVICE)
            return any(r["port"] == replica and not r["is_sdown"] for r in replicas)

        _wait("Sentinel to watch the replica", watching)
        yield f"redis+sentinel://127.0.0.1:{port}/{SENTINEL_SERVICE}"


@dataclass(frozen=True)
class SentinelGroup:
    """Data nodes (the primary first, as started) and the Sentinels watching them."""

    url: str
    data_ports: tuple[int, ...]
    sentinel_ports: tuple[int, ...]


@contextlib.contextmanager
def redis_sentinel_group(
    directory: Path,
    *,
    replicas: int = 1,
    sentinels: int = 3,
    down_after_ms: int = 5000,
    failover_timeout_ms: int = 180_000,
    sentinel_debug: Mapping[str, int] | None = None,
) -> Iterator[SentinelGroup]:
    """A throwaway primary with ``replicas`` replicas and ``sentinels`` Sentinels (quorum:
    a majority of them), on loopback; yields once every Sentinel names the primary, sees
    every replica healthy and knows the other Sentinels. ``sentinel_debug`` sets Redis 7's
    ``SENTINEL DEBUG`` periods (e.g. ``{"info-period": 1000}``) on every Sentinel."""
    import redis

    quorum = sentinels // 2 + 1
    # Every node may become the primary: a full sync starts at once on each of them.
    fast_sync = ["--repl-diskless-sync-delay", "0"]
    with contextlib.ExitStack() as stack:
        primary = stack.enter_context(_redis_process(directory / "node0", extra=fast_sync))
        data = [primary]
        for i in range(replicas):
            extra = [*fast_sync, "--replicaof", "127.0.0.1", str(primary)]
            data.append(
                stack.enter_context(_redis_process(directory / f"node{i + 1}", extra=extra))
            )
        monitor = [
            f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {primary} {quorum}\n",
            f"sentinel down-after-milliseconds {SENTINEL_SERVICE} {down_after_ms}\n",
            f"sentinel failover-timeout {SENTINEL_SERVICE} {failover_timeout_ms}\n",
        ]
        ports = [
            stack.enter_context(
                _redis_process(directory / f"sentinel{i}", extra=monitor, sentinel=True)
            )
            for i in range(sentinels)
        ]
        for port in ports:
            if sentinel_debug:
                with redis.Redis(port=port) as sentinel:
                    args = [x for pair in sentinel_debug.items() for x in pair]
                    sentinel.execute_command("SENTINEL", "DEBUG", *args)

        def watching() -> bool:
            for port in ports:
                with redis.Redis(port=port, decode_responses=True) as sentinel:
                    seen = sentinel.sentinel_slaves(SENTINEL_SERVICE)
                    others = sentinel.sentinel_sentinels(SENTINEL_SERVICE)
                healthy = {
                    r["port"] for r in seen if not r["is_sdown"] and not r["is_disconnected"]
                }
                if healthy != set(data[1:]) or len(others) != sentinels - 1:
                    return False
            return True

        _wait("the Sentinels to watch every replica and each other", watching, timeout=30)
        yield SentinelGroup(
            "redis+sentinel://"
            + ",".join(f"127.0.0.1:{port}" for port in ports)
            + f"/{SENTINEL_SERVICE}",
            tuple(data),
            tuple(ports),
        )


class RoundTrips:
    """Counts the round trips a ``redis.asyncio`` client makes: each command sent alone, and
    each pipeline sent (all its commands in one round trip; the issuer's refresh sends its
    rotation and the session's record that way). (Redis's own ``INFO commandstats`` counts
    the commands inside a Lua script one by one, so it cannot tell one script call from
    five commands.) Build the store on the client afterwards."""

    def __init__(self, client: Any) -> None:
        self.count = 0
        send, pipeline = client.execute_command, client.pipeline

        async def counted(*args: Any, **options: Any) -> Any:
            self.count += 1
            return await send(*args, **options)

        def counted_pipeline(*args: Any, **options: Any) -> Any:
            pipe = pipeline(*args, **options)
            execute = pipe.execute

            async def counted_execute(*a: Any, **o: Any) -> Any:
                self.count += 1
                return await execute(*a, **o)

            pipe.execute = counted_execute
            return pipe

        client.execute_command = counted
        client.pipeline = counted_pipeline


# --- a raw HTTP/1.1 client (keep-alive, Content-Length bodies) --------------------------------


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def set_cookies(self) -> dict[str, str]:
        return parse_set_cookies([v for k, v in self.headers if k == "set-cookie"])


class HttpClient:
    """One keep-alive connection. Small and predictable: no pool, no retries, so a timed
    request is one write and one read on an already open socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> HttpClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    @staticmethod
    def encode(
        port: int,
        path: str,
        cookies: Mapping[str, str] | None = None,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """A request without a body (``content-length: 0`` for other methods than GET)."""
        lines = [f"{method} {path} HTTP/1.1", f"host: 127.0.0.1:{port}", "accept: application/json"]
        if method != "GET":
            lines.append("content-length: 0")
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if cookies:
            lines.append(f"cookie: {cookie_header(cookies).decode()}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def send(self, request: bytes) -> None:
        self.writer.write(request)
        await self.writer.drain()

    async def read(self) -> HttpResponse:
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = []
        length = 0
        for line in header_lines:
            if not line:
                continue
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            headers.append((name, value))
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                raise RuntimeError("chunked responses are not supported by this client")
        body = await self.reader.readexactly(length) if length else b""
        return HttpResponse(int(status_line.split()[1]), headers, body)

    async def get(self, request: bytes) -> HttpResponse:
        await self.send(request)
        return await self.read()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def http_get(port: int, path: str, cookies: Mapping[str, str] | None = None) -> HttpResponse:
    """One GET on a fresh connection (10 s at most)."""
    async with asyncio.timeout(10):
        client = await HttpClient.connect(port)
        try:
            return await client.get(HttpClient.encode(port, path, cookies))
        finally:
            await client.close()


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
    with managed_process(command, log=log, env=full_env) as process:
        pids: set[int] = set()
        deadline = time.monotonic() + 30
        while len(pids) < workers:
            if process.poll() is not None:
                raise RuntimeError(f"uvicorn exited early:\n{log.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                if pids:  # serving, but the kernel kept handing connections to one worker
                    break
                raise RuntimeError(f"uvicorn did not answer:\n{log.read_text(errors='replace')}")
            with contextlib.suppress(OSError, TimeoutError, asyncio.IncompleteReadError):
                response = asyncio.run(asyncio.wait_for(http_get(port, ready_path), 1.0))
                if response.status == 200:
                    pids.add(int(response.json()["pid"]))
                    continue
            time.sleep(0.05)
        yield Server(port, log)
