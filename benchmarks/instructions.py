"""Instructions per request under valgrind's callgrind: a figure machine load cannot move.

Wall-clock benchmarks on a shared machine drift by several percent; an instruction count
is the same for the same interpreter, code and inputs whatever else runs. This is how a
refactoring is checked for cost: the same variants before and after, compared here.

Each variant runs twice under callgrind, in a fresh interpreter: a warm-up and then ``n``
requests, and the same with ``2n``; the difference of the two totals over ``n`` is what one
request costs (start-up, imports and warm-up cancel out). Requests go straight through the
ASGI callable, sequentially, with a server-like ``receive``. Hash randomization is fixed
(``PYTHONHASHSEED=0``), the measured process runs on a fixed clock with fixed random bytes
(so tokens, cookies and dictionary layouts repeat from run to run), and what exists after
the warm-up is frozen out of the garbage collector's passes.

    .venv/bin/python -m benchmarks.instructions [--n 2000] [--variants kit noop ...]
    .venv/bin/python -m benchmarks.instructions --against OLD/fastapi_authkit [...]
    .venv/bin/python -m benchmarks.instructions --misses [...]

``--misses`` adds callgrind's simulated caches and branch predictors: the L1 misses and the
mispredicted branches per request, each against the no-op dependency. A miss served by
the L2 cache costs about a dozen cycles and a mispredicted branch fifteen or more, where an
instruction takes under one, so a stack whose code misses more per instruction than
FastAPI's costs more wall-clock time than its instruction ratio says.

Two checkouts of different code differ by a few tenths of a percent even on paths that
run the same code (the heap is laid out differently, and some hashes follow addresses).
``--against`` removes that: every measured process loads both versions of the package,
this one and the one at the given path (an export of an older commit), in the same order,
and only then makes one of them ``fastapi_authkit``; each variant is measured with each.

Not part of ``scripts/bench`` (no targets; it needs valgrind and takes a minute per
variant): run it before and after a change to the hot path.
"""

# No ``from __future__ import annotations``: FastAPI must see the route's dependency
# annotations as objects.

import sys

if "--inner" in sys.argv:
    # In the measured process, before anything reads them: a fixed clock and fixed "random"
    # bytes, so tokens, cookies and every hash computed from them are the same in every
    # run (with real ones the count moves by a few tenths of a percent from run to run).
    # Both stand-ins are C-level callables, as time.time and os.urandom are.
    import itertools
    import random
    import secrets
    import time

    time.time = itertools.repeat(1_800_000_000.0).__next__
    secrets.token_bytes = random.Random(0).randbytes  # type: ignore[assignment]

    if "--against" in sys.argv:
        # Both versions of the package, always in this order, as authkit_version_0 (this
        # checkout's) and authkit_version_1 (the other); then the one measured becomes
        # fastapi_authkit, submodules included, before anything imports it by that name.
        import importlib.util
        import pathlib

        _other = pathlib.Path(sys.argv[sys.argv.index("--against") + 1]).resolve()
        _here = pathlib.Path(__file__).resolve().parent.parent / "fastapi_authkit"
        _chosen = int(sys.argv[sys.argv.index("--version") + 1])
        for _index, _root in enumerate((_here, _other)):
            _name = f"authkit_version_{_index}"
            _spec = importlib.util.spec_from_file_location(
                _name, _root / "__init__.py", submodule_search_locations=[str(_root)]
            )
            assert _spec is not None
            assert _spec.loader is not None
            sys.modules[_name] = importlib.util.module_from_spec(_spec)
            _spec.loader.exec_module(sys.modules[_name])
        _prefix = f"authkit_version_{_chosen}"
        for _key in list(sys.modules):
            if _key == _prefix or _key.startswith(_prefix + "."):
                sys.modules["fastapi_authkit" + _key[len(_prefix) :]] = sys.modules[_key]

import argparse
import asyncio
import gc
import os
import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from redis.asyncio import Redis

