"""The login guard (fastapi_authkit.loginguard): failures counted per account and per client
address on each store, locks that grow and end, a success that resets the account, 429 with
Retry-After through a real app, the same answer for accounts that do not exist,
X-Forwarded-For believed only from trusted proxies, bounded memory and keys, the store
down (503 closed, let in open), audit events, and two real uvicorn workers on Redis.

Time is the injected clock everywhere except the real-worker test.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx2
import pytest
import redis
from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse
from starlette.testclient import TestClient

from fastapi_authkit import AuthKitMiddleware, ConfigurationError, create_login_guard, create_store
from fastapi_authkit.errors import LoginThrottled
from fastapi_authkit.events import AuthEvent, LoginFailed, LoginLocked, StoreUnavailable
from fastapi_authkit.forwarded import TrustedProxies
from fastapi_authkit.loginguard import LoginGuard, normalize_account
from fastapi_authkit.stores import MemoryStore, RedisStore, SessionStore

from tests.support.clock import Clock
from tests.support.example_server import PINNED, run_example_app
from tests.support.processes import free_port
from tests.support.redis_sentinel import SentinelSet
from tests.support.redis_servers import RedisServer
from tests.support.redis_stores import keys_under, redis_store
from tests.support.tokens import SECRET_KEY, TOKEN_KEY

PASSWORD = "right password"
USERS = {"alice": PASSWORD}

pytestmark = pytest.mark.anyio


def conn(ip: str = "203.0.113.9", xff: str | None = None) -> Request:
    """A login request from ``ip`` (the server's peer), optionally with X-Forwarded-For."""
    headers = [(b"x-forwarded-for", xff.encode())] if xff is not None else []
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/login",
        "headers": headers,
        "client": (ip, 40000),
    }
    return Request(scope)


async def login(guard: LoginGuard, account: str, password: str, request: Request) -> int:
    """What a login route does: 200, 401, or the guard's refusal (429/503)."""
    try:
        async with guard.attempt(request, account=account) as attempt:
            if USERS.get(account) != password:
                attempt.failed()
                return 401
            attempt.succeeded()
            return 200
    except LoginThrottled as exc:
        return exc.status_code


def make_guard(backend: SessionStore, clock: Clock, **options: Any) -> LoginGuard:
    settings: dict[str, Any] = {"max_failures": 3, "base_delay": 10, "max_delay": 40, **options}
    return create_login_guard(backend=backend, clock=clock, **settings)


# --- counting and locking, on every store ------------------------------------------------------


async def test_an_account_locks_after_max_failures(backend: SessionStore, clock: Clock) -> None:
    guard = make_guard(backend, clock)
    assert [await login(guard, "alice", "wrong", conn()) for _ in range(3)] == [401] * 3
    # Locked: even the right password is refused, before it is checked.
    with pytest.raises(LoginThrottled) as refused:
        async with guard.attempt(conn(), account="alice"):
            pytest.fail("let in while locked")
    assert (refused.value.status_code, refused.value.headers) == (429, {"Retry-After": "10"})
    clock.advance(9)
    assert await login(guard, "alice", PASSWORD, conn()) == 429
    clock.advance(1)
    assert await login(guard, "alice", PASSWORD, conn()) == 200


async def test_delays_grow_and_are_capped(backend: SessionStore, clock: Clock) -> None:
    guard = make_guard(backend, clock)
    for _ in range(3):
        await login(guard, "alice", "wrong", conn())
    waits = []
    for _ in range(4):
        with pytest.raises(LoginThrottled) as refused:
            async with guard.attempt(conn(), account="alice"):
                pass
        waits.append(refused.value.retry_after)
        clock.advance(refused.value.retry_after)
        assert await login(guard, "alice", "wrong", conn()) == 401  # one more guess, then locked
    assert waits == [10, 20, 40, 40]


