"""Sessions a user can see: the built-in issuer lists a subject's live sessions (when and by
whom each was signed in and last refreshed) and revokes one by id, only the subject's own.

The store-level tests run on the in-memory store, a real redis-server, the real 3-primary
cluster and a real primary + replica + Sentinel; the request-level ones through the
middleware (an app on the issuer, httpx's ASGI transport, an injected clock).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI, HTTPException, Request
from redis.asyncio import Redis
from redis.crc import key_slot

from fastapi_authkit import ConfigurationError, RefreshParam, create_issuer
from fastapi_authkit.clientinfo import MAX_USER_AGENT, ClientInfo, client_info
from fastapi_authkit.dependencies import CurrentUser
from fastapi_authkit.errors import ReplicaConfirmationError
from fastapi_authkit.issuer import Issuer, SessionInfo
from fastapi_authkit.stores import MemoryStore, RedisStore, SessionStore
from fastapi_authkit.stores.redis.keys import KeyLayout

from tests.support.apps import issuer_app
from tests.support.clock import T0, Clock
from tests.support.redis_cluster import RedisClusterServers
from tests.support.redis_sentinel import SentinelSet
from tests.support.redis_servers import RedisServer
from tests.support.redis_stores import keys_under
from tests.support.round_trips import RoundTrips

pytestmark = pytest.mark.anyio

IDLE, ABSOLUTE, GRACE = 3600, 7200, 10
LAPTOP = ClientInfo("Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0", "192.0.2.10")
PHONE = ClientInfo("Mozilla/5.0 (iPhone; CPU iPhone OS 18_0) Safari/604.1", "198.51.100.7")
TABLET = ClientInfo("Mozilla/5.0 (Linux; Android 15) Chrome/139.0", "2001:db8::42")


def make_issuer(backend: SessionStore, clock: Clock) -> Issuer:
    return create_issuer(
        backend=backend,
        signing_key="sessions-signing-key-0123456789abcdef-012",
        access_ttl=60,
        idle_ttl=IDLE,
        absolute_ttl=ABSOLUTE,
        grace=GRACE,
        clock=clock,
    )


async def rotate(issuer: Issuer, refresh_token: str, client: ClientInfo | None) -> str:
    """A refresh as the middleware makes it (the old access token's subject, the client)."""
    rotation = await issuer.rotate(refresh_token, subject="alice", client=client)
    assert rotation.refresh_token is not None, rotation
    return rotation.refresh_token


# --- what is recorded and listed ------------------------------------------------------------


async def test_sign_in_and_each_refresh_are_recorded(backend: SessionStore, clock: Clock) -> None:
    issuer = make_issuer(backend, clock)
    tokens = await issuer.issue("alice", client=LAPTOP)
    assert await issuer.list_sessions("alice") == [
        SessionInfo(
            id=tokens.family_id,
            created_at=T0,
            refreshed_at=None,
            expires_at=T0 + IDLE,
            user_agent=LAPTOP.user_agent,
            ip=LAPTOP.ip,
            signed_in_user_agent=LAPTOP.user_agent,
            signed_in_ip=LAPTOP.ip,
        )
    ]
    clock.advance(100)
    second = await rotate(issuer, tokens.refresh_token, PHONE)
    clock.advance(100)
    await rotate(issuer, second, TABLET)
    [session] = await issuer.list_sessions("alice", current=tokens.family_id)
    assert session == SessionInfo(
        id=tokens.family_id,
        created_at=T0,
        refreshed_at=T0 + 200,
        expires_at=T0 + 200 + IDLE,
        # The client of the last refresh; the sign-in's is kept apart.
        user_agent=TABLET.user_agent,
        ip=TABLET.ip,
        signed_in_user_agent=LAPTOP.user_agent,
        signed_in_ip=LAPTOP.ip,
        current=True,
    )
    # A dataclass: what a FastAPI route answers as JSON.
    assert asdict(session)["ip"] == "2001:db8::42"


async def test_a_client_that_says_nothing_is_recorded_as_unknown(
    backend: SessionStore, clock: Clock
) -> None:
    issuer = make_issuer(backend, clock)
    tokens = await issuer.issue("alice", client=ClientInfo())
    clock.advance(5)
    await rotate(issuer, tokens.refresh_token, ClientInfo(user_agent=None, ip="192.0.2.1"))
    [session] = await issuer.list_sessions("alice")
    assert (session.user_agent, session.ip) == (None, "192.0.2.1")
    assert (session.signed_in_user_agent, session.signed_in_ip) == (None, None)


async def test_the_current_session_comes_first_then_the_most_recently_active(
    backend: SessionStore, clock: Clock
) -> None:
    issuer = make_issuer(backend, clock)
    first = await issuer.issue("alice", client=LAPTOP)
    clock.advance(10)
    second = await issuer.issue("alice", client=PHONE)
    clock.advance(10)
    third = await issuer.issue("alice", client=TABLET)
    clock.advance(10)
    await rotate(issuer, first.refresh_token, LAPTOP)  # the most recently active now
    listed = await issuer.list_sessions("alice", current=second.family_id)
    assert [s.id for s in listed] == [second.family_id, first.family_id, third.family_id]
    assert [s.current for s in listed] == [True, False, False]
    # Without a current one: by activity alone; the limit keeps the most recent.
    listed = await issuer.list_sessions("alice", limit=2)
    assert [s.id for s in listed] == [first.family_id, third.family_id]
    assert not any(s.current for s in listed)
    # Another subject's sessions are never in the list, and its own list is separate.
    other = await issuer.issue("bob", client=PHONE)
    assert {s.id for s in await issuer.list_sessions("alice")} == {
        first.family_id,
        second.family_id,
        third.family_id,
    }
    assert [s.id for s in await issuer.list_sessions("bob")] == [other.family_id]
    assert await issuer.list_sessions("carol") == []


@pytest.mark.parametrize("limit", [0, -1, 101, 1.5, True, "10"])
async def test_a_limit_out_of_bounds_is_a_clear_error(limit: Any, clock: Clock) -> None:
    issuer = make_issuer(MemoryStore(), clock)
    with pytest.raises(ValueError, match="limit must be an int from 1 to 100"):
        await issuer.list_sessions("alice", limit=limit)


async def test_only_live_sessions_are_listed(backend: SessionStore, clock: Clock) -> None:
    issuer = make_issuer(backend, clock)
    kept = await issuer.issue("alice", client=LAPTOP)
    signed_out = await issuer.issue("alice", client=PHONE)
    idle = await issuer.issue("alice", client=TABLET)
    assert await issuer.revoke(signed_out.refresh_token)
    token = kept.refresh_token
    for _ in range(2):  # kept is refreshed, idle never
        clock.advance(IDLE - 600)
        token = await rotate(issuer, token, LAPTOP)
    assert [s.id for s in await issuer.list_sessions("alice")] == [kept.family_id]
    assert idle.family_id  # past idle_ttl without a refresh: over, though never revoked
    # Past the absolute lifetime even a session refreshed all along is over.
    clock.advance(ABSOLUTE - 2 * (IDLE - 600))
    assert await issuer.list_sessions("alice") == []


# --- revoking one by id -----------------------------------------------------------------------


async def test_revoking_a_session_by_id_ends_that_session_only(
    backend: SessionStore, clock: Clock
) -> None:
    issuer = make_issuer(backend, clock)
    laptop = await issuer.issue("alice", client=LAPTOP)
    phone = await issuer.issue("alice", client=PHONE)
    assert await issuer.revoke_subject_session("alice", phone.family_id) is True
    assert [s.id for s in await issuer.list_sessions("alice")] == [laptop.family_id]
    # Refused by the session check, and its refresh token no longer rotates.
    assert not await issuer.is_active({"sid": phone.family_id})
    assert (await issuer.rotate(phone.refresh_token, subject="alice")).access_token is None
    assert await issuer.is_active({"sid": laptop.family_id})
    assert (await issuer.rotate(laptop.refresh_token, subject="alice")).access_token
    # Once only: it is over.
    assert await issuer.revoke_subject_session("alice", phone.family_id) is False


async def test_another_subjects_session_is_never_revoked(
    backend: SessionStore, clock: Clock
) -> None:
    issuer = make_issuer(backend, clock)
    bobs = await issuer.issue("bob", client=PHONE)
    await issuer.issue("alice", client=LAPTOP)
    assert await issuer.revoke_subject_session("alice", bobs.family_id) is False
    assert await issuer.is_active({"sid": bobs.family_id})
    assert [s.id for s in await issuer.list_sessions("bob")] == [bobs.family_id]
    assert (await issuer.rotate(bobs.refresh_token, subject="bob")).access_token


@pytest.mark.parametrize(
    "session_id", ["", "no-such-session", "../../etc", "a" * 65, "fam:x", "x}{", None, 7]
)
async def test_unknown_or_malformed_ids_revoke_nothing(
    backend: SessionStore, clock: Clock, session_id: Any
) -> None:
    issuer = make_issuer(backend, clock)
    tokens = await issuer.issue("alice", client=LAPTOP)
    assert await issuer.revoke_subject_session("alice", session_id) is False
    assert await issuer.is_active({"sid": tokens.family_id})


async def test_a_refresh_that_does_not_rotate_records_nothing(
    backend: SessionStore, clock: Clock
) -> None:
    issuer = make_issuer(backend, clock)
    tokens = await issuer.issue("alice", client=LAPTOP)
    clock.advance(30)
    successor = await rotate(issuer, tokens.refresh_token, PHONE)
    before = await issuer.list_sessions("alice")
    clock.advance(1)
    # The predecessor again within the grace period: the same pair, not a new refresh.
    replay = await issuer.rotate(tokens.refresh_token, subject="alice", client=TABLET)
    assert replay.refresh_token == successor
    # A made-up token naming the session's family (its id is not a secret): unknown.
    forged = f"{tokens.family_id}.not-a-real-secret"
    assert (await issuer.rotate(forged, subject="alice", client=TABLET)).access_token is None
    # The current token offered for another subject: nothing rotates at first.
    assert (await issuer.rotate(successor, subject="mallory", client=TABLET)).access_token
    after = await issuer.list_sessions("alice")
    # Only that last call rotated (minting for the session's own subject), recording it.
    assert [s.user_agent for s in before] == [PHONE.user_agent]
    assert [s.user_agent for s in after] == [TABLET.user_agent]
    assert after[0].refreshed_at == T0 + 31


async def test_the_refresh_callback_without_a_client_keeps_the_last_record(
    backend: SessionStore, clock: Clock
) -> None:
    # issuer.refresh as an app's own callback knows no request: nothing is recorded.
    issuer = make_issuer(backend, clock)
    tokens = await issuer.issue("alice", client=LAPTOP)
    clock.advance(30)
    result = await issuer.refresh(RefreshParam(auth_token=None, refresh_token=tokens.refresh_token))
    assert result.is_success
    [session] = await issuer.list_sessions("alice")
    assert (session.refreshed_at, session.user_agent) == (None, LAPTOP.user_agent)
    assert session.expires_at == T0 + 30 + IDLE  # the rotation itself moved the idle expiry


# --- Redis: layout, bounds, round trips ----------------------------------------------------


def test_the_session_record_lives_in_its_familys_slot() -> None:
    for prefix in ("authkit:", "{authkit}:"):
        keys = KeyLayout(prefix)
        for family in ("fam1", "Zx_9-", "a" * 64):
            slot = key_slot(keys.family(family).encode())
            assert key_slot(keys.session(family).encode()) == slot
            assert key_slot(keys.token(family, "t" * 64).encode()) == slot


async def test_on_the_cluster_each_record_is_on_its_familys_primary(
    redis_cluster: RedisClusterServers, clock: Clock
) -> None:
    prefix = f"ses-{uuid.uuid4().hex}:"
    backend = RedisStore.from_url(redis_cluster.url, prefix=prefix)
    try:
        issuer = make_issuer(backend, clock)
        families = [(await issuer.issue("alice", client=LAPTOP)).family_id for _ in range(24)]
        found = await keys_under(backend, prefix)
        homes = {}
        for port, keys in found.items():
            for key in keys:
                homes[key.decode()] = port
        layout = KeyLayout(prefix)
        for family in families:
            assert homes[layout.session(family)] == homes[layout.family(family)]
        assert len({homes[layout.family(f)] for f in families}) == 3  # spread over all
        assert len(await issuer.list_sessions("alice")) == 24
    finally:
        await backend.aclose()


class OnRedis:
    """A RedisStore on a fresh prefix of the session's redis-server, and a raw client to
    look at what it wrote."""

    def __init__(self, server: RedisServer) -> None:
        self.prefix = f"ses-{uuid.uuid4().hex}:"
        self.backend = RedisStore.from_url(server.url, prefix=self.prefix)
        self.raw = Redis.from_url(server.url)


@pytest.fixture
async def on_redis(request: pytest.FixtureRequest) -> AsyncIterator[OnRedis]:
    server: RedisServer = request.getfixturevalue("redis_server")
    store = OnRedis(server)
    try:
        yield store
    finally:
        await store.raw.aclose()
        await store.backend.aclose()


async def test_revoked_sessions_leave_the_subjects_set_once_listed(
    on_redis: OnRedis, clock: Clock
) -> None:
    backend, raw, prefix = on_redis.backend, on_redis.raw, on_redis.prefix
    issuer = make_issuer(backend, clock)
    kept = await issuer.issue("alice", client=LAPTOP)
    gone = await issuer.issue("alice", client=PHONE)
    await issuer.revoke(gone.refresh_token)
    subject_key = f"{prefix}sub:alice"
    assert len(await raw.smembers(subject_key)) == 2
    assert [s.id for s in await issuer.list_sessions("alice")] == [kept.family_id]
    assert await raw.smembers(subject_key) == {kept.family_id.encode()}
    # "Sign out everywhere" still reaches the one that is left.
    assert await issuer.revoke_subject("alice") == 1


async def test_nothing_but_the_bounded_client_details_is_in_the_session_record(
    on_redis: OnRedis, clock: Clock
) -> None:
    backend, raw, prefix = on_redis.backend, on_redis.raw, on_redis.prefix
    issuer = make_issuer(backend, clock)
    tokens = await issuer.issue("alice", client=LAPTOP)
    clock.advance(30)
    access = issuer.mint_access("alice", tokens.family_id, clock())
    rotation = await issuer.rotate(tokens.refresh_token, subject="alice", client=PHONE)
    record = await raw.hgetall(KeyLayout(prefix).session(tokens.family_id))
    assert record == {
        b"c": repr(T0).encode(),
        b"ua0": LAPTOP.user_agent.encode(),  # type: ignore[union-attr]
        b"ip0": LAPTOP.ip.encode(),  # type: ignore[union-attr]
        b"t": repr(T0 + 30).encode(),
        b"ua": PHONE.user_agent.encode(),  # type: ignore[union-attr]
        b"ip": PHONE.ip.encode(),  # type: ignore[union-attr]
    }
    # It expires with the session (its absolute lifetime), not later than a minute on.
    ttl = await raw.pttl(KeyLayout(prefix).session(tokens.family_id))
    assert (ABSOLUTE - 30) * 1000 < ttl <= (ABSOLUTE - 30) * 1000 + 60_000
    dump = b"".join(record.values())
    for secret in (tokens.refresh_token, tokens.access_token, access, rotation.refresh_token):
        assert secret
        assert secret.encode() not in dump


async def test_recording_a_refresh_costs_no_round_trip(
    request: pytest.FixtureRequest, clock: Clock
) -> None:
    server: RedisServer = request.getfixturevalue("redis_server")
    client = Redis.from_url(server.url, socket_timeout=5)
    backend = RedisStore(client, prefix=f"ses-{uuid.uuid4().hex}:", view_size=0)
    counter = RoundTrips(client)
    try:
        issuer = make_issuer(backend, clock)
        tokens = await issuer.issue("alice", client=LAPTOP)
        before = counter.count
        clock.advance(30)
        successor = await rotate(issuer, tokens.refresh_token, PHONE)
        assert counter.count - before == 1  # one pipeline: the rotation and its record
        # After SCRIPT FLUSH (a restarted Redis) the rotation is refused unrun and sent
        # again with its text; the record follows it both times.
        await client.script_flush()
        clock.advance(30)
        before = counter.count
        await rotate(issuer, successor, TABLET)
        assert counter.count - before == 2  # the refused pipeline and the resent one
        [session] = await issuer.list_sessions("alice")
        assert (session.refreshed_at, session.user_agent) == (T0 + 60, TABLET.user_agent)
    finally:
        await backend.aclose()


async def test_with_wait_replicas_the_record_rides_with_the_rotation_and_its_wait(
    request: pytest.FixtureRequest, clock: Clock
) -> None:
    # No replica here: WAIT confirms nothing, the refresh is refused and the rotation
    # undone (one more round trip, as without the record).
    server: RedisServer = request.getfixturevalue("redis_server")
    prefix = f"ses-{uuid.uuid4().hex}:"
    plain = RedisStore.from_url(server.url, prefix=prefix)
    client = Redis.from_url(server.url, socket_timeout=5)
    waiting = RedisStore(client, prefix=prefix, wait_replicas=1, wait_timeout=0.05)
    counter = RoundTrips(client)
    try:
        tokens = await make_issuer(plain, clock).issue("alice", client=LAPTOP)
        # Once first, so that Redis holds every script this takes (the count is of the
        # second time: the first also loads them).
        warm = await make_issuer(plain, clock).issue("warm-up")
        with pytest.raises(ReplicaConfirmationError):
            await make_issuer(waiting, clock).rotate(
                warm.refresh_token, subject="warm-up", client=PHONE
            )
        before = counter.count
        with pytest.raises(ReplicaConfirmationError):
            await make_issuer(waiting, clock).rotate(
                tokens.refresh_token, subject="alice", client=PHONE
            )
        assert counter.count - before == 2  # rotation + record + WAIT, then the undo
        # The session is as it was: its token rotates (and is recorded) through the other.
        await rotate(make_issuer(plain, clock), tokens.refresh_token, TABLET)
        [session] = await make_issuer(plain, clock).list_sessions("alice")
        assert session.user_agent == TABLET.user_agent
    finally:
        await waiting.aclose()
        await plain.aclose()


# --- Sentinel ----------------------------------------------------------------------------------


async def test_sessions_through_sentinel(sentinel_set: SentinelSet, clock: Clock) -> None:
    backend = RedisStore.from_url(sentinel_set.url, prefix=f"ses-{uuid.uuid4().hex}:")
    try:
        issuer = make_issuer(backend, clock)
        laptop = await issuer.issue("alice", client=LAPTOP)
        phone = await issuer.issue("alice", client=PHONE)
        clock.advance(30)
        await rotate(issuer, laptop.refresh_token, TABLET)
        listed = await issuer.list_sessions("alice", current=phone.family_id)
        assert [(s.id, s.user_agent, s.current) for s in listed] == [
            (phone.family_id, PHONE.user_agent, True),
            (laptop.family_id, TABLET.user_agent, False),
        ]
        assert await issuer.revoke_subject_session("bob", laptop.family_id) is False
        assert await issuer.revoke_subject_session("alice", laptop.family_id) is True
        assert not await issuer.is_active({"sid": laptop.family_id})
        assert [s.id for s in await issuer.list_sessions("alice")] == [phone.family_id]
    finally:
        await backend.aclose()


# --- client details from the ASGI scope ---------------------------------------------------------


def scope(headers: list[tuple[bytes, bytes]], client: Any = ("192.0.2.1", 50000)) -> Any:
    return {"type": "http", "headers": headers, "client": client}


def test_client_info_is_the_user_agent_and_the_scopes_client_address() -> None:
    info = client_info(scope([(b"user-agent", b"Mozilla/5.0 Test")]))
    assert info == ClientInfo("Mozilla/5.0 Test", "192.0.2.1")
    # Forwarded headers are anyone's words: only the server (trusting its proxy) may put
    # another address in the scope.
    forwarded = [(b"x-forwarded-for", b"203.0.113.9"), (b"forwarded", b"for=203.0.113.9")]
    assert client_info(scope(forwarded)).ip == "192.0.2.1"
    assert client_info(scope([], client=None)) == ClientInfo(None, None)
    assert client_info(scope([], client=("::1", 1))).ip == "::1"
    assert client_info(scope([], client=["unix-socket-peer"])).ip == "unix-socket-peer"
    assert client_info({"type": "websocket"}) == ClientInfo(None, None)


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        (b"A" * 10_000, "A" * MAX_USER_AGENT),
        (b"Evil\r\nSet-Cookie: x\x00\x1b[31m", "Evil??Set-Cookie: x??[31m"),
        ("Navigateur é".encode("latin-1"), "Navigateur ?"),
        (b"   ", None),
        (b"", None),
    ],
)
def test_what_is_stored_of_a_user_agent_is_bounded_printable_ascii(
    raw: bytes, stored: str | None
) -> None:
    assert client_info(scope([(b"user-agent", raw)])).user_agent == stored