from benchmarks.asgi import YIELD_EVERY, Exchange, http_scope
from benchmarks.cookies import Headers, request_headers
from benchmarks.peers import (
    COOKIE_SECRET,
    SECRET,
    access_token,
    anonymous,
    authkit,
    authkit_without_dependency,
    issuer_app,
    noop_dependency,
    session_cookies,
)
from benchmarks.servers import redis_server, workdir
from fastapi_authkit import AuthKitMiddleware, create_store
from fastapi_authkit.dependencies import CurrentUser
from fastapi_authkit.stores import MemoryStore, SessionStore

from tests.support.processes import REPO_ROOT
from tests.support.round_trips import RoundTrips

Variant = tuple[FastAPI, Headers, str]  # app, request headers, method


def _get(build: Callable[[], tuple[FastAPI, Headers]]) -> Callable[[], Variant]:
    def variant() -> Variant:
        app, headers = build()
        return app, headers, "GET"

    return variant


def unsafe_post() -> Variant:
    """A cookie-authenticated POST with its CSRF header: never remembered, so this is the
    full read (cookies, state cookie, forgery checks, token) on every request."""
    store = create_store(secret_key=COOKIE_SECRET, token_key=SECRET)
    app = FastAPI()
    app.add_middleware(AuthKitMiddleware, store=store)

    @app.post("/me")
    async def me(user: CurrentUser) -> dict[str, Any]:
        return {"sub": user["sub"]}

    cookies = session_cookies(store, access_token(), user_state={"sub": "alice"})
    headers = request_headers(cookies)
    headers.append((b"x-csrf-token", cookies[store.names.csrf].encode()))
    return app, headers, "POST"


async def issuer(backend: SessionStore) -> Variant:
    """The built-in issuer on ``backend``, a signed-in browser's GET."""
    app, headers = await issuer_app(backend)
    return app, headers, "GET"


async def issuer_memory() -> Variant:
    return await issuer(MemoryStore())


async def issuer_redis() -> Variant:
    """On a RedisStore (the redis-server the outer process started). Under valgrind real
    time runs ~50x slower than the code expects, so the view's lag bound is set far beyond
    any heartbeat delay: what is counted is the request, not the heartbeats."""
    from fastapi_authkit.stores import RedisStore

    client = Redis.from_url(os.environ[REDIS_URL])
    ROUND_TRIPS.append(RoundTrips(client))
    try:
        backend = RedisStore(client, prefix="instructions:", max_lag=3600.0)
    except TypeError:  # a version without the view (--against an older checkout)
        backend = RedisStore(client, prefix="instructions:")
    return await issuer(backend)


REDIS_URL = "BENCH_INSTRUCTIONS_REDIS_URL"
ROUND_TRIPS: list[RoundTrips] = []

VARIANTS: dict[str, Callable[[], Variant | Awaitable[Variant]]] = {
    "noop": _get(noop_dependency),
    "kit": _get(lambda: authkit(with_refresh=False)),
    "kit-refresh": _get(lambda: authkit(with_refresh=True)),
    "kit-no-dependency": _get(authkit_without_dependency),
    "kit-anonymous": _get(lambda: anonymous(with_kit=True)),
    "kit-post": unsafe_post,
    "issuer-memory": issuer_memory,
    "issuer-redis": issuer_redis,
}


async def _run(app: FastAPI, headers: Headers, method: str, n: int) -> None:
    template = http_scope("/me", headers, method)
    for i in range(n):
        exchange = Exchange()
        await app(dict(template), exchange.receive, exchange.send)
        if exchange.status != 200:
            raise RuntimeError(f"expected 200, got {exchange.status}")
        if not i % YIELD_EVERY:
            await asyncio.sleep(0)  # the loop's turn, as in benchmarks.asgi.drive


def inner(name: str, n: int) -> None:
    """In the process callgrind watches: warm up, then ``n`` requests."""

    async def main() -> None:
        built = VARIANTS[name]()
        app, headers, method = built if isinstance(built, tuple) else await built
        await _run(app, headers, method, 300)
        for _ in range(200):  # with Redis: until requests stop asking it (the view is current)
            before = sum(counter.count for counter in ROUND_TRIPS)
            await asyncio.sleep(0.05)
            await _run(app, headers, method, 64)
            if sum(counter.count for counter in ROUND_TRIPS) == before:
                break
        # What exists after the warm-up (modules, apps, caches) is left out of the garbage
        # collector's later passes: their cost would follow the size of the code base, not
        # the cost of a request (two checkouts of different code differ by it even where
        # the request runs the same code).
        gc.collect()
        gc.freeze()
        await _run(app, headers, method, n)

    asyncio.run(main())


