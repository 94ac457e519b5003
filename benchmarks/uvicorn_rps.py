"""Requests per second through a real uvicorn worker: authenticated vs unauthenticated.

One uvicorn process (asyncio loop, h11, no access log) serves ``benchmarks.bench_app``
(fastapi-authkit with refresh configured, not due). A load generator in a second process
drives it over loopback: ``wrk`` when installed (``apt-get install wrk``; ``scripts/bench``
installs it), else ``benchmarks.loadgen``. Authenticated: ``GET /me`` with the five
session cookies from a real ``/login`` (``Depends(current_user)``). Unauthenticated:
``GET /health`` without cookies (the middleware still runs). Also shown, without a target:
``GET /health`` with a Cookie header as large as the session's under names the kit does
not read (what a bigger request costs uvicorn), and ``GET /noop``, a route with a no-op
dependency, with the session's cookies (what FastAPI's dependency resolution costs any
dependency-based auth; the kit's own share is authenticated vs this).
Runs rotate order over several rounds; ratios are medians of per-round ratios.

Target: authenticated >= 0.85x the unauthenticated requests per second.

    .venv/bin/python -m benchmarks.uvicorn_rps [--duration 5] [--rounds 3] [--connections 16]
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import shutil
import subprocess
import sys

from benchmarks.bench_app import Settings
from benchmarks.cookies import cookie_header
from benchmarks.http_client import http_get
from benchmarks.servers import uvicorn_server, workdir
from benchmarks.stats import median, paired_ratio
from benchmarks.targets import TIMES, Target, bench_parser, finish, ratio_target, stop_on_sigterm

from tests.support.processes import REPO_ROOT

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}
UNAUTH = "unauthenticated GET /health"
AUTH = "authenticated GET /me"
FOREIGN = "GET /health, same-size foreign cookies"
NOOP = "GET /noop (no-op dependency), same cookies"


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise RuntimeError(f"unexpected wrk latency {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def run_wrk(
    port: int, path: str, cookie: str, connections: int, duration: float
) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    if cookie:
        command += ["-H", f"Cookie: {cookie}"]
    command.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=duration + 30)
    text = out.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if rps is None:
        raise RuntimeError(f"unexpected wrk output:\n{text}{out.stderr}")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(r"Socket errors:.*", text)
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", text, re.MULTILINE))
    return {
        "rps": float(rps.group(1)),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "errors": 1 if errors else 0,
        "p50_ms": _ms(latency["50"]),
        "p99_ms": _ms(latency["99"]),
    }


def run_python(
    port: int, path: str, cookie: str, connections: int, duration: float
) -> dict[str, float]:
    command = [sys.executable, "-m", "benchmarks.loadgen", "--port", str(port), "--path", path]
    command += ["--cookie", cookie, "--connections", str(connections), "--duration", str(duration)]
    out = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=duration + 30, cwd=REPO_ROOT
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def measure(duration: float, rounds: int, connections: int) -> list[Target]:
    wrk = shutil.which("wrk") is not None
    load = run_wrk if wrk else run_python
    tool = f"wrk -t1 -c{connections}" if wrk else f"benchmarks.loadgen ({connections} connections)"
    if not wrk:
        print("wrk: not installed (apt-get install wrk); using the Python load generator")
    settings = Settings(secret=secrets.token_urlsafe(32))
    with (
        workdir("rps") as directory,
        uvicorn_server(
            "benchmarks.bench_app:app", directory=directory, env=settings.env()
        ) as server,
    ):
        login = asyncio.run(http_get(server.port, "/login"))
        cookies = login.set_cookies()
        cookie = cookie_header(cookies).decode()
        me = asyncio.run(http_get(server.port, "/me", cookies))
        if login.status != 200 or me.status != 200 or me.json()["user"] != "alice":
            raise RuntimeError(f"login/me failed: {login.status} {me.status} {me.body!r}")
        if me.set_cookies():
            raise RuntimeError("a steady-state request must not set cookies")
        # The same Cookie header under names the kit does not read: what a request that big
        # costs uvicorn and the middleware without any token work (no target).
        foreign = cookie_header({"x" + name[1:]: value for name, value in cookies.items()})
        variants = {
            UNAUTH: ("/health", ""),
            AUTH: ("/me", cookie),
            FOREIGN: ("/health", foreign.decode()),
            NOOP: ("/noop", cookie),
        }
        for path, header in variants.values():  # warm-up
            load(server.port, path, header, connections, 1.0)
        results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
        names = list(variants)
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                path, header = variants[name]
                result = load(server.port, path, header, connections, duration)
                if result["non_2xx"] or result["errors"]:
                    raise RuntimeError(f"{name}: errors under load: {result}")
                results[name].append(result)

    print(
        f"\nuvicorn: 1 worker (asyncio, h11), {tool}, loopback, {rounds} rounds of "
        f"{duration:g} s each, order rotating; ratios are medians of per-round ratios"
    )
    print(
        f"{'route':42s} {'req/s':>7s} {'min':>7s} {'max':>7s} {'vs unauth':>9s} "
        f"{'p50 ms':>7s} {'p99 ms':>7s}"
    )
    rps = {name: [run["rps"] for run in runs] for name, runs in results.items()}
    for name, runs in results.items():
        print(
            f"{name:42s} {median(rps[name]):7.0f} {min(rps[name]):7.0f} {max(rps[name]):7.0f} "
            f"{paired_ratio(rps[name], rps[UNAUTH]):8.2f}{TIMES} "
            f"{median([run['p50_ms'] for run in runs]):7.2f} "
            f"{median([run['p99_ms'] for run in runs]):7.2f}"
        )
    print(
        f"  info: authenticated vs the no-op dependency route: "
        f"{paired_ratio(rps[AUTH], rps[NOOP]):.2f}{TIMES} (no target)"
    )
    ratio = paired_ratio(rps[AUTH], rps[UNAUTH])
    return [ratio_target("uvicorn req/s authenticated vs unauthenticated", ratio, ">=", 0.85)]


def main() -> None:
    parser = bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    stop_on_sigterm()
    finish(measure(args.duration, args.rounds, args.connections), args.json)


if __name__ == "__main__":
    main()
