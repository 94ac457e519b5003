"""What an opaque access token costs per request, verified by RFC 7662 introspection.

A cache hit (``TokenVerifier.verify`` answered from ``TokenIntrospection``'s memory) next to
a JWT verification (HS256, PyJWT, the verifier's own cache off: the signature checked each
time), and a miss: one introspection call to a loopback provider (a threaded
``http.server`` answering ``{"active": true, ...}``), counted to check it is exactly one.

Targets: a cache hit <= 1x a JWT verification; a miss sends exactly one introspection call.

    .venv/bin/python -m benchmarks.introspection
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio

from benchmarks.sessions import mint_hs256
from benchmarks.stats import median
from benchmarks.targets import Target, bench_parser, finish, ratio_target
from fastapi_authkit.oidc import TokenIntrospection
from fastapi_authkit.oidc.grant import TokenEndpoint
from fastapi_authkit.oidc.http import ProviderHTTP
from fastapi_authkit.tokens import TokenVerifier

KEY = secrets.token_bytes(32)
N = 20_000
MISSES = 200


def _provider() -> tuple[ThreadingHTTPServer, list[int]]:
    calls = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            calls[0] += 1
            body = json.dumps({"active": True, "sub": "u", "exp": time.time() + 600}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, calls


def _per_call(fn: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def main() -> None:
    args = bench_parser(__doc__ or "").parse_args()
    server, calls = _provider()
    url = f"http://127.0.0.1:{server.server_address[1]}/introspect"
    endpoint = TokenEndpoint(
        url,
        client_id="bench",
        client_secret="bench-secret",
        auth_method="client_secret_basic",
        http=ProviderHTTP(None, 5.0),
    )
    source = TokenIntrospection(url, client=endpoint, max_entries=MISSES + 10)
    opaque = TokenVerifier(key=source)
    jwt_verifier = TokenVerifier(key=KEY, cache_size=0)
    now = time.time()
    token = secrets.token_urlsafe(32)
    anyio.run(partial(opaque.reload_keys_for, token, trusted=True))
    jwt = mint_hs256({"sub": "u", "exp": int(now) + 600, "iat": int(now)}, KEY)

    hits, jwts = [], []
    for _ in range(7):
        hits.append(_per_call(lambda: opaque.verify(token, now), N))
        jwts.append(_per_call(lambda: jwt_verifier.verify(jwt, now), N))
    hit, verify = median(hits), median(jwts)

    before = calls[0]
    tokens = [secrets.token_urlsafe(32) for _ in range(MISSES)]

    async def misses() -> float:
        start = time.perf_counter()
        for t in tokens:
            await opaque.reload_keys_for(t, trusted=False)
            opaque.verify(t, now)
        return (time.perf_counter() - start) / MISSES

    miss = anyio.run(misses)
    sent = calls[0] - before
    server.shutdown()
    print(f"cache hit:          {hit * 1e6:8.2f} µs")
    print(f"JWT verification:   {verify * 1e6:8.2f} µs (HS256, uncached)")
    print(f"miss (loopback):    {miss * 1e3:8.2f} ms, {sent / MISSES:.2f} calls per miss")
    finish(
        [
            ratio_target("cache hit vs a JWT verification", hit / verify, "<=", 1.0),
            Target(
                "one introspection call per miss",
                sent == MISSES,
                f"{sent} calls for {MISSES} misses ({miss * 1e3:.2f} ms each on loopback)",
            ),
        ],
        args.json,
    )


if __name__ == "__main__":
    main()
