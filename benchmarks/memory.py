"""How much memory can one signed-in attacker make a worker hold? RSS growth per request.

fastapi-authkit (refresh configured, not due; ``Depends(current_user)``) serves ``GET /me``
in-process. One session is signed in; then, each for 100,000 requests after a warm-up of
10,000 (which fills what is bounded by count, such as the 4,096 parsed Cookie headers):

* ``same cookies``: the browser's own requests, the baseline;
* ``junk cookie``: the session's cookies plus a 2 KB cookie whose value changes on every
  request (the remembered outcomes were keyed by the whole Cookie header: +447 MiB after
  110,000 requests in the security review, issue 17);
* ``junk token type``: the session's cookies with a 2 KB token-type cookie (not signed)
  that changes on every request;
* ``new refresh cookies``: the session's valid state cookie with a new 2 KB refresh cookie
  on every request, half of them refused POSTs (the state binding was remembered per raw
  refresh token: +281 MiB after 70,000).

RSS (VmRSS) is read after a garbage collection before and after each run. Target: every
attack grows RSS by at most 64 bytes per request (one kept header is over 2,000), which
means its memory is bounded by the session, not by the number of requests; the baseline
is printed alongside for comparison.

Then what a remembered session costs: distinct signed-in browsers (benchmarks/scaling.py's)
each send one GET, with a Cookie header of its own bytes as a server would hand it over.
``--sessions`` of them in all, by default as many as the default bound
(``verified_token_cache``) keeps, so that no record is evicted (its memory would be reused
by the next, and its cost go uncounted). After the first 100 (the first allocations of
every kind), as many as the parsed-header layer holds (4,096): the RSS they add is that
layer filling up, a fixed cost bounded by count, plus their own records. Then the rest:
the RSS growth over their count is one session's cost. Targets: at most 1 KiB per
session, and the default bound times that cost, plus the parsed-header layer, under 64 MiB.

    .venv/bin/python -m benchmarks.memory [--requests 100000] [--warm-up 10000] [--sessions 20000]
        [--part attacks|sessions]

Without ``--part`` the sessions part runs first, in an interpreter of its own (memory the
attacks freed would be reused by the sessions without growing RSS).
"""

from __future__ import annotations

import asyncio
import gc
import json
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI

from benchmarks.asgi import Exchange, http_scope
from benchmarks.cookies import Headers, cookie_header, request_headers
from benchmarks.scaling import NEVER_DUE, SECRET, build, sessions
from benchmarks.sessions import mint_hs256, session_cookies
from benchmarks.stats import mib, rss_bytes
from benchmarks.targets import Target, bench_parser, finish, stop_on_sigterm
from fastapi_authkit.readercache import PARSED_HEADERS

JUNK = 2000
LIMIT = 64  # bytes of RSS per attacker request
PER_SESSION = 1024  # bytes of RSS per remembered session
WORKER_CACHES = 64 * 2**20  # bytes of RSS for the default bound's sessions


# Each attack: request number -> (method, headers), and the statuses it must get.
Attack = Callable[[int], tuple[str, Headers]]


def attacks(cookies: dict[str, str]) -> dict[str, tuple[Attack, set[int]]]:
    signed_in = cookie_header(cookies)
    base = request_headers()

    def same(i: int) -> tuple[str, Headers]:
        return "GET", [*base, (b"cookie", signed_in)]

    def junk_cookie(i: int) -> tuple[str, Headers]:
        junk = b"; junk=%d%s" % (i, b"x" * JUNK)
        return "GET", [*base, (b"cookie", signed_in + junk)]

    def junk_type(i: int) -> tuple[str, Headers]:
        jar = {**cookies, "_auth_type": f"T{i}{'x' * JUNK}"}
        return "GET", [*base, (b"cookie", cookie_header(jar))]

    def new_refresh(i: int) -> tuple[str, Headers]:
        jar = {"_auth_state": cookies["_auth_state"], "_auth_refresh": f"{i}{'r' * JUNK}"}
        return ("GET" if i % 2 else "POST"), [*base, (b"cookie", cookie_header(jar))]

    return {
        "same cookies (baseline)": (same, {200}),
        "junk cookie": (junk_cookie, {200}),
        "junk token type": (junk_type, {200}),
        "new refresh cookies": (new_refresh, {401, 403}),
    }


async def run(app: FastAPI, attack: Attack, start: int, n: int) -> Counter[int]:
    statuses: Counter[int] = Counter()
    for i in range(start, start + n):
        method, headers = attack(i)
        exchange = Exchange()
        scope = http_scope("/me", headers, method)
        await app(scope, exchange.receive, exchange.send)
        statuses[exchange.status] += 1
    return statuses