async def test_a_success_resets_the_account_not_the_address(
    backend: SessionStore, clock: Clock
) -> None:
    guard = make_guard(backend, clock, max_address_failures=4)
    for _ in range(2):
        assert await login(guard, "alice", "wrong", conn()) == 401
    assert await login(guard, "alice", PASSWORD, conn()) == 200
    # The account starts again from nothing...
    for _ in range(2):
        assert await login(guard, "alice", "wrong", conn()) == 401
    # ...but the address's two failures before still count: 4 failures lock it.
    assert await login(guard, "alice", PASSWORD, conn()) == 429
    # Another address is not locked, and the account is not either.
    assert await login(guard, "alice", PASSWORD, conn("198.51.100.1")) == 200


async def test_concurrent_guesses_cannot_slip_past_the_limit(
    backend: SessionStore, clock: Clock
) -> None:
    guard = make_guard(backend, clock)
    decided = 0
    all_decided = asyncio.Event()
    release = asyncio.Event()

    def one_decided() -> None:
        nonlocal decided
        decided += 1
        if decided == 20:
            all_decided.set()

    async def guess() -> int:
        try:
            async with guard.attempt(conn(), account="alice") as attempt:
                one_decided()
                await release.wait()  # every guess let in is "hashing" at once
                attempt.failed()
                return 401
        except LoginThrottled as exc:
            one_decided()
            return exc.status_code

    tasks = [asyncio.create_task(guess()) for _ in range(20)]
    await asyncio.wait_for(all_decided.wait(), 10)
    release.set()
    results = await asyncio.gather(*tasks)
    assert sorted(results) == [401] * 3 + [429] * 17


async def test_an_attempt_without_a_verdict_counts_as_failed(
    backend: SessionStore, clock: Clock
) -> None:
    guard = make_guard(backend, clock)
    for _ in range(3):
        with pytest.raises(RuntimeError):
            async with guard.attempt(conn(), account="alice"):
                raise RuntimeError("the user database is down")
    assert await login(guard, "alice", PASSWORD, conn()) == 429


async def test_the_account_name_is_normalized(backend: SessionStore, clock: Clock) -> None:
    guard = make_guard(backend, clock)
    for name in ("Alice", " ALICE ", "\uff21lice"):  # a full-width A
        await login(guard, name, "wrong", conn())
    assert await login(guard, "alice", PASSWORD, conn()) == 429
    assert normalize_account("\uff21LICE ") == "alice"


async def test_unlock_clears_an_account(backend: SessionStore, clock: Clock) -> None:
    guard = make_guard(backend, clock)
    for _ in range(3):
        await login(guard, "alice", "wrong", conn())
    await guard.unlock("Alice")
    assert await login(guard, "alice", PASSWORD, conn()) == 200


async def test_counters_are_forgotten(backend: SessionStore, clock: Clock) -> None:
    guard = make_guard(backend, clock, forget_after=60)
    for _ in range(2):
        await login(guard, "alice", "wrong", conn())
    clock.advance(61)
    for _ in range(2):
        assert await login(guard, "alice", "wrong", conn()) == 401
    assert await login(guard, "alice", PASSWORD, conn()) == 200


# --- through a real app ------------------------------------------------------------------------


def login_app(guard: LoginGuard, events: list[AuthEvent] | None = None) -> FastAPI:
    """A login route as the docs write it; LoginThrottled answers itself (HTTPException).
    With ``events``, the kit's middleware runs with an on_event hook collecting them."""
    app = FastAPI()
    if events is not None:
        store = create_store(secret_key=SECRET_KEY, token_key=TOKEN_KEY, on_event=events.append)
        app.add_middleware(AuthKitMiddleware, store=store)

    @app.post("/login")
    async def route(
        request: Request, username: Annotated[str, Form()], password: Annotated[str, Form()]
    ) -> JSONResponse:
        async with guard.attempt(request, account=username) as attempt:
            if USERS.get(username) != password:
                attempt.failed()
                return JSONResponse({"detail": "wrong name or password"}, status_code=401)
            attempt.succeeded()
        return JSONResponse({"ok": True})

    return app


def client(app: FastAPI, ip: str = "203.0.113.9") -> TestClient:
    return TestClient(app, client=(ip, 40000))


def test_429_with_retry_after_through_an_app(clock: Clock) -> None:
    guard = make_guard(MemoryStore(), clock)
    with client(login_app(guard)) as http:
        for _ in range(3):
            assert (
                http.post("/login", data={"username": "alice", "password": "x"}).status_code == 401
            )
        response = http.post("/login", data={"username": "alice", "password": PASSWORD})
        assert response.status_code == 429
        assert response.headers["retry-after"] == "10"
        assert response.json() == {"detail": "too many sign-in attempts; try again later"}


