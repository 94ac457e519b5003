"""Driving an ASGI app in-process as a server would, and timing variants in interleaved
rounds."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from starlette.types import ASGIApp, Message

from benchmarks.cookies import Headers, parse_set_cookies

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