def test_an_address_that_is_no_address_is_bounded_too() -> None:
    info = client_info(scope([], client=("h" * 500 + "\x00", 1)))
    assert info.ip == "h" * 64
    assert client_info(scope([], client=(None, 1))).ip is None
    assert client_info(scope([], client="192.0.2.1")).ip is None


# --- through the middleware: the signed-in user's own sessions ----------------------------------


def sessions_app(backend: SessionStore, clock: Clock) -> FastAPI:
    """issuer_app plus the routes a "your sessions" page needs."""
    app = issuer_app(backend, clock)
    issuer: Issuer = app.state.issuer

    @app.get("/sessions")
    async def sessions(request: Request, user: CurrentUser) -> list[SessionInfo]:
        return await issuer.sessions(request)

    @app.get("/sessions-unguarded")
    async def unguarded(request: Request) -> list[SessionInfo]:
        return await issuer.sessions(request)

    @app.delete("/sessions/{session_id}")
    async def revoke(request: Request, session_id: str, user: CurrentUser) -> dict[str, bool]:
        if not await issuer.revoke_session(request, session_id):
            raise HTTPException(404, "no such session")
        return {"revoked": True}

    @app.post("/forgot-await/{session_id}")
    async def forgot(request: Request, session_id: str) -> dict[str, bool]:
        issuer.revoke_session(request, session_id)  # type: ignore[unused-coroutine]
        return {"revoked": True}

    return app