def test_an_unknown_account_gets_the_same_answers(clock: Clock) -> None:
    def answers(account: str) -> list[tuple[int, str | None, bytes]]:
        guard = make_guard(MemoryStore(), clock)
        with client(login_app(guard)) as http:
            found = []
            for _ in range(5):
                response = http.post("/login", data={"username": account, "password": "x"})
                found.append(
                    (response.status_code, response.headers.get("retry-after"), response.content)
                )
            return found

    assert answers("alice") == answers("nobody-by-this-name")
    assert [status for status, _, _ in answers("nobody")] == [401, 401, 401, 429, 429]


def test_x_forwarded_for_is_ignored_without_a_trusted_proxy(clock: Clock) -> None:
    store = MemoryStore()
    guard = make_guard(store, clock, max_address_failures=3)
    with client(login_app(guard)) as http:
        for n in range(3):  # a new "address" per guess, on a new account each time
            headers = {"X-Forwarded-For": f"198.51.100.{n}"}
            data = {"username": f"user{n}", "password": "x"}
            assert http.post("/login", data=data, headers=headers).status_code == 401
        headers = {"X-Forwarded-For": "198.51.100.99"}
        data = {"username": "alice", "password": PASSWORD}
        # The peer's own address took all three: locked, whatever the header says.
        assert http.post("/login", data=data, headers=headers).status_code == 429
    assert guard.client_address(conn("203.0.113.9", xff="1.2.3.4")) == "203.0.113.9"


def test_x_forwarded_for_is_used_behind_a_trusted_proxy(clock: Clock) -> None:
    guard = make_guard(MemoryStore(), clock, max_address_failures=3, trusted_proxies=["10.0.0.0/8"])
    with client(login_app(guard), ip="10.0.0.2") as http:
        for n in range(3):
            headers = {"X-Forwarded-For": "198.51.100.7"}
            data = {"username": f"user{n}", "password": "x"}
            assert http.post("/login", data=data, headers=headers).status_code == 401
        data = {"username": "alice", "password": PASSWORD}
        locked = http.post("/login", data=data, headers={"X-Forwarded-For": "198.51.100.7"})
        assert locked.status_code == 429
        # Everyone else behind the same proxy still gets in: the proxy is not the client.
        other = http.post("/login", data=data, headers={"X-Forwarded-For": "198.51.100.8"})
        assert other.status_code == 200
    # The client prepends what it likes; the proxy's own entry (the right end) counts.
    spoofed = conn("10.0.0.2", xff="1.2.3.4, 198.51.100.7")
    assert guard.client_address(spoofed) == "198.51.100.7"
    # Through two trusted proxies, the rightmost untrusted entry.
    assert guard.client_address(conn("10.0.0.2", xff="1.2.3.4, 198.51.100.7, 10.1.1.1")) == (
        "198.51.100.7"
    )
    # A peer that is not a trusted proxy: its header is not read.
    assert guard.client_address(conn("192.0.2.1", xff="198.51.100.7")) == "192.0.2.1"
    # Garbage in the chain ends the walk at the last hop trusted to have written it.
    assert guard.client_address(conn("10.0.0.2", xff="not-an-ip")) == "10.0.0.2"


def test_ipv6_counts_by_its_64() -> None:
    proxies = TrustedProxies(())
    guard = create_login_guard(backend=MemoryStore())
    assert guard.client_address(conn("2001:db8:1:2::1")) == "2001:db8:1:2::/64"
    assert guard.client_address(conn("2001:db8:1:2:ffff::9")) == "2001:db8:1:2::/64"
    assert guard.client_address(conn("::ffff:192.0.2.1")) == "192.0.2.1"
    assert guard.client_address(conn("testclient")) is None
    assert not proxies


