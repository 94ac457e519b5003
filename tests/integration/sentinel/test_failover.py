"""Primary + replica + Sentinel, all real redis-server processes: refresh, kill the primary
right after, let Sentinel promote the replica, and check that no session was lost; the
answers while no primary answers; and what confirmation by the replica (``WAIT``) buys.

Each trial: every session refreshes at once (its access token in the refresh window), the
primary is SIGKILLed at once, and until Sentinel names the new primary the app is asked
for a protected and a public route. After promotion each session's latest cookies must
still refresh: a refresh token the new primary never saw ends its session (lost).

"Lagging" trials make the loss certain instead of merely possible: the replica is stopped
and its link dropped before the refreshes, so the primary alone holds them when it dies.
Without confirmation those sessions are lost; with it the refreshes are refused (503,
nothing cleared) and the cookies the browsers kept work after the failover.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import httpx2
import pytest

from fastapi_authkit import StoreUnavailableError
from fastapi_authkit.stores import RedisStore

from tests.support.apps import issuer_app
from tests.support.clock import Clock
from tests.support.redis_sentinel import SentinelSet
from tests.support.redis_servers import RedisServer

pytestmark = [pytest.mark.anyio, pytest.mark.realserver]

SESSIONS = 12
TRIALS = 5
TIMEOUT = 1.0
WAIT_TIMEOUT = 0.5
MAX_LAG = 0.1  # how long a process's view of revocations is trusted past a heartbeat
# issuer_app's access tokens live 60 s: after this, each request must refresh to answer
# (a failed refresh is a 503, not the old token).
PAST_EXPIRY = 61


class Browser:
    """One browser's cookies for the app."""

    def __init__(self) -> None:
        self.jar: dict[str, str] = {}

    def headers(self) -> dict[str, str]:
        return {"cookie": "; ".join(f"{k}={v}" for k, v in self.jar.items())}

    def update(self, response: httpx2.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            name, _, rest = header.partition("=")
            value = rest.split(";", 1)[0]
            if "Max-Age=0" in header:
                self.jar.pop(name, None)
            else:
                self.jar[name] = value


@dataclass
class Trial:
    refresh_codes: Counter[int] = field(default_factory=Counter)
    handed_out: int = 0  # refreshes that set a new refresh cookie
    during: Counter[str] = field(default_factory=Counter)
    cookies_touched_during: int = 0
    # Each protected request that got a 200 while the test's Sentinel still named the dead
    # primary: seconds after the kill at which it was sent, and whether the replica took
    # writes by the time it was answered (a client may hear of the promotion from another
    # Sentinel before the one this test asks says so, and then its view is current again).
    served_after_kill: list[tuple[float, bool]] = field(default_factory=list)
    failover_seconds: float = 0.0
    # The first refresh after promotion, through the app under test: with confirmation on
    # it waits for a replica, and there is none until the old primary rejoins.
    first_after: int = 0
    lost: int = 0


@asynccontextmanager
async def app_client(
    url: str, clock: Clock, prefix: str, replicas: int
) -> AsyncIterator[httpx2.AsyncClient]:
    backend = RedisStore.from_url(
        url,
        prefix=prefix,
        timeout=TIMEOUT,
        wait_replicas=replicas,
        wait_timeout=WAIT_TIMEOUT,
        max_lag=MAX_LAG,
    )
    app = issuer_app(backend, clock)
    transport = httpx2.ASGITransport(app=app)
    try:
        async with httpx2.AsyncClient(transport=transport, base_url="https://testserver") as http:
            yield http
    finally:
        await backend.aclose()


async def ask(
    http: httpx2.AsyncClient, path: str, browser: Browser | None = None, method: str = "GET"
) -> httpx2.Response:
    """A request with ``browser``'s cookies only: the client's own jar stays empty, so that
    many browsers can share one client."""
    http.cookies.clear()
    headers = browser.headers() if browser is not None else {}
    response = await http.request(method, path, headers=headers)
    http.cookies.clear()
    return response


async def sign_in(http: httpx2.AsyncClient, count: int) -> list[Browser]:
    browsers = []
    for i in range(count):
        browser = Browser()
        response = await ask(http, f"/login?as=user-{i}", method="POST")
        assert response.status_code == 200, response.text
        browser.update(response)
        browsers.append(browser)
    return browsers


async def run_trial(
    sset: SentinelSet,
    clock: Clock,
    app: httpx2.AsyncClient,
    plain: httpx2.AsyncClient,
    browsers: list[Browser],
    *,
    lagging: bool,
) -> Trial:
    """Refresh every session through ``app``, kill the primary, watch the failover through
    ``app``, then count through ``plain`` (no confirmation: no replica is needed to answer)
    the sessions whose latest cookies no longer refresh; the old primary rejoins last."""
    trial = Trial()
    primary, replica = sset.primary(), sset.replica()
    clock.advance(PAST_EXPIRY)
    if lagging:
        replica.signal(signal.SIGSTOP)
        with primary.control() as control:
            control.client_kill_filter(_type="slave")  # "replica" is refused by redis-py < 6
    try:
        responses = [None] * len(browsers)

        async def refresh(i: int) -> None:
            responses[i] = await ask(app, "/me", browsers[i])

        async with anyio.create_task_group() as tg:
            for i in range(len(browsers)):
                tg.start_soon(refresh, i)
        primary.kill()  # right after the refreshes were answered
        killed_at = time.monotonic()
    finally:
        if lagging:
            replica.signal(signal.SIGCONT)
    for browser, response in zip(browsers, responses, strict=True):
        assert response is not None
        trial.refresh_codes[response.status_code] += 1
        trial.handed_out += "_auth_refresh" in response.headers.get("set-cookie", "")
        browser.update(response)

    # While no primary answers.
    started = anyio.current_time()
    while not sset.promoted(primary):
        if anyio.current_time() - started > 20:
            pytest.fail("Sentinel did not promote the replica within 20 s")
        sent_at = time.monotonic()
        me = await ask(app, "/me", browsers[0])
        public = await ask(app, "/public", browsers[0])
        trial.during[f"protected {me.status_code}"] += 1
        if me.status_code == 200:
            trial.served_after_kill.append((sent_at - killed_at, replica.is_primary()))
        trial.during[f"public {public.status_code}"] += 1
        if me.status_code == 503:
            assert me.headers["retry-after"] == "5"
        trial.cookies_touched_during += len(me.headers.get_list("set-cookie"))
        trial.cookies_touched_during += len(public.headers.get_list("set-cookie"))
        await anyio.sleep(0.05)
    trial.failover_seconds = anyio.current_time() - started

    # After promotion: each session's latest cookies must refresh again.
    clock.advance(PAST_EXPIRY)
    first = await ask(app, "/me", browsers[0])
    trial.first_after = first.status_code
    if first.status_code == 503:
        assert first.headers.get_list("set-cookie") == []
    browsers[0].update(first)  # a lost session's deletions too: counted below
    for browser in browsers:
        response = await ask(plain, "/me", browser)
        # A client reconnects to the new primary on its first call (how soon, on a busy
        # machine, is not what is counted here).
        reconnect_by = time.monotonic() + 20
        while response.status_code == 503 and time.monotonic() < reconnect_by:
            await anyio.sleep(0.1)
            response = await ask(plain, "/me", browser)
        if response.status_code == 200 and "_auth_refresh" in response.headers.get(
            "set-cookie", ""
        ):
            browser.update(response)
        else:
            assert response.status_code == 401, response.text
            trial.lost += 1
    sset.rejoin(primary)
    return trial


def report(label: str, trials: list[Trial]) -> None:
    codes = sum((t.refresh_codes for t in trials), Counter())
    during = sum((t.during for t in trials), Counter())
    seconds = [round(t.failover_seconds, 2) for t in trials]
    first = Counter(t.first_after for t in trials)
    print(
        f"\n{label}: {len(trials)} trial(s) x {SESSIONS} sessions; refresh answers "
        f"{dict(codes)}; during failover {dict(during)}; failover s {seconds}; first "
        f"refresh after promotion {dict(first)}; sessions lost {sum(t.lost for t in trials)}"
    )


async def test_failover_right_after_confirmed_refreshes_loses_no_session(
    sentinel_set: SentinelSet, clock: Clock
) -> None:
    prefix = f"fo-{uuid.uuid4().hex}:"
    url = sentinel_set.url
    async with (
        app_client(url, clock, prefix, replicas=1) as confirmed,
        app_client(url, clock, prefix, replicas=0) as plain,
    ):
        browsers = await sign_in(confirmed, SESSIONS)
        trials = [
            await run_trial(sentinel_set, clock, confirmed, plain, browsers, lagging=False)
            for _ in range(TRIALS)
        ]
    report("healthy replica, wait_replicas=1", trials)
    for trial in trials:
        assert trial.lost == 0
        assert trial.refresh_codes[200] + trial.refresh_codes[503] == SESSIONS
        assert trial.handed_out == trial.refresh_codes[200]
        assert trial.during["protected 503"] >= 1  # the window was observed
        assert set(trial.during) <= {"protected 200", "protected 503", "public 200"}
        # A protected route is answered from the process's view only while its last
        # heartbeat is at most max_lag old (the primary died after it was sent: it can
        # have executed no revocation since), then asks Redis: 503, until a heartbeat
        # reaches the promoted replica.
        assert all(after < MAX_LAG or promoted for after, promoted in trial.served_after_kill), (
            trial
        )
        assert trial.cookies_touched_during == 0
        # No replica until the old primary rejoins: nothing confirmed, nothing handed out.
        assert trial.first_after == 503
    # The replica kept up: the refreshes were confirmed and handed out.
    assert sum(t.refresh_codes[200] for t in trials) > 0


async def test_a_lagging_replica_loses_sessions_unless_confirmation_is_on(
    sentinel_set: SentinelSet, clock: Clock
) -> None:
    prefix = f"lag-{uuid.uuid4().hex}:"
    url = sentinel_set.url
    async with (
        app_client(url, clock, prefix, replicas=1) as confirmed,
        app_client(url, clock, prefix, replicas=0) as plain,
    ):
        browsers = await sign_in(confirmed, SESSIONS)
        with_wait = await run_trial(sentinel_set, clock, confirmed, plain, browsers, lagging=True)
        report("lagging replica, wait_replicas=1", [with_wait])
        # Nothing was handed out that the replica had not confirmed: every refresh a 503,
        # every session alive after the failover, with the cookies the browsers kept.
        assert with_wait.refresh_codes == Counter({503: SESSIONS})
        assert with_wait.handed_out == 0
        assert with_wait.lost == 0
        assert with_wait.cookies_touched_during == 0

        browsers = await sign_in(confirmed, SESSIONS)
        without = await run_trial(sentinel_set, clock, plain, plain, browsers, lagging=True)
        report("lagging replica, wait_replicas=0", [without])
        # Each browser got a successor only the dead primary knew.
        assert without.refresh_codes == Counter({200: SESSIONS})
        assert without.handed_out == SESSIONS
        assert without.lost == SESSIONS


async def test_connections_left_on_a_demoted_primary_are_dropped(
    sentinel_set: SentinelSet, clock: Clock
) -> None:
    """After a failover the old primary rejoins as a replica while the store's connections
    to it are still open. A confirmed batch whose script wrote nothing there (a refresh
    token nobody knows) gets its ``WAIT`` refused in other words than ``READONLY``, the
    one reply redis-py acts on; every later batch on those connections was refused the same
    way, so refreshes answered 503 for as long as they lived (45 s and more under load)."""
    store = RedisStore.from_url(
        sentinel_set.url, prefix=f"demoted-{uuid.uuid4().hex}:", timeout=TIMEOUT, wait_replicas=1
    )

    async def unknown_refresh() -> str:
        outcome = await store.rotate(
            "no-such-token",
            family_id="no-such-family",
            now=clock(),
            grace=10,
            idle_ttl=3600,
            successor_id=None,
            sealed=None,
        )
        return outcome.status

    try:
        assert await unknown_refresh() == "unknown"  # a connection to the primary, kept
        old = sentinel_set.primary()
        sentinel_set.fail_over()
        wait_until_demoted(sentinel_set, old)
        answers = []
        for _ in range(3):
            try:
                answers.append(await unknown_refresh())
            except StoreUnavailableError:
                answers.append("503")
        # The connection to the demoted node fails once at most, then the store asks
        # Sentinel again and reaches the new primary.
        assert answers[-1] == "unknown", answers
        assert answers.count("503") <= 1, answers
    finally:
        await store.aclose()
        sentinel_set.wait_replicated(sentinel_set.primary(), sentinel_set.replica())
        sentinel_set.wait_watched(sentinel_set.replica())


def wait_until_demoted(sentinel_set: SentinelSet, old: RedisServer) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if sentinel_set.promoted(old) and not old.is_primary():
            return
        time.sleep(0.05)
    raise AssertionError("Sentinel did not demote the old primary within 20 s")