class Device:
    """A browser: its own cookies, user agent and address."""

    def __init__(self, app: FastAPI, user_agent: str, ip: str) -> None:
        transport = httpx2.ASGITransport(app=app, client=(ip, 41000))
        self.http = httpx2.AsyncClient(
            transport=transport, base_url="https://testserver", headers={"user-agent": user_agent}
        )

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> httpx2.Response:
        headers = dict(headers or {})
        csrf = self.http.cookies.get("_auth_csrf")
        if csrf and method != "GET":
            headers["x-csrf-token"] = csrf
        return await self.http.request(method, path, headers=headers)

    async def sign_in(self, subject: str = "alice") -> str:
        response = await self.request("POST", f"/login?as={subject}")
        assert response.status_code == 200, response.text
        me = await self.request("GET", "/me")
        sid: str = me.json()["sid"]
        return sid


@pytest.fixture
async def devices(clock: Clock) -> AsyncIterator[tuple[Device, Device, Device]]:
    app = sessions_app(MemoryStore(), clock)
    laptop = Device(app, LAPTOP.user_agent or "", LAPTOP.ip or "")
    phone = Device(app, PHONE.user_agent or "", PHONE.ip or "")
    mallory = Device(app, "curl/8.0", "203.0.113.66")
    yield laptop, phone, mallory
    for device in (laptop, phone, mallory):
        await device.http.aclose()


