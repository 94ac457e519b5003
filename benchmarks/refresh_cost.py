"""What one refreshing request costs, next to a hand-written PyJWT request.

Every measured fastapi-authkit request carries its own refresh token (the kit remembers a
refresh result per refresh token for ``grace_period`` seconds, so a repeated one would be
answered from memory) and an access token that needs refreshing: either within
``interval`` of its expiry or already expired. The refresh callback returns a precomputed
``RefreshResult`` at once, so what is timed is the kit's own work: verify the old token,
run the callback under its timeout, verify the new token, build five Set-Cookie headers.
Each timed chunk checks that the callback ran exactly once per request.

Target: one refreshing request <= 3x a hand-written PyJWT request.

Also reported (no target): the same refresh once the kit already remembers 10,000 recent
refresh results, i.e. 10,000 sessions refreshed within one grace period.

    .venv/bin/python -m benchmarks.refresh_cost [--rounds 7]
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from fastapi import FastAPI

from benchmarks.common import (
    TIMES,
    Chunk,
    Headers,
    Target,
    bench_parser,
    call,
    drive,
    expect_only,
    finish,
    interleaved,
    median,
    paired_ratio,
    ratio_target,
    request_headers,
    session_cookies,
    stop_on_sigterm,
)
from benchmarks.peers import COOKIE_SECRET, SECRET, access_token, handwritten_pyjwt
from fastapi_authkit import (
    AuthKitMiddleware,
    AuthStore,
    CurrentUser,
    RefreshParam,
    RefreshResult,
    create_refresh,
    create_store,
)

INTERVAL = 60
# Enough for any chunk size interleaved() picks, while a whole run stays well under the
# 10,000 remembered results that the "full" measurement is about.
MAX_CHUNK = 800
FULL = 10_000


class KitApp:
    """An app whose every request refreshes; counts the callback's calls."""

    def __init__(self, token_ttl: int) -> None:
        self.token_ttl = token_ttl
        self.calls = 0
        result = RefreshResult(
            is_success=True,
            new_auth_token=access_token(3600),
            new_refresh_token=secrets.token_urlsafe(32),
            new_refresh_token_expires_in=86400,
        )

        async def instant(param: RefreshParam) -> RefreshResult:
            self.calls += 1
            return result

        self.store: AuthStore = create_store(
            secret_key=COOKIE_SECRET,
            token_key=SECRET,
            refresh=create_refresh(interval=INTERVAL, refresh_api_callback=instant),
        )
        self.app = FastAPI()
        self.app.add_middleware(AuthKitMiddleware, store=self.store)

        @self.app.get("/me")
        async def me(user: CurrentUser) -> dict[str, Any]:
            return {"sub": user["sub"]}

        signed_in = session_cookies(
            self.store, access_token(), refresh="x", user_state={"sub": "alice"}
        )
        if set(signed_in) != set(self.store.names.all()):
            raise RuntimeError(f"sign_in sets {sorted(signed_in)}, expected all five cookies")

    def stale_requests(self, n: int) -> list[Headers]:
        """``n`` requests, each a session of its own (its refresh token, and the state and
        CSRF cookies issued with it and with its access token) due for refresh. Built from
        the parts ``sign_in`` uses, as benchmarks/scaling.py does: a refresh needs the
        state cookie of its session."""
        names, codec = self.store.names, self.store.state_codec
        token = access_token(self.token_ttl)  # a negative ttl gives an expired token
        requests = []
        for _ in range(n):
            sid, refresh = secrets.token_urlsafe(18), secrets.token_urlsafe(32)
            cookies = {
                names.access: token,
                names.type: "Bearer",
                names.state: codec.dumps(sid, {"sub": "alice"}, refresh, (token,)),
                names.refresh: refresh,
                names.csrf: self.store.csrf.token_for(sid),
            }
            requests.append(request_headers(cookies))
        return requests

    async def check(self) -> None:
        before = self.calls
        response = await call(self.app, "/me", self.stale_requests(1)[0])
        cookies = response.set_cookies()
        if response.status != 200 or self.calls != before + 1 or not cookies.get("_auth"):
            raise RuntimeError(f"expected a refresh: {response.status} {cookies}")

    def chunk(self, name: str) -> Chunk:
        async def run(n: int) -> float:
            requests = self.stale_requests(n)  # built before the clock starts
            before = self.calls
            us, statuses = await drive(self.app, "/me", requests, n)
            expect_only(statuses, 200, name)
            if self.calls - before != n:
                raise RuntimeError(f"{name}: {self.calls - before} refreshes for {n} requests")
            return us

        return run


