"""SECURITY.md, "Rotation (built-in issuer)": refresh-token rotation, reuse detection,
revocation and lifetimes as HTTP flows through the real app, on both stores (in-memory and a
real redis-server), plus Redis outages on a redis-server of the test's own.

Timeline of every flow: access tokens live 60 s and are refreshed in their last 12 s
(``min(60, access_ttl / 5)``), the grace window is 10 s, idle 1 h, absolute 2 h.

"Two workers sharing Redis" also runs on the memory store, as two middleware instances in one
process sharing one MemoryStore (the only way that store can be shared). "Redis down" has no
memory-store counterpart: an in-process dict cannot be unreachable.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from fastapi_authkit import ConfigurationError, create_issuer, create_refresh, create_store
from fastapi_authkit.errors import StoreUnavailableError
from fastapi_authkit.issuer import Issuer
from fastapi_authkit.source import Rotation
from fastapi_authkit.stores import MemoryStore, RedisStore, SessionStore
from fastapi_authkit.stores.base import RotateOutcome

from .helpers import (
    AUTH_COOKIES,
    SafeClient,
    asgi_http,
    cookie_header,
    jar_without,
    set_cookies,
)
from tests.support.apps import issuer_app
from tests.support.clock import Clock
from tests.support.http_client import until_unavailable
from tests.support.redis_servers import RedisServer
from tests.support.redis_stores import redis_store
from tests.support.tokens import SECRET_KEY


class Mints:
    """Counts the successor pairs the issuers it wraps hand out: every distinct pair a
    rotation answers with (a new pair = one mint; a replay of the same pair is none).

    A refresh mints its successor before the one store call that rotates (so one round trip
    suffices); a worker that loses the race to another discards its pair unseen and hands
    out the winner's. Such a pair never leaves the process and never exists in the store,
    so it is not a successor and is not counted; what is counted is what a client can get.
    """

    def __init__(self) -> None:
        self.pairs: set[tuple[str | None, str | None]] = set()

    @property
    def count(self) -> int:
        return len(self.pairs)

    def wrap(self, issuer: Issuer) -> None:
        real: Callable[..., Awaitable[Rotation]] = issuer.rotate

        async def counted(*args: Any, **kwargs: Any) -> Rotation:
            rotation = await real(*args, **kwargs)
            if rotation.access_token is not None:
                self.pairs.add((rotation.access_token, rotation.refresh_token))
            return rotation

        issuer.rotate = counted  # type: ignore[method-assign]


def two_workers(first: FastAPI, second: FastAPI) -> Any:
    """One ASGI app (so one client, one event loop, as Redis connections need) standing for
    two worker processes: ``/w2/...`` goes to the second, everything else to the first."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan" and scope["path"].startswith("/w2/"):
            path = scope["path"][3:]
            await second({**scope, "path": path, "raw_path": path.encode()}, receive, send)
        else:
            await first(scope, receive, send)

    return app


@pytest.fixture(params=["memory", "redis", "cluster"])
def backend(request: pytest.FixtureRequest) -> Iterator[SessionStore]:
    if request.param == "memory":
        yield MemoryStore()
    else:
        # Connections open lazily inside the client's event loop; the app's shutdown closes.
        # These tests are about what rotation decides, not about a slow Redis: a timeout
        # well above the default 0.5 s, so that 20 connections opened at once on a busy
        # machine do not turn a storm into a (correctly handled) transient failure.
        yield redis_store(request, request.param, "sec", timeout=5)


def open_client(app: FastAPI) -> SafeClient:
    # Used as a context manager: one event loop for the whole test, as in one server process.
    return SafeClient(app, base_url="https://testserver")


def send_as(tc: TestClient, jar: dict[str, str], path: str, method: str = "GET") -> Any:
    """A request from another browser holding ``jar``, leaving ``tc``'s jar as it was."""
    saved = list(tc.cookies.jar)
    tc.cookies.clear()
    try:
        headers = {"cookie": cookie_header(jar)} if jar else {}
        if method != "GET" and "_auth_csrf" in jar:
            headers["x-csrf-token"] = jar["_auth_csrf"]
        return tc.request(method, path, headers=headers)
    finally:
        tc.cookies.clear()
        for cookie in saved:
            tc.cookies.jar.set_cookie(cookie)