async def test_a_user_sees_their_sessions_with_this_one_marked(
    devices: tuple[Device, Device, Device], clock: Clock
) -> None:
    laptop, phone, _ = devices
    on_laptop = await laptop.sign_in()
    clock.advance(5)
    on_phone = await phone.sign_in()
    response = await laptop.request("GET", "/sessions")
    assert response.status_code == 200
    listed = response.json()
    assert [(s["id"], s["current"]) for s in listed] == [(on_laptop, True), (on_phone, False)]
    assert listed[0] == {
        "id": on_laptop,
        "created_at": T0,
        "refreshed_at": None,
        "expires_at": T0 + 3600,  # issuer_app's idle lifetime
        "user_agent": LAPTOP.user_agent,
        "ip": LAPTOP.ip,  # the scope's client address
        "signed_in_user_agent": LAPTOP.user_agent,
        "signed_in_ip": LAPTOP.ip,
        "current": True,
    }
    assert [s["current"] for s in (await phone.request("GET", "/sessions")).json()] == [
        True,
        False,
    ]


async def test_a_silent_refresh_records_who_made_it(
    devices: tuple[Device, Device, Device], clock: Clock
) -> None:
    laptop, _, _ = devices
    await laptop.sign_in()
    clock.advance(61)  # the access token expired: the next request refreshes first
    laptop.http.headers["user-agent"] = "Mozilla/5.0 (X11; Linux x86_64) Firefox/141.0"
    response = await laptop.request("GET", "/sessions", headers={"x-forwarded-for": "1.2.3.4"})
    assert response.status_code == 200
    assert "_auth_refresh" in response.cookies  # it did refresh
    [session] = response.json()
    assert session["refreshed_at"] == T0 + 61
    assert session["user_agent"] == "Mozilla/5.0 (X11; Linux x86_64) Firefox/141.0"
    assert session["ip"] == LAPTOP.ip  # not the forwarded header
    assert session["signed_in_user_agent"] == LAPTOP.user_agent


