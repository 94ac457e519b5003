"""Does the per-request cost depend on how many distinct sessions there are?

fastapi-authkit (refresh configured, not due; ``Depends(current_user)``) serves ``GET /me``
in-process for one session over and over, and for 100,000 distinct sessions (each with its
own access token, state cookie, CSRF token and refresh token) in rotation: each token comes
back only after all the others, which is what defeats a small per-token cache and what
makes an unbounded one show in memory.

The caches are sized for the sessions (``verified_token_cache``, as an app expecting that
many per worker would set it). A first full pass over the 100,000 sessions runs (and is
timed) before the interleaved rounds, so the rounds see each token for the second time.
RSS (VmRSS) is read after the sessions are generated and before the first pass, and again
at the end.

Target: rotation <= 1.5x the single-token cost.

    .venv/bin/python -m benchmarks.scaling [--sessions 100000] [--rounds 9]
"""

from __future__ import annotations

import asyncio
import gc
import secrets
import time
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from benchmarks.asgi import drive, expect_only, interleaved
from benchmarks.cookies import Headers, request_headers
from benchmarks.sessions import UnexpectedRefresh, mint_hs256, session_cookies
from benchmarks.stats import median, mib, paired_ratio, peak_rss_bytes, rss_bytes
from benchmarks.targets import TIMES, Target, bench_parser, finish, ratio_target, stop_on_sigterm
from fastapi_authkit import AuthKitMiddleware, create_refresh, create_store
from fastapi_authkit.config import AuthStore
from fastapi_authkit.dependencies import CurrentUser

SECRET = b"scaling-benchmark-token-key-0123456789abcdef"
COOKIE_SECRET = "scaling-benchmark-cookie-secret-0123456789"


NEVER_DUE = UnexpectedRefresh()


def build(
    methods: Sequence[str] = ("GET",), *, verified_token_cache: int | None = None
) -> tuple[FastAPI, AuthStore]:
    """The benchmarked app: ``/me`` (for ``methods``) behind the kit, refresh configured
    but never due; the caches' default bound unless ``verified_token_cache`` is given.
    benchmarks/memory.py drives it too."""
    bound = {} if verified_token_cache is None else {"verified_token_cache": verified_token_cache}
    store = create_store(
        secret_key=COOKIE_SECRET,
        token_key=SECRET,
        refresh=create_refresh(interval=60, refresh_api_callback=NEVER_DUE),
        **bound,
    )
    app = FastAPI()
    app.add_middleware(AuthKitMiddleware, store=store)

    @app.api_route("/me", methods=list(methods))
    async def me(user: CurrentUser) -> dict[str, Any]:
        return {"sub": user["sub"]}

    return app, store


def sessions(store: AuthStore, count: int) -> list[Headers]:
    """``count`` distinct signed-in browsers' request headers.

    ``sign_in`` would take minutes for 100,000; the cookies are built from the same parts
    it uses (the store's state codec and CSRF signer), and checked against a real
    ``sign_in`` for their names.
    """
    now = int(time.time())
    names = store.names
    result = []
    for i in range(count):
        sid = secrets.token_urlsafe(18)
        sub = f"user{i}"
        token = mint_hs256({"sub": sub, "iat": now, "exp": now + 3600}, SECRET)
        refresh = secrets.token_urlsafe(32)
        user_state = {"sub": sub, "name": f"User {i}"}
        cookies = {
            names.access: token,
            names.type: "Bearer",
            names.state: store.state_codec.dumps(sid, user_state, refresh, (token,)),
            names.refresh: refresh,
            names.csrf: store.csrf.token_for(sid),
        }
        result.append(request_headers(cookies))
    reference = session_cookies(
        store, mint_hs256({"sub": "x", "exp": now + 3600}, SECRET), refresh="r", user_state={}
    )
    if set(reference) != set(names.all()):
        raise RuntimeError(f"sign_in sets {sorted(reference)}, expected {sorted(names.all())}")
    return result


async def measure(count: int, rounds: int, chunk_seconds: float) -> list[Target]:
    # Caches as large as the sessions (an app expecting that many per worker raises the
    # default bound): what is measured is whether the cost grows with their number.
    app, store = build(verified_token_cache=count)
    started = time.perf_counter()
    many = sessions(store, count)
    print(f"generated {count:,} sessions in {time.perf_counter() - started:.1f} s")
    single = many[0]

    _, statuses = await drive(app, "/me", [single], 500)
    expect_only(statuses, 200, "single token warm-up")
    gc.collect()
    rss_before = rss_bytes()

    first_us, statuses = await drive(app, "/me", many, count)
    expect_only(statuses, 200, "first pass over every session")
    cursor = count  # the rounds continue the rotation where the first pass ended

    async def one_token(n: int) -> float:
        us, statuses = await drive(app, "/me", [single], n)
        expect_only(statuses, 200, "single token")
        return us

    async def rotation(n: int) -> float:
        nonlocal cursor
        us, statuses = await drive(app, "/me", many, n, start=cursor)
        cursor += n
        expect_only(statuses, 200, "rotation")
        return us

    results, sizes = await interleaved(
        {"one token": one_token, f"{count:,} in rotation": rotation},
        rounds=rounds,
        chunk_seconds=chunk_seconds,
    )
    gc.collect()
    rss_after = rss_bytes()
    NEVER_DUE.check("scaling")

    single_us, rotation_us = results.values()
    ratio = paired_ratio(rotation_us, single_us)
    print(f"\nscaling: authkit GET /me, µs/request, median of {rounds} interleaved rounds")
    print(f"{'sessions':24s} {'median':>8s} {'min':>8s} {'max':>8s} {'n/chunk':>8s}")
    for name, values in results.items():
        print(
            f"{name:24s} {median(values):8.1f} {min(values):8.1f} {max(values):8.1f} "
            f"{sizes[name]:8d}"
        )
    print(
        f"first pass over all {count:,} (each token seen for the first time): "
        f"{first_us:.1f} µs/request, {first_us / median(single_us):.2f}{TIMES} one token "
        "(one block, not interleaved; no target)"
    )
    print(f"rotation / one token: {ratio:.2f}{TIMES}")
    growth = rss_after - rss_before
    print(
        f"RSS (VmRSS): {mib(rss_before)} before the first pass, {mib(rss_after)} after "
        f"the rounds: {growth / 2**20:+.1f} MiB ({growth / count:+.0f} bytes per session); "
        f"peak {mib(peak_rss_bytes())} (includes the {count:,} generated cookie headers)"
    )
    return [ratio_target(f"{count:,} tokens in rotation vs one token", ratio, "<=", 1.5)]


def main() -> None:
    parser = bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--chunk-seconds", type=float, default=0.25)
    args = parser.parse_args()
    stop_on_sigterm()
    finish(asyncio.run(measure(args.sessions, args.rounds, args.chunk_seconds)), args.json)


if __name__ == "__main__":
    main()