def test_events_for_failures_and_lockouts(clock: Clock) -> None:
    events: list[AuthEvent] = []
    guard = make_guard(MemoryStore(), clock, trusted_proxies=["10.0.0.1"])
    with client(login_app(guard, events), ip="10.0.0.1") as http:
        for _ in range(4):
            http.post(
                "/login",
                data={"username": "Alice", "password": "hunter2"},
                headers={"X-Forwarded-For": "198.51.100.7"},
            )
    failed = [e for e in events if isinstance(e, LoginFailed)]
    locked = [e for e in events if isinstance(e, LoginLocked)]
    assert [(e.account, e.failures, e.ip) for e in failed] == [
        ("alice", 1, "198.51.100.7"),
        ("alice", 2, "198.51.100.7"),
        ("alice", 3, "198.51.100.7"),
    ]
    assert len(locked) == 1
    assert (locked[0].locked, locked[0].failures, locked[0].until) == ("account", 3, clock() + 10)
    # No event holds the password tried.
    assert all("hunter2" not in repr(e) for e in events)


async def test_on_redis_behind_sentinel(sentinel_set: SentinelSet, clock: Clock) -> None:
    store = RedisStore.from_url(sentinel_set.url, prefix=f"guard-{uuid.uuid4().hex}:")
    try:
        guard = make_guard(store, clock)
        assert [await login(guard, "alice", "wrong", conn()) for _ in range(4)] == [401] * 3 + [429]
        clock.advance(10)
        assert await login(guard, "alice", PASSWORD, conn()) == 200
    finally:
        await store.aclose()


# --- bounded memory and keys -------------------------------------------------------------------


async def test_memory_holds_at_most_max_throttles(clock: Clock) -> None:
    store = MemoryStore(max_throttles=100)
    guard = make_guard(store, clock)
    for n in range(1000):  # many names from many addresses
        await login(guard, f"user{n}", "wrong", conn(f"198.51.{n // 256}.{n % 256}"))
    assert len(store._throttles) == 100
    with pytest.raises(ConfigurationError):
        MemoryStore(max_throttles=0)


@pytest.mark.parametrize("kind", ["redis", "cluster"])
async def test_every_redis_key_expires(request: pytest.FixtureRequest, kind: str) -> None:
    store = redis_store(request, kind, "guard")
    clock = Clock(time.time())  # Redis's own expiry runs on the wall clock
    guard = make_guard(store, clock, forget_after=600)
    try:
        for n in range(30):
            await login(guard, f"user{n}", "wrong", conn(f"198.51.100.{n}"))
        await login(guard, "alice", PASSWORD, conn())
        prefix = store._keys.prefix
        found = await keys_under(store, prefix)
        keys = [key for per_node in found.values() for key in per_node]
        assert len(keys) == 61  # 30 accounts (alice's was reset: gone) + 31 addresses
        for primary in await store.topology.primaries():
            for key in [k async for k in primary.scan_iter(match=f"{prefix}*")]:
                assert 0 < await primary.pttl(key) <= 600_000 + 60_000  # + the backstop
                # No account name in a key.
                assert b"user" not in key
        if kind == "cluster":
            assert sum(1 for per_node in found.values() if per_node) > 1  # spread over nodes
    finally:
        await store.aclose()


# --- the store down ---------------------------------------------------------------------------


def dead_store() -> RedisStore:
    return RedisStore.from_url(f"redis://127.0.0.1:{free_port()}", timeout=0.2)


def test_store_down_fails_closed_with_503(clock: Clock) -> None:
    events: list[AuthEvent] = []
    guard = make_guard(dead_store(), clock)
    with client(login_app(guard, events)) as http:
        response = http.post("/login", data={"username": "alice", "password": PASSWORD})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert [e.operation for e in events if isinstance(e, StoreUnavailable)] == ["login_guard"]


def test_store_down_fails_open_when_told(clock: Clock) -> None:
    guard = make_guard(dead_store(), clock, fail_open=True)
    with client(login_app(guard)) as http:
        ok = http.post("/login", data={"username": "alice", "password": PASSWORD})
        wrong = http.post("/login", data={"username": "alice", "password": "x"})
    assert (ok.status_code, wrong.status_code) == (200, 401)