async def test_revoking_another_device_signs_only_that_device_out(
    devices: tuple[Device, Device, Device], clock: Clock
) -> None:
    laptop, phone, _ = devices
    on_laptop = await laptop.sign_in()
    on_phone = await phone.sign_in()
    # Without the CSRF header: refused before anything happens.
    refused = await laptop.http.delete(f"/sessions/{on_phone}")
    assert refused.status_code == 403
    assert (await phone.request("GET", "/me")).status_code == 200
    response = await laptop.request("DELETE", f"/sessions/{on_phone}")
    assert response.status_code == 200, response.text
    assert response.headers.get_list("set-cookie") == []  # the laptop stays signed in
    # The phone's access token is still unexpired: refused all the same, cookies cleared.
    gone = await phone.request("GET", "/me")
    assert gone.status_code == 401
    assert phone.http.cookies.get("_auth_refresh") is None
    assert (await laptop.request("GET", "/me")).status_code == 200
    assert [s["id"] for s in (await laptop.request("GET", "/sessions")).json()] == [on_laptop]
    again = await laptop.request("DELETE", f"/sessions/{on_phone}")
    assert again.status_code == 404


async def test_revoking_this_session_signs_this_device_out(
    devices: tuple[Device, Device, Device],
) -> None:
    laptop, phone, _ = devices
    on_laptop = await laptop.sign_in()
    await phone.sign_in()
    response = await laptop.request("DELETE", f"/sessions/{on_laptop}")
    assert response.status_code == 200
    cleared = {header.split("=", 1)[0] for header in response.headers.get_list("set-cookie")}
    assert cleared == {"_auth", "_auth_type", "_auth_state", "_auth_refresh", "_auth_csrf"}
    assert (await laptop.request("GET", "/me")).status_code == 401
    assert (await phone.request("GET", "/me")).status_code == 200