_EVENTS = re.compile(rb"^events:\s+(.+)$", re.MULTILINE)
_TOTALS = re.compile(rb"^(?:summary|totals):\s+([\d ]+)$", re.MULTILINE)

# With --misses, what a processor stalls on besides the instructions themselves (callgrind's
# simulated caches and branch predictors): each name and the events it adds up.
MISSES: dict[str, tuple[str, ...]] = {
    "instructions": ("Ir",),
    "L1i misses": ("I1mr",),
    "L1d misses": ("D1mr", "D1mw"),
    "mispredicted branches": ("Bcm", "Bim"),
}


def counts(name: str, n: int, directory: Path, against: list[str], misses: bool) -> dict[str, int]:
    """Callgrind's totals for ``n`` requests of variant ``name``, by event (``Ir``: the
    instructions; with ``misses``, the simulated cache misses and branch mispredictions)."""
    out = directory / f"{name}-{n}-{'-'.join(against[-1:])}.out"
    command = [
        "valgrind",
        "--tool=callgrind",
        *(["--cache-sim=yes", "--branch-sim=yes"] if misses else []),
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        "--inner",
        name,
        "--n",
        str(n),
        *against,
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run(command, cwd=REPO_ROOT, env=env, check=True, capture_output=True)
    text = out.read_bytes()
    events, totals = _EVENTS.search(text), _TOTALS.search(text)
    if events is None or totals is None:
        raise RuntimeError(f"no totals in {out}")
    return {
        event.decode(): int(total)
        for event, total in zip(events.group(1).split(), totals.group(1).split(), strict=True)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument(
        "--against", type=Path, help="an older checkout's fastapi_authkit directory"
    )
    parser.add_argument(
        "--misses",
        action="store_true",
        help="also simulate the caches and branch predictors (slower): misses per request",
    )
    parser.add_argument("--inner", choices=list(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--version", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(args.inner, args.n)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    versions: list[list[str]] = [[]]
    if args.against is not None:
        other = str(args.against.resolve())
        versions = [["--against", other, "--version", "1"], ["--against", other, "--version", "0"]]
        print(f"columns: the package at {other}, then this checkout's (both loaded in each run)")
    measures = MISSES if args.misses else {"instructions": ("Ir",)}
    print(
        f"{', '.join(measures)} per request (callgrind, ({2 * args.n} - {args.n} requests)"
        f" / {args.n})"
    )
    per_request: dict[str, dict[str, float]] = {}
    with workdir("instructions") as tmp, redis_server(tmp) as redis:
        os.environ[REDIS_URL] = redis.url
        for name in args.variants:
            columns: list[dict[str, float]] = []
            for version in versions:
                one = counts(name, args.n, tmp, version, args.misses)
                two = counts(name, 2 * args.n, tmp, version, args.misses)
                columns.append(
                    {
                        measure: sum(two[e] - one[e] for e in events) / args.n
                        for measure, events in measures.items()
                    }
                )
            per_request[name] = columns[-1]
            for measure in measures:
                values = [column[measure] for column in columns]
                line = "".join(f" {value:12,.0f}" for value in values)
                if len(values) == 2:
                    line += f" {values[1] - values[0]:+10,.0f} ({values[1] / values[0] - 1:+.2%})"
                label = name if measure == "instructions" else f"  {measure}"
                print(f"  {label:24s}{line}", flush=True)
    if args.misses and "noop" in per_request:
        # Each stall's ratio to the no-op dependency's beside the instructions': code that
        # misses more per instruction costs more wall-clock time than its count says.
        print("each against the no-op dependency:")
        floor = per_request["noop"]
        for name, measured in per_request.items():
            if name != "noop":
                ratios = "  ".join(
                    f"{measure} {measured[measure] / floor[measure]:.3f}x" for measure in measures
                )
                print(f"  {name:20s} {ratios}")


if __name__ == "__main__":
    main()
