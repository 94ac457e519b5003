"""When the data under the views is not what they learned from: flushed (``FLUSHALL``),
swapped (``SWAPDB``) or gone key by key (what eviction does), then a sign-out. The old
cookies must be refused by every worker within ``max_lag``, and the sign-out must say what
really happened: whether the store still had the session depends on whether the sign-out's
worker had noticed yet, so each case is tested where it is certain (views that cannot
notice, and a wait until the view has). Also the server setting the kit needs
(``maxmemory-policy noeviction``).

Two in-process apps on the built-in issuer, each with its own RedisStore on one prefix of
a real redis-server of the test's own, stand for two workers (real uvicorn workers are in
test_worker_revocation.py). Waits are bounded polls.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest
from redis.asyncio import Redis

from fastapi_authkit import ConfigurationError, StoreUnavailableError
from fastapi_authkit.events import AuthEvent, RevokedSession, SignedOut
from fastapi_authkit.stores import RedisStore
from fastapi_authkit.stores.redis.keys import KeyLayout

from tests.support.apps import issuer_app
from tests.support.clock import Clock
from tests.support.redis_servers import RedisServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio

PREFIX = "ep:"
MAX_LAG = 0.1
# "Within max_lag", on a 2-core machine shared with other test runs: the bound a test can
# hold without flaking; how long it really took is asserted separately, more loosely.
BOUND = 2.0
# A max_lag whose heartbeats (every max_lag / 4, the first one sent when the view
# subscribes) do not come round again during a test, and whose trust does not lapse in one:
# such a view cannot notice a flush or swap, nor stop vouching when a loaded machine holds
# its heartbeats back, so a request after one is answered from what it learned before;
# only a revocation message changes it.
UNNOTICED = 3600.0


class App:
    """One worker: its store, and an HTTP client for its app."""

    def __init__(self, store: RedisStore, http: httpx2.AsyncClient) -> None:
        self.store = store
        self.http = http

    async def get(self, jar: dict[str, str], path: str = "/me") -> httpx2.Response:
        self.http.cookies.clear()
        return await self.http.get(path, headers=_cookie(jar))

    async def post(self, jar: dict[str, str], path: str) -> httpx2.Response:
        self.http.cookies.clear()
        headers = {**_cookie(jar), "x-csrf-token": jar["_auth_csrf"]}
        return await self.http.post(path, headers=headers)

    async def served_from_view(self, jar: dict[str, str], clock: Clock) -> bool:
        response = await self.get(jar)
        assert response.status_code == 200, response.text
        return self.store.known_active(_family(jar), clock()) is True

    async def refused(self, jar: dict[str, str]) -> bool:
        return (await self.get(jar)).status_code == 401


def _cookie(jar: dict[str, str]) -> dict[str, str]:
    return {"cookie": "; ".join(f"{k}={v}" for k, v in jar.items())}


def _family(jar: dict[str, str]) -> str:
    return str(jwt.decode(jar["_auth"], options={"verify_signature": False})["sid"])


@contextlib.asynccontextmanager
async def two_apps(
    url: str, clock: Clock, seen: list[AuthEvent], *, max_lag: float = MAX_LAG
) -> AsyncIterator[tuple[App, App]]:
    stores = [RedisStore.from_url(url, prefix=PREFIX, max_lag=max_lag) for _ in range(2)]
    clients = [
        httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=issuer_app(store, clock, on_event=seen.append)),
            base_url="https://testserver",
        )
        for store in stores
    ]
    try:
        yield App(stores[0], clients[0]), App(stores[1], clients[1])
    finally:
        for client in clients:
            await client.aclose()
        for store in stores:
            await store.aclose()


@pytest.fixture
def seen() -> list[AuthEvent]:
    return []


@pytest.fixture
async def apps(
    own_redis: RedisServer, clock: Clock, seen: list[AuthEvent]
) -> AsyncIterator[tuple[App, App]]:
    async with two_apps(own_redis.url, clock, seen) as pair:
        yield pair


@pytest.fixture
async def steady_apps(
    own_redis: RedisServer, clock: Clock, seen: list[AuthEvent]
) -> AsyncIterator[tuple[App, App]]:
    """Two workers whose views only revocation messages change (see UNNOTICED)."""
    async with two_apps(own_redis.url, clock, seen, max_lag=UNNOTICED) as pair:
        yield pair


@pytest.fixture
async def admin(own_redis: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(own_redis.url)
    yield client
    await client.aclose()


async def signed_in_everywhere(apps: tuple[App, App], clock: Clock) -> dict[str, str]:
    """Alice signed in on the first worker; both workers answer her from their views."""
    a, _ = apps
    assert (await a.http.post("/login?as=alice")).status_code == 200
    jar = dict(a.http.cookies.items())
    for app in apps:
        await eventually(lambda app=app: app.served_from_view(jar, clock))
    return jar


async def refused_everywhere(apps: tuple[App, App], jar: dict[str, str]) -> float:
    """How long until both workers refuse ``jar`` (bounded)."""
    started = time.monotonic()
    for app in apps:
        await eventually(lambda app=app: app.refused(jar), within=BOUND)
    return time.monotonic() - started


async def session_keys_gone(admin: Redis, family: str, *, subject: bool = False) -> None:
    """What eviction (or an expiry, or an operator's DEL) does to one session: its keys
    vanish one by one, while everything else (the epoch key too) stays."""
    keys = KeyLayout(PREFIX)
    doomed = [keys.family(family), keys.session(family)]
    doomed += [key async for key in admin.scan_iter(match=f"{PREFIX}rt:*{family}*")]
    if subject:
        doomed.append(keys.subject("alice"))
    assert await admin.delete(*doomed) >= 2


def signed_out(seen: list[AuthEvent]) -> SignedOut:
    (event,) = [e for e in seen if isinstance(e, SignedOut)]
    return event


# --- the data changed identity: every view resets, without any sign-out -----------------


@pytest.mark.parametrize("command", [("FLUSHALL",), ("FLUSHDB",), ("SWAPDB", 0, 1)])
async def test_data_flushed_or_swapped_ends_every_views_trust(
    apps: tuple[App, App], admin: Redis, clock: Clock, command: tuple[Any, ...]
) -> None:
    jar = await signed_in_everywhere(apps, clock)
    await admin.execute_command(*command)
    # No message says so: the heartbeat's epoch check does, and the store then says the
    # session is unknown (as it does with no view at all).
    took = await refused_everywhere(apps, jar)
    assert took < 1.0
    for app in apps:
        assert app.store.known_active(_family(jar), clock()) is False


@pytest.mark.parametrize("command", [("FLUSHALL",), ("SWAPDB", 0, 1)])
async def test_sign_out_after_flushall_or_swapdb_is_refused_everywhere_and_says_so(
    steady_apps: tuple[App, App],
    admin: Redis,
    clock: Clock,
    seen: list[AuthEvent],
    command: tuple[Any, ...],
) -> None:
    """The sign-out arrives before any view has noticed (with max_lag's 0.1 s, its next
    heartbeat would within 25 ms; here none is due): the request is still signed in from
    the view, and its sign-out is what ends the session on every worker: the other worker
    learns it from the revocation published for a session the store no longer held."""
    apps = steady_apps
    a, _ = apps
    jar = await signed_in_everywhere(apps, clock)
    await admin.execute_command(*command)
    for app in apps:
        assert app.store.known_active(_family(jar), clock()) is True  # not noticed
    response = await a.post(jar, "/logout")
    # Ended everywhere (the answer), though the store no longer had it (the event).
    assert response.json() == {"revoked": True}
    event = signed_out(seen)
    assert (event.revoked, event.found) == (True, False)
    await refused_everywhere(apps, jar)


@pytest.mark.parametrize("command", [("FLUSHALL",), ("SWAPDB", 0, 1)])
async def test_sign_out_after_the_view_noticed_a_flushall_or_swapdb_is_already_signed_out(
    apps: tuple[App, App],
    admin: Redis,
    clock: Clock,
    seen: list[AuthEvent],
    command: tuple[Any, ...],
) -> None:
    """The sign-out arrives after its worker's view noticed (within max_lag): the session
    is unknown to the view and to the store, so the request is refused before the route
    runs (RevokedSession, every cookie cleared) and the sign-out has no session left to ask
    the store about: revoked, and found=None ("not asked")."""
    a, _ = apps
    jar = await signed_in_everywhere(apps, clock)
    family = _family(jar)
    await admin.execute_command(*command)
    await eventually(lambda: a.store.known_active(family, clock()) is not True, within=BOUND)
    before = len(seen)
    response = await a.post(jar, "/logout")
    assert (response.status_code, response.json()) == (200, {"revoked": True})
    cleared = response.headers.get_list("set-cookie")
    assert {c.split("=", 1)[0] for c in cleared} == set(jar)  # every auth cookie deleted
    assert all("max-age=0" in c.lower() for c in cleared), cleared
    assert [type(e) for e in seen[before:]] == [RevokedSession, SignedOut]
    event = signed_out(seen)
    assert (event.everywhere, event.revoked, event.found) == (False, True, None)
    await refused_everywhere(apps, jar)


# --- keys gone one by one (what eviction does): the epoch stays, the sign-out says it -----


async def test_sign_out_of_a_session_whose_keys_are_gone_is_refused_everywhere(
    steady_apps: tuple[App, App], admin: Redis, clock: Clock, seen: list[AuthEvent]
) -> None:
    apps = steady_apps
    a, b = apps
    jar = await signed_in_everywhere(apps, clock)
    await session_keys_gone(admin, _family(jar))
    # Nothing tells the views: the store lost it, nobody revoked it.
    assert await b.served_from_view(jar, clock)
    response = await a.post(jar, "/logout")
    assert response.json() == {"revoked": True}
    assert (signed_out(seen).revoked, signed_out(seen).found) == (True, False)
    took = await refused_everywhere(apps, jar)
    assert took < 1.0


async def test_sign_out_everywhere_over_vanished_keys_is_refused_everywhere(
    steady_apps: tuple[App, App], admin: Redis, clock: Clock, seen: list[AuthEvent]
) -> None:
    apps = steady_apps
    a, _ = apps
    jar = await signed_in_everywhere(apps, clock)
    await session_keys_gone(admin, _family(jar), subject=True)
    response = await a.post(jar, "/logout-everywhere")
    assert response.json() == {"revoked": True}
    event = signed_out(seen)
    assert (event.everywhere, event.revoked, event.found) == (True, True, False)
    await refused_everywhere(apps, jar)


async def test_sign_out_whose_refresh_token_is_gone_revokes_the_session_it_names(
    apps: tuple[App, App], admin: Redis, clock: Clock, seen: list[AuthEvent]
) -> None:
    """Only the refresh token's record vanished: the session itself is still live in the
    store, so the sign-out revokes the one the (verified) access token names."""
    a, b = apps
    jar = await signed_in_everywhere(apps, clock)
    family = _family(jar)
    tokens = [key async for key in admin.scan_iter(match=f"{PREFIX}rt:*{family}*")]
    assert await admin.delete(*tokens) == 1
    response = await a.post(jar, "/logout")
    assert response.json() == {"revoked": True}
    assert (signed_out(seen).revoked, signed_out(seen).found) == (True, True)
    await refused_everywhere(apps, jar)
    assert not await b.store.family_active(family, clock())  # revoked in the store too


async def test_sign_out_of_a_session_the_store_holds_says_it_was_found(
    apps: tuple[App, App], clock: Clock, seen: list[AuthEvent]
) -> None:
    a, _ = apps
    jar = await signed_in_everywhere(apps, clock)
    assert (await a.post(jar, "/logout")).json() == {"revoked": True}
    assert (signed_out(seen).revoked, signed_out(seen).found) == (True, True)
    await refused_everywhere(apps, jar)


# --- the eviction policy ---------------------------------------------------------------


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl", "allkeys-random"])
async def test_an_evicting_policy_is_refused_and_said_so(
    own_redis: RedisServer,
    admin: Redis,
    clock: Clock,
    seen: list[AuthEvent],
    caplog: pytest.LogCaptureFixture,
    policy: str,
) -> None:
    """Eviction drops the issuer's keys (a revoked session, a subject's list of sessions)
    without anyone hearing of it, so the store refuses to work on such a server: a
    ConfigurationError naming the setting, which is also a StoreUnavailableError, so
    requests fail closed (503), never a 500, nothing cleared."""
    async with two_apps(own_redis.url, clock, seen) as (a, b):
        assert (await a.http.post("/login?as=alice")).status_code == 200
        jar = dict(a.http.cookies.items())
        await admin.config_set("maxmemory-policy", policy)
        store = RedisStore.from_url(own_redis.url, prefix=PREFIX)
        try:
            with caplog.at_level(logging.ERROR, logger="fastapi_authkit"):
                with pytest.raises(StoreUnavailableError, match="maxmemory-policy noeviction") as e:
                    await store.family_active(_family(jar), clock())
                assert isinstance(e.value, ConfigurationError)
                assert policy in str(e.value)
                # A worker starting on it: protected routes fail closed, as in an outage.
                response = await b.get(jar)
                assert response.status_code == 503
                assert "retry-after" in response.headers
            assert "maxmemory-policy noeviction" in caplog.text
            # Set right while the app runs: the store works again, no restart needed.
            await admin.config_set("maxmemory-policy", "noeviction")
            await eventually(lambda: _status(b.get(jar), 200), within=BOUND + 1)
        finally:
            await store.aclose()


async def _status(response: Any, status: int) -> bool:
    return bool((await response).status_code == status)


async def test_a_server_that_hides_its_config_is_used_with_a_warning(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Managed Redis often disables CONFIG: the setting cannot be read, so the store says
    once that it must be noeviction, and works."""
    server = RedisServer(tmp_path, extra=["--rename-command", "CONFIG", ""])
    server.start()
    store = RedisStore.from_url(server.url, prefix=PREFIX)
    try:
        with caplog.at_level(logging.WARNING, logger="fastapi_authkit"):
            assert not await store.family_active("nobody", clock())
            assert not await store.family_active("nobody", clock())
        warnings = [r for r in caplog.records if "maxmemory-policy" in r.getMessage()]
        assert len(warnings) == 1
        assert "noeviction" in warnings[0].getMessage()
    finally:
        await store.aclose()
        server.stop()