async def test_another_users_session_id_is_refused_and_untouched(
    devices: tuple[Device, Device, Device], clock: Clock
) -> None:
    laptop, _, mallory = devices
    on_laptop = await laptop.sign_in("alice")
    await mallory.sign_in("mallory")
    # Mallory knows (or guesses) alice's session id: the API is scoped to her own subject.
    response = await mallory.request("DELETE", f"/sessions/{on_laptop}")
    assert response.status_code == 404
    assert (await laptop.request("GET", "/me")).status_code == 200
    assert [s["id"] for s in (await mallory.request("GET", "/sessions")).json()] != [on_laptop]
    for junk in ("x" * 300, "%00", "..%2F..%2Fetc"):
        assert (await mallory.request("DELETE", f"/sessions/{junk}")).status_code == 404
    assert (await laptop.request("GET", "/me")).status_code == 200


async def test_signed_out_there_is_no_session_to_list_or_revoke(
    devices: tuple[Device, Device, Device],
) -> None:
    laptop, phone, _ = devices
    on_phone = await phone.sign_in()
    response = await laptop.request("GET", "/sessions-unguarded")
    assert response.status_code == 200
    assert response.json() == []
    assert (await laptop.request("GET", "/sessions")).status_code == 401
    assert (await laptop.request("DELETE", f"/sessions/{on_phone}")).status_code == 401
    assert (await phone.request("GET", "/me")).status_code == 200


async def test_a_forgotten_await_is_refused_loudly(
    devices: tuple[Device, Device, Device],
) -> None:
    laptop, _, _ = devices
    on_laptop = await laptop.sign_in()
    with pytest.raises(ConfigurationError, match=r"issuer\.revoke_session"):
        await laptop.request("POST", f"/forgot-await/{on_laptop}")
    assert (await laptop.request("GET", "/me")).status_code == 200
