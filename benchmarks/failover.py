"""How long a Sentinel failover keeps signed-in users from being served, under load, with
``wait_replicas=1``: two uvicorn workers of the built-in issuer (``benchmarks.issuer_app``)
on a ``redis+sentinel://`` URL, a primary with one or two replicas and three Sentinels
(quorum 2), all on loopback.

Each of N users (40 by default) signs in once, then loops on its own keep-alive
connection: a plain authenticated ``GET /me`` (a *read*: the access token and the session
check) and the same request without the access cookie (a *write*: the refresh token is
rotated, which ``wait_replicas=1`` makes wait for a replica's confirmation), with a short
pause between requests. Each trial waits until the deployment is settled (every Sentinel
names one primary, every replica is in sync) and every request succeeds, then pauses the
primary (SIGSTOP for 2 s, then SIGCONT: long enough for Sentinel, which takes it for down
after ``down-after-milliseconds``, to promote a replica) and measures, for reads and for
writes, the window: from the pause to the first 200 answer to a request sent after the last
failed one. Also counted: the 503s (expected, with ``Retry-After``), other 5xx answers and
dropped connections (must be 0), and sessions lost (must be 0): a 401 at any time, or a
user whose latest cookies no longer refresh once the trial is over.

Variants (``--variants``, each ``<replicas>:<timings>``):

* replicas 1 or 2. With one replica, the promoted replica has no replica of its own until
  Sentinel turns the old primary (back after the pause, still a primary in its own eyes)
  into one, and until then no write can be confirmed;
* timings ``default``: ``down-after-milliseconds 1000`` (so that a 2 s pause is a failure
  at all; Redis's own default, 30 s, would ride it out: 503 for the pause, no failover) and
  Redis's default ``failover-timeout`` (180 s); ``short``: ``down-after-milliseconds 500``
  and ``failover-timeout 2000``; ``debug``: ``short`` plus ``SENTINEL DEBUG info-period 1000
  publish-period 500`` (Redis 7; a returning old primary is made a replica once it has
  answered as a primary for 4 publish periods, seen at an INFO round: 8-18 s by default).

Targets: no 5xx other than 503 and no dropped connection; no session lost. The windows are
reported (p50 and max over the trials), with a generous bound on the writes' window:
<= 30 s, twice the worst the issue reported (13 s) plus an INFO round, to catch a failover
that never completes, not to grade Sentinel.

    .venv/bin/python -m benchmarks.failover [--trials 2] [--users 40]
        [--variants 1:default 2:default 1:short 1:debug]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import redis
import redis.asyncio

from benchmarks.http_client import HttpClient
from benchmarks.servers import redis_sentinel, uvicorn_server, workdir
from benchmarks.stats import percentile
from benchmarks.targets import Target, bench_parser, finish, stop_on_sigterm

from tests.support.redis_sentinel import SENTINEL_SERVICE, SentinelSet

ACCESS, REFRESH = "_auth", "_auth_refresh"
PAUSE = 2.0
THINK = 0.05  # between one user's requests
SETTLED_FOR = 2.0  # every request succeeds for this long before the pause
RECOVERED_FOR = 3.0  # ... and after the window, before the trial ends
CAP = 45.0  # a trial gives up this long after the pause
WRITE_LIMIT = 30.0


@dataclass(frozen=True)
class Timings:
    down_after_ms: int
    failover_timeout_ms: int
    debug: Mapping[str, int] | None = None

    def describe(self) -> str:
        text = f"down-after {self.down_after_ms} ms, failover-timeout {self.failover_timeout_ms} ms"
        if self.debug:
            text += ", SENTINEL DEBUG " + " ".join(f"{k} {v}" for k, v in self.debug.items())
        return text


TIMINGS = {
    "default": Timings(1000, 180_000),
    "short": Timings(500, 2000),
    "debug": Timings(500, 2000, {"info-period": 1000, "publish-period": 500}),
}


@dataclass(frozen=True)
class Answer:
    kind: str  # "read" or "write"
    sent: float
    done: float
    status: int  # 0: the connection dropped


@dataclass
class Trial:
    answers: list[Answer] = field(default_factory=list)
    paused_at: float = 0.0
    promoted_at: float | None = None  # a Sentinel names another primary
    rejoined_at: float | None = None  # the old primary replicates the new one
    lost: int = 0
    lost_at: list[tuple[str, float, int]] = field(default_factory=list)  # kind, when, status
    retry_after_missing: int = 0

    def window(self, kind: str) -> float | None:
        """From the pause to the first 200 answer to a request sent after the last failed
        one (0 if none failed); None if it never came."""
        mine = [a for a in self.answers if a.kind == kind and a.done >= self.paused_at]
        failed = [a for a in mine if a.status != 200]
        if not failed:
            return 0.0
        last = max(a.sent for a in failed)
        after = [a.done for a in mine if a.status == 200 and a.sent >= last]
        return min(after) - self.paused_at if after else None

    def count(self, kind: str, status: int) -> int:
        return sum(1 for a in self.answers if a.kind == kind and a.status == status)

    def errors(self) -> int:
        return sum(
            1 for a in self.answers if a.status == 0 or (a.status >= 500 and a.status != 503)
        )


def jar_after(jar: Mapping[str, str], headers: list[tuple[str, str]]) -> dict[str, str]:
    from benchmarks.cookies import parse_set_cookies

    new = dict(jar)
    for name, value in parse_set_cookies([v for k, v in headers if k == "set-cookie"]).items():
        if value:
            new[name] = value
        else:
            new.pop(name, None)
    return new


class User:
    def __init__(self, port: int, name: str) -> None:
        self.port, self.name = port, name
        self.jar: dict[str, str] = {}
        self.client: HttpClient | None = None

    async def request(self, kind: str) -> tuple[int, list[tuple[str, str]]]:
        """One read, write or sign-in; status 0 if the connection dropped."""
        if kind == "login":
            path, cookies = f"/login?sub={self.name}", {}
        elif kind == "write":
            path, cookies = "/me", {k: v for k, v in self.jar.items() if k != ACCESS}
        else:
            path, cookies = "/me", self.jar
        try:
            if self.client is None:
                self.client = await HttpClient.connect(self.port)
            async with asyncio.timeout(10):
                response = await self.client.get(HttpClient.encode(self.port, path, cookies))
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            if self.client is not None:
                await self.client.close()
            self.client = None
            return 0, []
        if response.status == 200:
            self.jar = jar_after(self.jar, response.headers)
        return response.status, response.headers

    async def sign_in(self) -> None:
        for _ in range(100):
            status, _ = await self.request("login")
            if status == 200:
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} could not sign in")

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()


async def drive(user: User, trial: Trial, stop: asyncio.Event) -> None:
    while not stop.is_set():
        for kind in ("read", "write"):
            sent = time.monotonic()
            status, headers = await user.request(kind)
            trial.answers.append(Answer(kind, sent, time.monotonic(), status))
            if status == 503 and not any(k == "retry-after" for k, _ in headers):
                trial.retry_after_missing += 1
            if status == 401:  # the session is gone: count it, carry on with a new one
                trial.lost += 1
                trial.lost_at.append((kind, sent - trial.paused_at, status))
                user.jar = {}
                await user.sign_in()
            await asyncio.sleep(THINK)


def settled(group: SentinelSet) -> bool:
    """Every Sentinel names the same primary, which is not taken for down; every other
    node replicates it, caught up and counted by ``WAIT``."""
    try:
        named = set()
        for port in group.sentinel_ports:
            with redis.Redis(port=port, socket_timeout=1, decode_responses=True) as sentinel:
                master = sentinel.sentinel_master(SENTINEL_SERVICE)
                replicas = sentinel.sentinel_slaves(SENTINEL_SERVICE)
            if master["flags"] != "master":  # not down, no failover under way
                return False
            if any(r["is_sdown"] or r["is_disconnected"] for r in replicas):
                return False
            if len(replicas) != len(group.data_ports) - 1:
                return False
            named.add(int(master["port"]))
        if len(named) != 1:
            return False
        primary = named.pop()
        for port in group.data_ports:
            if port == primary:
                continue
            with redis.Redis(port=port, socket_timeout=1) as node:
                info = node.info("replication")
            if info["role"] != "slave" or info["master_port"] != primary:
                return False
            if info["master_link_status"] != "up":
                return False
        with redis.Redis(port=primary, socket_timeout=1) as node:
            if node.info("replication")["role"] != "master":
                return False
            pipe = node.pipeline(transaction=False)
            pipe.set("failover-bench:probe", time.monotonic())
            pipe.execute_command("WAIT", len(group.data_ports) - 1, 100)
            return bool(pipe.execute()[1] == len(group.data_ports) - 1)
    except (redis.RedisError, KeyError):
        return False


def current_primary(group: SentinelSet) -> int:
    with redis.Redis(port=group.sentinel_ports[0], decode_responses=True) as sentinel:
        return int(sentinel.sentinel_get_master_addr_by_name(SENTINEL_SERVICE)[1])


async def watch(group: SentinelSet, old: int, trial: Trial, resumed: asyncio.Event) -> None:
    """Note when a Sentinel first names another primary and when the old one replicates."""
    sentinels = [redis.asyncio.Redis(port=p, socket_timeout=0.5) for p in group.sentinel_ports]
    node = redis.asyncio.Redis(port=old, socket_timeout=0.5, decode_responses=True)
    try:
        while trial.promoted_at is None or trial.rejoined_at is None:
            with contextlib.suppress(redis.RedisError, OSError):
                if trial.promoted_at is None:
                    for sentinel in sentinels:
                        _, port = await sentinel.sentinel_get_master_addr_by_name(SENTINEL_SERVICE)
                        if int(port) != old:
                            trial.promoted_at = time.monotonic()
                            break
                if resumed.is_set() and trial.promoted_at is not None and trial.rejoined_at is None:
                    info = await node.info("replication")
                    if info["role"] == "slave" and info["master_link_status"] == "up":
                        trial.rejoined_at = time.monotonic()
            await asyncio.sleep(0.1)
    finally:
        for client in [*sentinels, node]:
            await client.aclose()


def recent_ok(trial: Trial, since: float) -> bool:
    recent = [a for a in trial.answers if a.sent >= since]
    kinds = {a.kind for a in recent if a.status == 200}
    return kinds == {"read", "write"} and all(a.status == 200 for a in recent)


async def run_trial(group: SentinelSet, users: list[User]) -> Trial:
    deadline = time.monotonic() + 60
    while not await asyncio.to_thread(settled, group):
        if time.monotonic() > deadline:
            raise RuntimeError("the deployment did not settle within 60 s")
        await asyncio.sleep(0.2)
    trial, stop = Trial(), asyncio.Event()
    tasks = [asyncio.create_task(drive(user, trial, stop)) for user in users]
    try:
        start = time.monotonic()
        while not (
            time.monotonic() - start > SETTLED_FOR
            and recent_ok(trial, time.monotonic() - SETTLED_FOR)
        ):
            if time.monotonic() - start > 30:
                raise RuntimeError("requests still failing 30 s into a settled deployment")
            await asyncio.sleep(0.1)
        trial.answers.clear()
        trial.lost = trial.retry_after_missing = 0
        old = current_primary(group)
        with redis.Redis(port=old) as node:
            pid = int(node.info("server")["process_id"])
        resumed = asyncio.Event()
        watcher = asyncio.create_task(watch(group, old, trial, resumed))
        trial.paused_at = time.monotonic()
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(PAUSE)
        finally:
            os.kill(pid, signal.SIGCONT)
        resumed.set()
        while not (
            time.monotonic() - trial.paused_at > PAUSE + RECOVERED_FOR
            and recent_ok(trial, time.monotonic() - RECOVERED_FOR)
        ):
            if time.monotonic() - trial.paused_at > CAP:
                break
            await asyncio.sleep(0.1)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    # Every session's latest cookies must still refresh (503s retried for 20 s in all).
    give_up = time.monotonic() + 20
    for user in users:
        while True:
            status, headers = await user.request("write")
            if status != 503 or time.monotonic() > give_up:
                break
            await asyncio.sleep(0.2)
        if status == 401 or (status == 200 and not any(REFRESH in v for k, v in headers)):
            trial.lost += 1
            trial.lost_at.append(("final", time.monotonic() - trial.paused_at, status))
            user.jar = {}
            await user.sign_in()
    return trial


async def run_variant(port: int, group: SentinelSet, users: int, trials: int) -> list[Trial]:
    people = [User(port, f"user-{i}") for i in range(users)]
    try:
        deadline = time.monotonic() + 60
        while not await asyncio.to_thread(settled, group):
            if time.monotonic() > deadline:
                raise RuntimeError("the deployment did not settle within 60 s")
            await asyncio.sleep(0.2)
        await asyncio.gather(*(user.sign_in() for user in people))
        return [await run_trial(group, people) for _ in range(trials)]
    finally:
        for user in people:
            await user.close()


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}"


def summary(values: list[float | None]) -> str:
    if any(v is None for v in values):
        return f"not recovered within {CAP:.0f} s in {values.count(None)} trial(s)"
    done = [v for v in values if v is not None]
    return f"p50 {percentile(done, 0.5):.1f} s, max {max(done):.1f} s"


def measure(variant: str, users: int, trials: int) -> tuple[list[Trial], str]:
    replicas, timings_name, *rest = variant.split(":")
    wait = rest[0].removeprefix("w") if rest else "1"
    timings = TIMINGS[timings_name]
    secret = secrets.token_urlsafe(32)
    with (
        workdir("failover") as directory,
        redis_sentinel(
            directory,
            replicas=int(replicas),
            sentinels=3,
            down_after_ms=timings.down_after_ms,
            failover_timeout_ms=timings.failover_timeout_ms,
            sentinel_debug=timings.debug,
        ) as group,
    ):
        env = {
            "BENCH_SECRET": secret,
            "BENCH_REDIS_URL": group.url,
            "BENCH_WAIT_REPLICAS": wait,
        }
        with uvicorn_server(
            "benchmarks.issuer_app:app", directory=directory, env=env, workers=2
        ) as server:
            results = asyncio.run(run_variant(server.port, group, users, trials))
    label = (
        f"{replicas} replica{'s' if replicas != '1' else ''}, wait_replicas={wait}, "
        f"{timings.describe()}"
    )
    return results, label


def report(label: str, results: list[Trial]) -> None:
    print(f"\n{label}")
    print(
        f"  {'trial':>5s} {'promoted s':>10s} {'rejoined s':>10s} {'reads s':>8s} "
        f"{'writes s':>8s} {'read 503':>8s} {'write 503':>9s} {'5xx/drop':>8s} {'lost':>4s}"
    )
    for i, t in enumerate(results, 1):
        promoted = None if t.promoted_at is None else t.promoted_at - t.paused_at
        rejoined = None if t.rejoined_at is None else t.rejoined_at - t.paused_at
        print(
            f"  {i:5d} {seconds(promoted):>10s} {seconds(rejoined):>10s} "
            f"{seconds(t.window('read')):>8s} {seconds(t.window('write')):>8s} "
            f"{t.count('read', 503):8d} {t.count('write', 503):9d} {t.errors():8d} {t.lost:4d}"
        )
    for t in results:
        if t.lost_at:
            print("  sessions lost (request, s after the pause, status):", t.lost_at[:10])
    print(f"  reads:  {summary([t.window('read') for t in results])}")
    print(f"  writes: {summary([t.window('write') for t in results])}")


def main() -> None:
    parser = bench_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=2, help="pauses per variant")
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["1:default", "2:default", "2:default:w2", "1:short"],
        help="<replicas>:<timings>[:w<wait_replicas>] (wait_replicas 1 unless given), "
        "timings one of " + ", ".join(TIMINGS),
    )
    args = parser.parse_args()
    stop_on_sigterm()
    every: list[Trial] = []
    writes: list[float | None] = []
    started = time.monotonic()
    print(
        f"failover: 2 uvicorn workers, {args.users} users, 3 Sentinels "
        f"(quorum 2); the primary paused {PAUSE:.0f} s per trial; seconds from the pause"
    )
    for variant in args.variants:
        results, label = measure(variant, args.users, args.trials)
        report(label, results)
        every += results
        writes += [t.window("write") for t in results]
    print(f"\n({time.monotonic() - started:.0f} s in all)")
    errors = sum(t.errors() for t in every)
    lost = sum(t.lost for t in every)
    missing = sum(t.retry_after_missing for t in every)
    answers = sum(len(t.answers) for t in every)
    worst = None if any(w is None for w in writes) else max(w for w in writes if w is not None)
    finish(
        [
            Target(
                "no 5xx but 503 (with Retry-After), no dropped connection",
                errors == 0 and missing == 0,
                f"{errors} other 5xx or dropped, {missing} 503 without Retry-After, "
                f"in {answers} answers over {len(every)} failovers",
            ),
            Target(
                "no session lost",
                lost == 0,
                f"{lost} lost ({args.users} users x {len(every)} failovers)",
            ),
            Target(
                f"writes served again within {WRITE_LIMIT:.0f} s of the pause (max)",
                worst is not None and worst <= WRITE_LIMIT,
                f"max {seconds(worst)} s (a bound that catches a failover that never ends)",
            ),
        ],
        args.json,
    )


if __name__ == "__main__":
    main()