def pyjwt_chunk() -> Chunk:
    app, headers = handwritten_pyjwt()

    async def run(n: int) -> float:
        us, statuses = await drive(app, "/me", [headers], n)
        expect_only(statuses, 200, "hand-written PyJWT")
        return us

    return run


NEAR = f"authkit refresh (token {INTERVAL // 2} s from exp)"
EXPIRED = "authkit refresh (token expired)"
PYJWT = "hand-written PyJWT (no refresh)"


def _table(results: dict[str, list[float]], sizes: dict[str, int]) -> None:
    print(f"\n{'variant':40s} {'median':>8s} {'min':>8s} {'max':>8s} {'vs PyJWT':>9s} {'n':>6s}")
    for name, values in results.items():
        ratio = paired_ratio(values, results[PYJWT])
        print(
            f"{name:40s} {median(values):8.1f} {min(values):8.1f} {max(values):8.1f} "
            f"{ratio:8.2f}{TIMES} {sizes[name]:6d}"
        )


async def measure(rounds: int, chunk_seconds: float) -> list[Target]:
    near, expired = KitApp(token_ttl=INTERVAL // 2), KitApp(token_ttl=-10)
    await near.check()
    await expired.check()
    results, sizes = await interleaved(
        {PYJWT: pyjwt_chunk(), NEAR: near.chunk(NEAR), EXPIRED: expired.chunk(EXPIRED)},
        rounds=rounds,
        chunk_seconds=chunk_seconds,
        max_chunk=MAX_CHUNK,
    )
    print(f"\nrefresh cost: in-process ASGI, µs/request, median of {rounds} interleaved rounds")
    _table(results, sizes)
    targets = [
        ratio_target(
            f"{name} vs hand-written PyJWT", paired_ratio(results[name], results[PYJWT]), "<=", 3.0
        )
        for name in (NEAR, EXPIRED)
    ]

    # The same refresh while the kit remembers FULL recent results (within grace_period).
    full = KitApp(token_ttl=INTERVAL // 2)
    started = time.perf_counter()
    await full.chunk("filling")(FULL)
    filled_in = time.perf_counter() - started
    name = f"authkit refresh, {FULL:,} remembered"
    full_results, full_sizes = await interleaved(
        {PYJWT: pyjwt_chunk(), name: full.chunk(name)},
        rounds=3,
        chunk_seconds=chunk_seconds,
        warmup=150,
        max_chunk=MAX_CHUNK,
    )
    print(
        f"\nafter {FULL:,} refreshes in {filled_in:.1f} s (all within the default "
        f"10 s grace period), 3 rounds:"
    )
    _table(full_results, full_sizes)
    print(
        f"  info: refresh with {FULL:,} remembered results vs hand-written PyJWT: "
        f"{paired_ratio(full_results[name], full_results[PYJWT]):.2f}{TIMES} (no target)"
    )
    return targets


def main() -> None:
    parser = bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunk-seconds", type=float, default=0.2)
    args = parser.parse_args()
    stop_on_sigterm()
    finish(asyncio.run(measure(args.rounds, args.chunk_seconds)), args.json)


if __name__ == "__main__":
    main()