@pytest.mark.parametrize(
    "options",
    [
        {"max_failures": 0},
        {"max_failures": True},
        {"max_address_failures": 0},
        {"base_delay": 0},
        {"max_delay": 0.5, "base_delay": 1},
        {"forget_after": -1},
        {"fail_open": "no"},
        {"trusted_proxies": "10.0.0.1"},
        {"trusted_proxies": ["not a network"]},
        {"clock": 5},
    ],
)
def test_bad_configuration_fails_at_creation(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        create_login_guard(backend=MemoryStore(), **options)


def test_a_backend_must_be_a_store() -> None:
    with pytest.raises(ConfigurationError):
        create_login_guard(backend=object())  # type: ignore[arg-type]


# --- two real uvicorn workers on a real redis-server ------------------------------------------


@pytest.fixture
def guard_site(tmp_path: Path, redis_server: RedisServer) -> Iterator[tuple[str, str]]:
    prefix = f"guard-{uuid.uuid4().hex}:"
    env = {
        "AUTHKIT_REDIS_URL": redis_server.url,
        "GUARD_PREFIX": prefix,
        "GUARD_TRUSTED": "",
        # uvicorn itself believes X-Forwarded-For from 127.0.0.1 by default (it rewrites
        # scope["client"]), and the test's clients are on 127.0.0.1: turned off, so that
        # the app sees the peer as a server facing the internet directly would.
        "UVICORN_PROXY_HEADERS": "false",
    }
    with run_example_app(
        tmp_path, env, workers=2, app="tests.support.guard_app:app", ready_path="/ready"
    ) as base_url:
        yield base_url, prefix


def pinned_clients(base_url: str) -> dict[str, httpx2.Client]:
    """One keep-alive connection to each worker, by the pid it answers with."""
    workers: dict[str, httpx2.Client] = {}
    spare: list[httpx2.Client] = []
    for _ in range(200):
        http = httpx2.Client(base_url=base_url, timeout=10.0, limits=PINNED)
        pid = http.get("/ready").headers["x-worker"]
        if pid in workers:
            spare.append(http)
        else:
            workers[pid] = http
        if len(workers) == 2:
            break
    for http in spare:
        http.close()
    assert len(workers) == 2, "the kernel never handed a connection to the second worker"
    return workers


@pytest.mark.realserver
def test_two_workers_share_the_lock(guard_site: tuple[str, str], redis_server: RedisServer) -> None:
    base_url, prefix = guard_site
    workers = pinned_clients(base_url)
    both = list(workers.values())
    try:
        answers = []
        for n in range(20):
            response = both[n % 2].post("/login", data={"username": "alice", "password": "no"})
            answers.append((response.status_code, response.headers["x-worker"]))
        statuses = [status for status, _ in answers]
        assert {worker for _, worker in answers} == set(workers)
        # Five guesses (a few more only if a lock of 2 s ran out meanwhile, on a busy
        # machine), then 429s.
        assert statuses[:5] == [401] * 5
        assert statuses.count(401) <= 7
        assert statuses[-1] == 429
        # The right password during the lock is refused by either worker...
        waits = []
        for http in both:
            refused = http.post("/login", data={"username": "alice", "password": "right password"})
            assert refused.status_code == 429
            waits.append(int(refused.headers["retry-after"]))
        # (Retry-After rounds the lock's remaining time up; max_delay is 4 s.)
        assert all(1 <= wait <= 4 for wait in waits)
        # ...and accepted once it ran out.
        time.sleep(waits[-1] + 0.1)
        ok = both[1].post("/login", data={"username": "alice", "password": "right password"})
        assert ok.status_code == 200

        # An attacker varying X-Forwarded-For (no trusted proxy): every guess is counted
        # under the one real peer address, and the account locks just the same.
        spoofed = []
        for n in range(10):
            response = both[n % 2].post(
                "/login",
                data={"username": "bob", "password": "guess"},
                headers={"X-Forwarded-For": f"198.51.100.{n}"},
            )
            spoofed.append(response.status_code)
        assert spoofed[:5] == [401] * 5
        assert spoofed[-1] == 429
        keys = redis.Redis.from_url(redis_server.url).keys(f"{prefix}lg:i:*")
        assert keys == [f"{prefix}lg:i:127.0.0.1".encode()]
    finally:
        for http in both:
            http.close()