def jar_after(jar: dict[str, str], response: Any) -> dict[str, str]:
    """A browser's jar after applying ``response``'s Set-Cookie headers."""
    new = dict(jar)
    for name, header in set_cookies(response).items():
        value = header.split(";", 1)[0].split("=", 1)[1]
        if "Max-Age=0" in header:
            new.pop(name, None)
        else:
            new[name] = value
    return new


def cookie_values(response: Any) -> dict[str, str]:
    return {
        name: header.split(";", 1)[0].split("=", 1)[1]
        for name, header in set_cookies(response).items()
    }


def assert_session_ended(response: Any) -> None:
    assert response.status_code == 401
    cookies = set_cookies(response)
    assert set(cookies) == set(AUTH_COOKIES)
    assert all("=; Max-Age=0;" in v for v in cookies.values())


def sign_in(tc: TestClient, subject: str = "alice") -> dict[str, str]:
    response = send_as(tc, {}, f"/login?as={subject}", "POST")
    assert response.status_code == 200
    return jar_after({}, response)


# --- reuse detection ------------------------------------------------------------------------------


def test_rotated_out_token_after_its_successor_was_used_revokes_the_family(
    backend: SessionStore, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with open_client(issuer_app(backend, clock)) as tc:
        jar0 = sign_in(tc)
        clock.advance(55)  # inside the refresh window
        rotated = send_as(tc, jar0, "/me")
        assert rotated.status_code == 200
        jar1 = jar_after(jar0, rotated)
        assert jar1["_auth_refresh"] != jar0["_auth_refresh"]
        clock.advance(55)  # the legitimate holder refreshes with its successor in turn
        jar2 = jar_after(jar1, send_as(tc, jar1, "/me"))
        assert jar2["_auth_refresh"] != jar1["_auth_refresh"]
        clock.advance(11)  # past the grace window of both rotations
        with caplog.at_level(logging.WARNING, logger="fastapi_authkit"):
            stolen = send_as(tc, jar_without(jar0, "_auth"), "/me")  # the thief's copy
        assert_session_ended(stolen)
        assert "refresh token reuse detected" in caplog.text
        # The whole family is gone: the legitimate holder's still-valid access token too...
        assert_session_ended(send_as(tc, jar2, "/me"))
        # ...and its refresh token once the access token is gone.
        assert_session_ended(send_as(tc, jar_without(jar2, "_auth"), "/me"))


def test_a_stolen_predecessor_shares_the_successor_until_one_of_them_is_used(
    backend: SessionStore, clock: Clock
) -> None:
    # The price of never signing a user out for a lost reply: the immediate predecessor of
    # an unused successor gets that same successor after the grace window, up to
    # late_replay (60 s) after the rotation (the browser may never have received it). A
    # successor handed out twice is never replayed late itself: whoever of the two comes
    # back with it after the other has rotated it is a reuse, and the family ends.
    with open_client(issuer_app(backend, clock)) as tc:
        jar0 = sign_in(tc)
        clock.advance(55)
        jar1 = jar_after(jar0, send_as(tc, jar0, "/me"))
        clock.advance(30)  # past the grace window, inside the late one; successor unused
        thief = send_as(tc, jar_without(jar0, "_auth"), "/me")
        assert thief.status_code == 200
        assert cookie_values(thief)["_auth_refresh"] == jar1["_auth_refresh"]
        clock.advance(30)
        jar2 = jar_after(jar1, send_as(tc, jar1, "/me"))  # the holder rotates first
        assert jar2["_auth_refresh"] != jar1["_auth_refresh"]
        clock.advance(11)
        assert_session_ended(send_as(tc, jar_without(jar_after(jar0, thief), "_auth"), "/me"))
        assert_session_ended(send_as(tc, jar2, "/me"))


def test_a_stale_stolen_predecessor_ends_the_family_after_the_late_window(
    backend: SessionStore, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    # Issue 22, item 2: an idle holder has not used its successor for a long while (here
    # half an hour, within the rotated-out token's idle life); a copy of the token it held
    # before (a backup, a log, a shared machine) is then worth the end of the session, not
    # a live one.
    with open_client(issuer_app(backend, clock)) as tc:
        jar0 = sign_in(tc)
        clock.advance(55)
        jar1 = jar_after(jar0, send_as(tc, jar0, "/me"))
        clock.advance(1800)  # the successor is still unused
        with caplog.at_level(logging.WARNING, logger="fastapi_authkit"):
            stale = send_as(tc, jar_without(jar0, "_auth"), "/me")
        assert_session_ended(stale)
        assert "refresh token reuse detected" in caplog.text
        assert_session_ended(send_as(tc, jar_without(jar1, "_auth"), "/me"))


@pytest.mark.parametrize("worker", ["same-worker", "another-worker"])
def test_immediate_predecessor_within_grace_gets_the_same_successor(
    backend: SessionStore, clock: Clock, worker: str
) -> None:
    mints = Mints()
    first_worker = issuer_app(backend, clock, on_issuer=mints.wrap)
    second_worker = issuer_app(backend, clock, on_issuer=mints.wrap, close_backend=False)
    with open_client(two_workers(first_worker, second_worker)) as tc:
        jar0 = sign_in(tc)
        clock.advance(55)
        first = send_as(tc, jar0, "/me")
        assert first.status_code == 200
        minted = mints.count
        clock.advance(9)  # within grace: a request that was already in flight, another tab
        again = send_as(tc, jar0, "/me" if worker == "same-worker" else "/w2/me")
        assert again.status_code == 200
        assert cookie_values(again)["_auth_refresh"] == cookie_values(first)["_auth_refresh"]
        assert cookie_values(again)["_auth"] == cookie_values(first)["_auth"]
        assert mints.count == minted  # nothing new minted
        # The successor is live and rotates in turn.
        jar1 = jar_after(jar0, first)
        clock.advance(50)
        assert send_as(tc, jar1, "/me").status_code == 200
        assert mints.count == minted + 1


@pytest.mark.parametrize(
    "worker",
    [
        pytest.param("same-worker"),
        pytest.param("another-worker"),
    ],
)
def test_grandparent_within_grace_revokes_the_family(
    backend: SessionStore, clock: Clock, worker: str, request: pytest.FixtureRequest
) -> None:
    first_worker = issuer_app(backend, clock)
    second_worker = issuer_app(backend, clock, close_backend=False)
    with open_client(two_workers(first_worker, second_worker)) as tc:
        jar0 = sign_in(tc)
        clock.advance(55)
        jar1 = jar_after(jar0, send_as(tc, jar0, "/me"))
        clock.advance(1)
        child = send_as(tc, jar_without(jar1, "_auth"), "/me")  # the child rotates too
        jar2 = jar_after(jar1, child)
        assert jar2["_auth_refresh"] not in (jar0["_auth_refresh"], jar1["_auth_refresh"])
        clock.advance(1)  # still within the grace window of both rotations
        path = "/me" if worker == "same-worker" else "/w2/me"
        assert_session_ended(send_as(tc, jar0, path))
        assert_session_ended(send_as(tc, jar2, "/me"))


# --- sign-out, everywhere, lifetimes --------------------------------------------------------------


def test_sign_out_revokes_the_family_server_side(backend: SessionStore, clock: Clock) -> None:
    with open_client(issuer_app(backend, clock)) as tc:
        jar = sign_in(tc)
        copy = dict(jar)  # what a thief copied before the user signed out
        response = send_as(tc, jar, "/logout", "POST")
        assert response.json() == {"revoked": True}
        assert all("Max-Age=0" in v for v in set_cookies(response).values())
        # The copy is worthless: its access token is still unexpired but its family is revoked.
        assert_session_ended(send_as(tc, copy, "/me"))
        clock.advance(100)
        assert_session_ended(send_as(tc, jar_without(copy, "_auth"), "/me"))


def test_sign_out_right_after_a_rotation_is_not_undone_within_grace(
    backend: SessionStore, clock: Clock
) -> None:
    with open_client(issuer_app(backend, clock)) as tc:
        jar0 = sign_in(tc)
        clock.advance(61)
        rotated = send_as(tc, jar0, "/me")
        jar1 = jar_after(jar0, rotated)
        assert send_as(tc, jar1, "/logout", "POST").json() == {"revoked": True}
        clock.advance(1)  # inside the grace window of the rotation
        assert send_as(tc, jar0, "/me").status_code == 401
        assert send_as(tc, jar1, "/me").status_code == 401


def test_sign_out_everywhere_revokes_every_family_of_the_subject_only(
    backend: SessionStore, clock: Clock
) -> None:
    with open_client(issuer_app(backend, clock)) as tc:
        laptop, phone, bob = sign_in(tc), sign_in(tc), sign_in(tc, "bob")
        assert laptop["_auth"] != phone["_auth"]
        for jar in (laptop, phone, bob):
            assert send_as(tc, jar, "/me").status_code == 200
        assert send_as(tc, phone, "/logout-everywhere", "POST").json() == {"revoked": True}
        assert_session_ended(send_as(tc, laptop, "/me"))
        assert_session_ended(send_as(tc, phone, "/me"))
        clock.advance(100)
        assert_session_ended(send_as(tc, jar_without(laptop, "_auth"), "/me"))
        assert send_as(tc, bob, "/me").status_code == 200  # bob refreshes and carries on


def test_idle_lifetime_is_enforced(backend: SessionStore, clock: Clock) -> None:
    with open_client(issuer_app(backend, clock)) as tc:
        jar = sign_in(tc)
        clock.advance(3000)
        jar = jar_after(jar, send_as(tc, jar, "/me"))  # activity resets the idle clock
        assert "_auth_refresh" in jar
        clock.advance(3599)
        assert send_as(tc, jar, "/me").status_code == 200
        jar = jar_after(jar, send_as(tc, jar, "/me"))
        clock.advance(3601)  # an hour and a second without a refresh
        assert_session_ended(send_as(tc, jar, "/me"))


def test_absolute_lifetime_is_enforced(backend: SessionStore, clock: Clock) -> None:
    with open_client(issuer_app(backend, clock)) as tc:
        jar = sign_in(tc)
        for _ in range(4):
            clock.advance(1700)  # always refreshed well within the idle hour
            response = send_as(tc, jar, "/me")
            assert response.status_code == 200
            jar = jar_after(jar, response)
        clock.advance(500)  # 7 300 s since sign-in: past the 2 h absolute lifetime
        assert_session_ended(send_as(tc, jar, "/me"))


# --- concurrency across workers -------------------------------------------------------------------


@pytest.mark.anyio
async def test_two_workers_same_refresh_token_at_once_mint_exactly_one_successor(
    backend: SessionStore, clock: Clock
) -> None:
    mints = Mints()
    # Two middleware instances, each with its own in-process single flight: two workers.
    workers = [
        issuer_app(backend, clock, on_issuer=mints.wrap),
        issuer_app(backend, clock, on_issuer=mints.wrap),
    ]
    try:
        login = await asgi_http(workers[0], "POST", "/login")
        jar = {k: v.split(";", 1)[0].split("=", 1)[1] for k, v in login.set_cookies().items()}
        clock.advance(55)
        minted = mints.count
        replies = []

        async def one(app: FastAPI) -> None:
            cookie = [(b"cookie", cookie_header(jar).encode())]
            replies.append(await asgi_http(app, "GET", "/me", cookie))

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(one, workers[i % 2])
        assert {r.status for r in replies} == {200}
        successors = {r.set_cookies()["_auth_refresh"].split(";")[0] for r in replies}
        assert len(successors) == 1
        assert len({r.set_cookies()["_auth"].split(";")[0] for r in replies}) == 1
        # Byte for byte the same cookies from both workers, Max-Age and state included.
        assert len({tuple(r.header_values(b"set-cookie")) for r in replies}) == 1
        assert mints.count == minted + 1
    finally:
        await backend.aclose()


# --- a rotation whose answer never arrived is not reuse (issue 17, item 6) -----------------------


class LosesOneRotationReply:
    """The real store, except that its next rotation is written but its reply never comes
    back (the connection dropped it, or the store timed out after writing): the fault
    itself, injected where the network would cause it."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store
        self.armed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def rotate(self, token_id: str, **options: Any) -> RotateOutcome:
        outcome = await self._store.rotate(token_id, **options)
        if self.armed and outcome.status == "rotated":
            self.armed = False
            raise StoreUnavailableError("the rotation's reply was lost")
        return outcome


def test_a_rotation_whose_reply_was_lost_is_not_taken_for_reuse(
    backend: SessionStore, clock: Clock
) -> None:
    # The store rotated the refresh token but the issuer never heard back: the request got
    # no new cookies (nothing to hand out), so the browser still holds the rotated-out
    # token. Presented again after the grace window but within late_replay (60 s) of the
    # rotation, it gets the successor nobody received rather than being taken for theft.
    lossy = LosesOneRotationReply(backend)
    with open_client(issuer_app(lossy, clock)) as tc:  # type: ignore[arg-type]
        jar0 = sign_in(tc)
        clock.advance(55)
        lossy.armed = True
        lost = send_as(tc, jar0, "/me")
        assert lost.status_code == 200  # the old access token, still valid
        assert lost.headers.get_list("set-cookie") == []
        assert not lossy.armed  # the rotation did happen
        clock.advance(40)  # past the grace window and the access token's life
        back = send_as(tc, jar_without(jar0, "_auth"), "/me")
        assert back.status_code == 200, back.text
        jar1 = jar_after(jar0, back)
        assert jar1["_auth_refresh"] != jar0["_auth_refresh"]
        # The session goes on: the successor rotates in turn, and only then is the old
        # token a rotated-out one.
        clock.advance(55)
        assert send_as(tc, jar1, "/me").status_code == 200


def test_a_refresh_whose_response_never_reached_the_browser_is_not_taken_for_reuse(
    backend: SessionStore, clock: Clock
) -> None:
    # The client went away during the refresh (a closed tab, a dropped connection): the
    # successor was handed out, to nobody. The browser comes back with the old cookies.
    with open_client(issuer_app(backend, clock)) as tc:
        jar0 = sign_in(tc)
        clock.advance(55)
        unseen = send_as(tc, jar0, "/me")  # its Set-Cookie headers are lost with it
        assert unseen.status_code == 200
        clock.advance(40)  # past the grace window, within late_replay (60 s)
        back = send_as(tc, jar_without(jar0, "_auth"), "/me")
        assert back.status_code == 200, back.text
        # The successor it was given then.
        assert cookie_values(back)["_auth_refresh"] == cookie_values(unseen)["_auth_refresh"]
        assert send_as(tc, jar_after(jar0, back), "/me").status_code == 200


def test_a_refresh_whose_response_never_reached_the_browser_is_reuse_after_the_late_window(
    backend: SessionStore, clock: Clock
) -> None:
    # The price of bounding the late replay (issue 22, item 2): a browser that lost the
    # reply and stays away longer than late_replay cannot be told from a thief with a stale
    # copy, so the session ends, as RFC 9700 reuse detection says.
    with open_client(issuer_app(backend, clock)) as tc:
        jar0 = sign_in(tc)
        clock.advance(55)
        unseen = send_as(tc, jar0, "/me")
        assert unseen.status_code == 200
        clock.advance(61)
        assert_session_ended(send_as(tc, jar_without(jar0, "_auth"), "/me"))
        assert_session_ended(send_as(tc, jar_after(jar0, unseen), "/me"))


# --- Redis outages --------------------------------------------------------------------------------
# The memory store lives in the process and cannot be "down"; these run on Redis only.


def test_redis_down_during_refresh_fails_closed_then_the_same_cookies_work(
    own_redis: RedisServer, clock: Clock
) -> None:
    backend = RedisStore.from_url(own_redis.url, prefix="sec-outage:", timeout=0.3)
    with open_client(issuer_app(backend, clock)) as tc:
        jar = sign_in(tc)
        assert send_as(tc, jar, "/me").status_code == 200
        own_redis.kill()
        # A valid access token whose revocation cannot be checked: 503, nothing cleared.
        response = until_unavailable(lambda: send_as(tc, jar, "/me"))
        assert response.headers["retry-after"] == "5"
        assert response.headers.get_list("set-cookie") == []
        public = send_as(tc, jar, "/public")
        assert public.json() == {"user": None}
        assert public.headers.get_list("set-cookie") == []
        # A refresh due while Redis is down: 503, cookies untouched, the token not consumed.
        clock.advance(61)
        for path in ("/me", "/me", "/public"):
            response = send_as(tc, jar, path)
            assert response.status_code in (503, 200)
            assert response.headers.get_list("set-cookie") == []
        assert send_as(tc, jar, "/me").status_code == 503
        own_redis.start()
        # Redis is back (with its data): the very same cookies refresh and work.
        response = send_as(tc, jar, "/me")
        assert response.status_code == 200, response.text
        new_jar = jar_after(jar, response)
        assert new_jar["_auth_refresh"] != jar["_auth_refresh"]
        assert send_as(tc, new_jar, "/me").status_code == 200


def test_redis_down_at_sign_out_still_clears_the_cookies(
    own_redis: RedisServer, clock: Clock
) -> None:
    backend = RedisStore.from_url(own_redis.url, prefix="sec-outage2:", timeout=0.3)
    with open_client(issuer_app(backend, clock)) as tc:
        jar = sign_in(tc)
        own_redis.kill()
        response = send_as(tc, jar, "/logout", "POST")
        assert response.status_code == 200
        assert response.json() == {"revoked": False}  # said plainly, and logged
        assert all("Max-Age=0" in v for v in set_cookies(response).values())
        own_redis.start()


# --- the in-process grace never outlasts the issuer's (issue 17, item 7) --------------------------


def test_in_process_grace_longer_than_the_issuers_is_a_configuration_error(clock: Clock) -> None:
    # The middleware hands a remembered refresh result to a rotated-out refresh token for
    # create_refresh's grace_period (10 s by default) without asking the issuer: with the
    # issuer's own refresh as the callback, a longer window than the issuer's grace would
    # answer for the issuer where it says "reuse". create_issuer(grace=2) with a default
    # create_refresh kept the middleware at 10 s.
    issuer = create_issuer(
        backend=MemoryStore(), signing_key="grace-test-signing-key-0123456789abcdef", grace=2
    )
    for grace_period in (None, 2.5, 30):
        options: dict[str, Any] = {} if grace_period is None else {"grace_period": grace_period}
        refresh = create_refresh(interval=30, refresh_api_callback=issuer.refresh, **options)
        with pytest.raises(ConfigurationError, match=r"grace_period=.* the issuer's grace \(2"):
            create_store(secret_key=SECRET_KEY, token_issuer=issuer, refresh=refresh)
        # The same callback over the issuer's key, without token_issuer: the same mismatch.
        with pytest.raises(ConfigurationError, match=r"grace_period=.* the issuer's grace \(2"):
            create_store(
                secret_key=SECRET_KEY,
                token_key=issuer.token_key,
                algorithms=[issuer.algorithm],
                refresh=refresh,
            )
    # Agreeing, or shorter (the issuer itself answers the replays the middleware does not).
    for grace_period in (2, 1, 0):
        refresh = create_refresh(
            interval=30, refresh_api_callback=issuer.refresh, grace_period=grace_period
        )
        store = create_store(secret_key=SECRET_KEY, token_issuer=issuer, refresh=refresh)
        assert store.refresh is not None
        assert store.refresh.grace_period == grace_period
    # Without refresh=..., the store takes the issuer's grace.
    default = create_store(secret_key=SECRET_KEY, token_issuer=issuer).refresh
    assert default is not None
    assert default.grace_period == 2
