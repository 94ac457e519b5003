"""Instructions per request under valgrind's callgrind: a figure machine load cannot move.

Wall-clock benchmarks on a shared machine drift by several percent; an instruction count
is the same for the same interpreter, code and inputs whatever else runs. This is how a
refactoring is checked for cost: the same variants before and after, compared here.

Each variant runs twice under callgrind, in a fresh interpreter: a warm-up and then ``n``
requests, and the same with ``2n``; the difference of the two totals over ``n`` is what one
request costs (start-up, imports and warm-up cancel out). Requests go straight through the
ASGI callable, sequentially, with a server-like ``receive``. Hash randomization is fixed
(``PYTHONHASHSEED=0``) so dictionary layouts repeat from run to run.

    .venv/bin/python -m benchmarks.instructions [--n 2000] [--variants kit noop ...]

Not part of ``scripts/bench`` (no targets; it needs valgrind and takes a minute per
variant): run it before and after a change to the hot path.
"""

# No ``from __future__ import annotations``: FastAPI must see the route's dependency
# annotations as objects.

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from benchmarks.common import REPO_ROOT, Exchange, Headers, http_scope, request_headers
from benchmarks.peers import (
    COOKIE_SECRET,
    SECRET,
    access_token,
    anonymous,
    authkit,
    authkit_without_dependency,
    noop_dependency,
    session_cookies,
)
from fastapi_authkit import AuthKitMiddleware, CurrentUser, create_issuer, create_store
from fastapi_authkit.stores import MemoryStore

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


def issuer_memory() -> Variant:
    """The built-in issuer on the in-memory store, a signed-in browser's GET."""
    issuer = create_issuer(backend=MemoryStore(), signing_key=SECRET, access_ttl=3600)
    store = create_store(secret_key=COOKIE_SECRET, token_issuer=issuer)
    app = FastAPI()
    app.add_middleware(AuthKitMiddleware, store=store)

    @app.get("/me")
    async def me(user: CurrentUser) -> dict[str, Any]:
        return {"sub": user["sub"]}

    tokens = asyncio.run(issuer.issue("alice"))
    cookies = session_cookies(
        store, tokens.access_token, refresh=tokens.refresh_token, user_state={"sub": "alice"}
    )
    return app, request_headers(cookies), "GET"


VARIANTS: dict[str, Callable[[], Variant]] = {
    "noop": _get(noop_dependency),
    "kit": _get(lambda: authkit(with_refresh=False)),
    "kit-refresh": _get(lambda: authkit(with_refresh=True)),
    "kit-no-dependency": _get(authkit_without_dependency),
    "kit-anonymous": _get(lambda: anonymous(with_kit=True)),
    "kit-post": unsafe_post,
    "issuer-memory": issuer_memory,
}


async def _run(app: FastAPI, headers: Headers, method: str, n: int) -> None:
    template = http_scope("/me", headers, method)
    for _ in range(n):
        exchange = Exchange()
        await app(dict(template), exchange.receive, exchange.send)
        if exchange.status != 200:
            raise RuntimeError(f"expected 200, got {exchange.status}")


def inner(name: str, n: int) -> None:
    """In the process callgrind watches: warm up, then ``n`` requests."""
    app, headers, method = VARIANTS[name]()

    async def main() -> None:
        await _run(app, headers, method, 300)
        await _run(app, headers, method, n)

    asyncio.run(main())


_TOTAL = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def instructions(name: str, n: int, directory: Path) -> int:
    out = directory / f"{name}-{n}.out"
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "benchmarks.instructions",
        "--inner",
        name,
        "--n",
        str(n),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run(command, cwd=REPO_ROOT, env=env, check=True, capture_output=True)
    match = _TOTAL.search(out.read_bytes())
    if match is None:
        raise RuntimeError(f"no instruction total in {out}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--inner", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        inner(args.inner, args.n)
        return
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    print(f"instructions per request (callgrind, ({2 * args.n} - {args.n} requests) / {args.n})")
    with tempfile.TemporaryDirectory(prefix="authkit-instructions-") as tmp:
        for name in args.variants:
            one = instructions(name, args.n, Path(tmp))
            two = instructions(name, 2 * args.n, Path(tmp))
            print(f"  {name:20s} {(two - one) / args.n:12,.0f}", flush=True)


if __name__ == "__main__":
    main()