async def measure(requests: int, warm_up: int) -> list[Target]:
    app, store = build(methods=("GET", "POST"))
    now = int(time.time())
    token = mint_hs256({"sub": "alice", "iat": now, "exp": now + 3600}, SECRET)
    cookies = session_cookies(
        store, token, refresh=secrets.token_urlsafe(32), user_state={"sub": "alice"}
    )
    print(
        f"memory: RSS growth over {requests:,} requests of one signed-in session, after "
        f"{warm_up:,} of warm-up"
    )
    print(
        f"{'requests':24s} {'RSS before':>12s} {'RSS after':>12s} {'growth':>10s} {'per req':>9s}"
    )
    targets = []
    for name, (attack, expected) in attacks(cookies).items():
        statuses = await run(app, attack, 0, warm_up)
        gc.collect()
        before = rss_bytes()
        started = time.perf_counter()
        statuses += await run(app, attack, warm_up, requests)
        elapsed = time.perf_counter() - started
        gc.collect()
        after = rss_bytes()
        if not set(statuses) <= expected:
            raise RuntimeError(f"{name}: expected statuses {expected}, got {dict(statuses)}")
        per_request = (after - before) / requests
        print(
            f"{name:24s} {mib(before):>12s} {mib(after):>12s} "
            f"{(after - before) / 2**20:+9.1f}M {per_request:+8.0f}B "
            f"({elapsed / requests * 1e6:.0f} µs/request)"
        )
        if "baseline" not in name:
            targets.append(
                Target(
                    f"RSS growth per attacker request, {name}",
                    per_request <= LIMIT,
                    f"{per_request:+.0f} bytes (target ≤ {LIMIT}; {(after - before) / 2**20:+.1f} "
                    f"MiB over {requests:,} requests)",
                )
            )
    NEVER_DUE.check("memory")
    return targets


async def per_session(count: int) -> list[Target]:
    """RSS growth per remembered session (see the module docstring)."""
    # The default bound, and no more sessions than it holds: an evicted record's memory
    # would be reused by the next one, and its cost go uncounted.
    app, store = build()
    bound = store.verifier.cache_size
    if not 100 + PARSED_HEADERS < count <= bound:
        raise SystemExit(f"--sessions: more than {100 + PARSED_HEADERS:,}, at most {bound:,}")
    browsers = sessions(store, count)
    measured = count - 100 - PARSED_HEADERS

    async def once(headers: Headers) -> None:
        # A header of its own, as each request of a server brings: the kit keeps none.
        own = [(name, bytes(bytearray(value))) for name, value in headers]
        exchange = Exchange()
        await app(http_scope("/me", own), exchange.receive, exchange.send)
        if exchange.status != 200:
            raise RuntimeError(f"a remembered session: expected 200, got {exchange.status}")

    for headers in browsers[:100]:  # the first allocations of every kind
        await once(headers)
    gc.collect()
    start = rss_bytes()
    for headers in browsers[100 : 100 + PARSED_HEADERS]:  # the parsed-header layer fills
        await once(headers)
    gc.collect()
    before = rss_bytes()
    for headers in browsers[100 + PARSED_HEADERS :]:
        await once(headers)
    gc.collect()
    growth = rss_bytes() - before
    cost = growth / measured
    layer = max(0.0, before - start - PARSED_HEADERS * cost)
    caches = bound * cost + layer
    print(
        f"remembered sessions: {measured:,} sessions past the parsed-header layer, RSS "
        f"{growth / 2**20:+.1f} MiB, {cost:,.0f} bytes each; the layer's {PARSED_HEADERS:,} "
        f"headers {layer / 2**20:.1f} MiB; the default bound ({bound:,}) -> "
        f"{caches / 2**20:.1f} MiB"
    )
    NEVER_DUE.check("memory")
    return [
        Target(
            "RSS per remembered session",
            cost <= PER_SESSION,
            f"{cost:,.0f} bytes (target ≤ {PER_SESSION:,})",
        ),
        Target(
            "RSS of the default bound's remembered sessions",
            caches < WORKER_CACHES,
            f"{bound:,} x {cost:,.0f} bytes + {layer / 2**20:.1f} MiB of parsed headers = "
            f"{caches / 2**20:.1f} MiB (target < 64 MiB)",
        ),
    ]


def main() -> None:
    parser = bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--warm-up", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=20_000)  # the default bound
    parser.add_argument("--part", choices=("attacks", "sessions"), help="run one part only")
    args = parser.parse_args()
    stop_on_sigterm()
    targets: list[Target] = []
    if args.part != "attacks":
        if args.part is None:
            # In an interpreter of its own: memory the attacks freed would be reused by the
            # sessions without growing RSS, and their cost go uncounted.
            targets += _in_own_process(["--part", "sessions", "--sessions", str(args.sessions)])
        else:
            targets += asyncio.run(per_session(args.sessions))
    if args.part != "sessions":
        targets += asyncio.run(measure(args.requests, args.warm_up))
    finish(targets, args.json)


def _in_own_process(arguments: list[str]) -> list[Target]:
    with tempfile.TemporaryDirectory() as directory:
        result = Path(directory) / "targets.json"
        command = [sys.executable, "-m", "benchmarks.memory", *arguments, "--json", str(result)]
        subprocess.run(command, check=True)
        return [Target(**fields) for fields in json.loads(result.read_text())]


if __name__ == "__main__":
    main()
