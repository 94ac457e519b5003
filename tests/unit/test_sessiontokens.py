"""The built-in issuer on both stores: rotation, grace-window replay, reuse detection,
revocation, idle and absolute lifetimes, concurrency, and nothing stored in plaintext.

Every test runs against the in-memory store and a real redis-server."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import anyio
import jwt
import pytest

from fastapi_authkit import (
    ConfigurationError,
    RefreshParam,
    RefreshResult,
    create_issuer,
    create_store,
)
from fastapi_authkit.issuer import Issuer
from fastapi_authkit.stores import MemoryStore, RedisStore, SessionStore
from fastapi_authkit.stores.sealing import open_sealed, seal, token_id

from tests.support.clock import Clock

pytestmark = pytest.mark.anyio

SIGNING_KEY = "issuer-signing-key-0123456789abcdef-0123"


def make_issuer(backend: SessionStore, clock: Clock, **options: Any) -> Issuer:
    settings: dict[str, Any] = {
        "backend": backend,
        "signing_key": SIGNING_KEY,
        "access_ttl": 60,
        "idle_ttl": 3600,
        "absolute_ttl": 10 * 3600,
        "grace": 10,
        "clock": clock,
    }
    settings.update(options)
    return create_issuer(**settings)


@pytest.fixture
def issuer(backend: SessionStore, clock: Clock) -> Issuer:
    """:func:`make_issuer`'s issuer on each store in turn."""
    return make_issuer(backend, clock)


async def refresh(issuer: Issuer, token: str) -> RefreshResult:
    return await issuer.refresh(RefreshParam(auth_token=None, refresh_token=token))


def successor(result: RefreshResult) -> str:
    assert result.is_success, result
    assert result.new_refresh_token is not None
    return result.new_refresh_token


def minted_claims(token: str | None, **options: Any) -> dict[str, Any]:
    """The claims of an access token the issuer minted, checked with its key (but not its
    times: the tests' clock is not the wall clock)."""
    claims: dict[str, Any] = jwt.decode(
        token or "",
        SIGNING_KEY,
        algorithms=["HS256"],
        options={"verify_exp": False, "verify_iat": False},
        **options,
    )
    return claims


async def assert_reuse_revokes_the_family(
    issuer: Issuer, caplog: pytest.LogCaptureFixture, stale: str, latest: RefreshResult
) -> None:
    """``stale`` presented again is reuse: refused and logged, and the family's latest
    successor is refused too, its access token no longer live."""
    with caplog.at_level(logging.WARNING, logger="fastapi_authkit"):
        assert not (await refresh(issuer, stale)).is_success
    assert "reuse detected" in caplog.text
    assert not (await refresh(issuer, successor(latest))).is_success
    claims = jwt.decode(latest.new_auth_token or "", options={"verify_signature": False})
    assert not await issuer.is_active(claims)


async def test_issued_access_token_is_typed_and_carries_the_family(
    backend: SessionStore, clock: Clock
) -> None:
    issuer = make_issuer(backend, clock, issuer="https://auth.example", audience="app")
    tokens = await issuer.issue("alice")
    header = jwt.get_unverified_header(tokens.access_token)
    claims = minted_claims(tokens.access_token, audience="app")
    assert header["typ"] == "at+jwt"
    assert claims["sub"] == "alice"
    assert claims["sid"] == tokens.family_id
    assert claims["iss"] == "https://auth.example"
    assert claims["exp"] - claims["iat"] == 60
    assert isinstance(claims["jti"], str)
    assert await issuer.is_active(claims)
    # A store built on the issuer verifies exactly these tokens.
    store = create_store(secret_key="s" * 32, token_issuer=issuer, clock=clock)
    assert store.verifier.verify(tokens.access_token, clock())["sub"] == "alice"


async def test_rotation_hands_out_a_new_pair(issuer: Issuer, clock: Clock) -> None:
    tokens = await issuer.issue("alice")
    clock.advance(50)
    result = await refresh(issuer, tokens.refresh_token)
    assert successor(result) != tokens.refresh_token
    assert result.new_auth_token != tokens.access_token
    assert result.new_refresh_token_expires_in == 3600
    # The successor rotates in turn.
    clock.advance(50)
    assert (await refresh(issuer, successor(result))).is_success


async def test_immediate_predecessor_within_grace_gets_the_same_pair(
    issuer: Issuer, clock: Clock
) -> None:
    tokens = await issuer.issue("alice")
    first = await refresh(issuer, tokens.refresh_token)
    clock.advance(9)
    again = await refresh(issuer, tokens.refresh_token)
    assert again == first  # the same successor pair, nothing new minted
    assert (await refresh(issuer, successor(first))).is_success  # and it still rotates


async def test_predecessor_within_the_late_window_replays_its_unused_successor(
    backend: SessionStore, clock: Clock
) -> None:
    # Its holder may never have received the successor (a reply lost, a client gone
    # mid-refresh): up to late_replay (60 s by default) after the rotation, the same
    # successor refresh token, with an access token alive now.
    issuer = make_issuer(backend, clock, access_ttl=20)
    tokens = await issuer.issue("alice")
    first = await refresh(issuer, tokens.refresh_token)
    clock.advance(30)
    late = await refresh(issuer, tokens.refresh_token)
    assert late.is_success
    assert successor(late) == successor(first)
    assert late.new_auth_token != first.new_auth_token  # the sealed one had expired
    claims = jwt.decode(late.new_auth_token or "", options={"verify_signature": False})
    assert claims["exp"] > clock()
    clock.advance(30)  # the window's last instant: still the same successor
    assert successor(await refresh(issuer, tokens.refresh_token)) == successor(first)
    assert (await refresh(issuer, successor(late))).is_success  # and it rotates in turn


@pytest.mark.parametrize("used_in_window", [False, True], ids=["untouched", "replayed-before"])
async def test_predecessor_after_the_late_window_revokes_the_family(
    issuer: Issuer, clock: Clock, caplog: pytest.LogCaptureFixture, used_in_window: bool
) -> None:
    # A stale copy (a backup, a log, a shared machine) of a token rotated out more than
    # late_replay ago is reuse, although its successor was never used: RFC 9700 reuse
    # detection, the whole family revoked.
    tokens = await issuer.issue("alice")
    first = await refresh(issuer, tokens.refresh_token)
    if used_in_window:
        clock.advance(30)
        assert successor(await refresh(issuer, tokens.refresh_token)) == successor(first)
        clock.advance(30.5)
    else:
        clock.advance(60.5)
    await assert_reuse_revokes_the_family(issuer, caplog, tokens.refresh_token, first)


async def test_a_token_rotated_just_before_its_idle_end_keeps_its_late_window(
    backend: SessionStore, clock: Clock
) -> None:
    # The rotated-out token is remembered through the late window even when its own idle
    # life ends first: a reply lost then is recovered like any other.
    issuer = make_issuer(backend, clock, access_ttl=20, idle_ttl=100)
    tokens = await issuer.issue("alice")
    clock.advance(90)
    first = await refresh(issuer, tokens.refresh_token)
    clock.advance(40)  # past the predecessor's own idle end, within late_replay
    assert successor(await refresh(issuer, tokens.refresh_token)) == successor(first)
    clock.advance(21)  # past late_replay: nothing left to replay, and nothing revoked
    assert not (await refresh(issuer, tokens.refresh_token)).is_success
    assert (await refresh(issuer, successor(first))).is_success


async def test_late_replay_zero_makes_the_predecessor_reuse_right_after_grace(
    backend: SessionStore, clock: Clock
) -> None:
    issuer = make_issuer(backend, clock, late_replay=0)
    tokens = await issuer.issue("alice")
    first = await refresh(issuer, tokens.refresh_token)
    clock.advance(10)  # the grace window's last instant: in-flight requests, as ever
    assert await refresh(issuer, tokens.refresh_token) == first
    clock.advance(0.5)
    assert not (await refresh(issuer, tokens.refresh_token)).is_success
    assert not (await refresh(issuer, successor(first))).is_success


async def test_a_late_window_up_to_grace_adds_nothing_after_grace(
    backend: SessionStore, clock: Clock
) -> None:
    # late_replay counts from the rotation, as grace does: equal to grace, it ends with it.
    issuer = make_issuer(backend, clock, late_replay=10)
    tokens = await issuer.issue("alice")
    first = await refresh(issuer, tokens.refresh_token)
    clock.advance(10.5)
    assert not (await refresh(issuer, tokens.refresh_token)).is_success
    assert not (await refresh(issuer, successor(first))).is_success


async def test_predecessor_after_its_successor_was_used_revokes_the_family(
    issuer: Issuer, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = await issuer.issue("alice")
    first = await refresh(issuer, tokens.refresh_token)
    clock.advance(1)
    second = await refresh(issuer, successor(first))
    clock.advance(11)
    # The whole family is gone: the legitimate successor too, and its access token.
    await assert_reuse_revokes_the_family(issuer, caplog, tokens.refresh_token, second)


async def test_a_successor_replayed_late_is_not_replayed_late_itself(
    issuer: Issuer, clock: Clock
) -> None:
    # Handed out twice (to the holder, then to a late predecessor), it may be held by two:
    # when one of them has rotated it, the other coming back with it is a reuse. Otherwise
    # a thief one rotation behind could follow the session for ever.
    tokens = await issuer.issue("alice")
    first = await refresh(issuer, tokens.refresh_token)
    clock.advance(11)
    assert successor(await refresh(issuer, tokens.refresh_token)) == successor(first)
    second = await refresh(issuer, successor(first))
    clock.advance(5)  # within the grace window of that rotation: in-flight requests
    assert successor(await refresh(issuer, successor(first))) == successor(second)
    clock.advance(6)
    assert not (await refresh(issuer, successor(first))).is_success
    assert not (await refresh(issuer, successor(second))).is_success


async def test_grandparent_within_grace_revokes_the_family(issuer: Issuer, clock: Clock) -> None:
    tokens = await issuer.issue("alice")
    child = successor(await refresh(issuer, tokens.refresh_token))
    clock.advance(1)
    grandchild = successor(await refresh(issuer, child))
    clock.advance(1)  # still within grace of both rotations
    assert not (await refresh(issuer, tokens.refresh_token)).is_success
    assert not (await refresh(issuer, grandchild)).is_success


async def test_revoke_ends_the_family(issuer: Issuer, clock: Clock) -> None:
    tokens = await issuer.issue("alice")
    claims = jwt.decode(tokens.access_token, options={"verify_signature": False})
    assert await issuer.revoke(tokens.refresh_token)
    assert not await issuer.is_active(claims)
    assert not (await refresh(issuer, tokens.refresh_token)).is_success
    assert not await issuer.revoke("never-issued")


async def test_revoke_subject_ends_every_session_of_that_subject_only(
    issuer: Issuer, clock: Clock
) -> None:
    phone, laptop = await issuer.issue("alice"), await issuer.issue("alice")
    other = await issuer.issue("bob")
    assert await issuer.revoke_subject("alice") == 2
    assert await issuer.revoke_subject("alice") == 0  # already revoked
    assert not (await refresh(issuer, phone.refresh_token)).is_success
    assert not (await refresh(issuer, laptop.refresh_token)).is_success
    assert (await refresh(issuer, other.refresh_token)).is_success


async def test_idle_lifetime(issuer: Issuer, clock: Clock) -> None:
    tokens = await issuer.issue("alice")
    clock.advance(3599)
    current = successor(await refresh(issuer, tokens.refresh_token))  # activity resets idle
    clock.advance(3600)
    assert not (await refresh(issuer, current)).is_success


async def test_absolute_lifetime(issuer: Issuer, clock: Clock) -> None:
    tokens = await issuer.issue("alice")
    current = tokens.refresh_token
    for _ in range(11):
        clock.advance(3000)
        current = successor(await refresh(issuer, current))
    clock.advance(3001)  # 10 h since sign-in, although the last refresh was recent
    assert not (await refresh(issuer, current)).is_success
    claims = jwt.decode(tokens.access_token, options={"verify_signature": False})
    assert not await issuer.is_active(claims)


async def test_unknown_and_malformed_refresh_tokens(issuer: Issuer, clock: Clock) -> None:
    for token in ("", "x", "a" * 5000, "../../etc/passwd", "'; DROP TABLE --"):
        assert not (await refresh(issuer, token)).is_success
    assert not await issuer.is_active({"sid": 12})
    assert not await issuer.is_active({})


async def test_concurrent_rotation_mints_exactly_one_successor(
    issuer: Issuer, clock: Clock
) -> None:
    tokens = await issuer.issue("alice")
    results: list[RefreshResult] = []

    async def one() -> None:
        results.append(await refresh(issuer, tokens.refresh_token))

    async with anyio.create_task_group() as tg:
        for _ in range(40):
            tg.start_soon(one)
    assert len({r.new_refresh_token for r in results}) == 1
    assert len({r.new_auth_token for r in results}) == 1
    assert all(r.is_success for r in results)


async def test_no_plaintext_token_is_stored(request: pytest.FixtureRequest, clock: Clock) -> None:
    server = request.getfixturevalue("redis_server")
    prefix = f"t-{uuid.uuid4().hex}:"
    backend = RedisStore.from_url(server.url, prefix=prefix)
    try:
        issuer = make_issuer(backend, clock)
        tokens = await issuer.issue("alice")
        result = await refresh(issuer, tokens.refresh_token)
        secrets = [tokens.refresh_token, tokens.access_token, successor(result)]
        secrets.append(result.new_auth_token or "")
        from redis.asyncio import Redis

        raw = Redis.from_url(server.url)
        dump = b""
        async for key in raw.scan_iter(match=f"{prefix}*"):
            dump += key
            kind = await raw.type(key)
            if kind == b"hash":
                for field, value in (await raw.hgetall(key)).items():
                    dump += field + value
            elif kind == b"set":
                dump += b"".join(await raw.smembers(key))
            else:
                dump += await raw.get(key) or b""
        await raw.aclose()
        assert dump  # the scan saw the records
        for secret in secrets:
            assert secret.encode() not in dump
    finally:
        await backend.aclose()


def test_sealed_successor_opens_only_with_its_predecessor() -> None:
    blob = seal("predecessor", b'{"a":"x"}')
    assert open_sealed("predecessor", blob) == b'{"a":"x"}'
    assert open_sealed("someone-else", blob) is None
    assert open_sealed("predecessor", blob[:-1] + bytes([blob[-1] ^ 1])) is None
    assert open_sealed("predecessor", b"short") is None
    assert token_id("t", "refresh") != token_id("t", "flight")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"backend": object()}, "SessionStore"),
        ({"algorithm": "none"}, "is not accepted"),
        ({"algorithm": "RS256", "signing_key": "not a pem"}, "needs an RSA private key"),
        ({"access_ttl": 0}, "access_ttl"),
        ({"access_ttl": 4000}, "access_ttl < idle_ttl"),
        ({"grace": -1}, "grace"),
        ({"late_replay": -1}, "late_replay must be a non-negative number"),
        ({"late_replay": float("nan")}, "late_replay must be a non-negative number"),
        ({"late_replay": float("inf")}, "late_replay must be a non-negative number"),
        ({"late_replay": True}, "late_replay must be a non-negative number"),
        ({"late_replay": "60"}, "late_replay must be a non-negative number"),
        ({"late_replay": 5}, r"late_replay \(5 s\) is shorter than grace \(10 s\)"),
        ({"late_replay": 3600}, "late_replay must be shorter than idle_ttl"),
        ({"previous_keys": {"old": "k" * 32}}, "needs key_id"),
        ({"key_id": ""}, "key_id"),
        ({"clock": 5}, "clock"),
    ],
)
def test_issuer_configuration_errors(options: dict[str, Any], message: str) -> None:
    settings: dict[str, Any] = {
        "backend": MemoryStore(),
        "clock": Clock(),
        "signing_key": SIGNING_KEY,
        "idle_ttl": 3600,
        **options,
    }
    with pytest.raises(ConfigurationError, match=message):
        create_issuer(**settings)


@pytest.mark.parametrize(
    ("options", "window"),
    [
        ({}, 60.0),
        ({"late_replay": 0}, 0.0),
        ({"late_replay": 10}, 10.0),
        ({"late_replay": 120.5}, 120.5),
        ({"grace": 0, "late_replay": 0}, 0.0),
        ({"grace": 90, "late_replay": 0}, 0.0),
        ({"grace": 90, "late_replay": 90}, 90.0),
        ({"grace": 90}, 90.0),  # the default is never shorter than grace...
        ({"grace": 5, "idle_ttl": 40, "access_ttl": 10}, 40.0),  # ...nor past idle_ttl
    ],
)
def test_issuer_late_replay_window(options: dict[str, Any], window: float) -> None:
    options = {"idle_ttl": 3600, **options}
    issuer = create_issuer(backend=MemoryStore(), clock=Clock(), signing_key=SIGNING_KEY, **options)
    assert issuer.late_replay == window
    assert isinstance(issuer.late_replay, float)


async def test_key_rotation_with_key_ids(clock: Clock) -> None:
    backend = MemoryStore()
    old = make_issuer(backend, clock, key_id="2026-01")
    old_token = (await old.issue("alice")).access_token
    new = make_issuer(
        backend,
        clock,
        signing_key="next-signing-key-0123456789abcdef-01234",
        key_id="2026-02",
        previous_keys={"2026-01": SIGNING_KEY},
    )
    store = create_store(secret_key="s" * 32, token_issuer=new, clock=clock)
    assert jwt.get_unverified_header((await new.issue("bob")).access_token)["kid"] == "2026-02"
    assert store.verifier.verify(old_token, clock())["sub"] == "alice"  # overlap key
    retired = make_issuer(
        backend, clock, signing_key="next-signing-key-0123456789abcdef-01234", key_id="2026-02"
    )
    store = create_store(secret_key="s" * 32, token_issuer=retired, clock=clock)
    from fastapi_authkit import TokenError

    with pytest.raises(TokenError):
        store.verifier.verify(old_token, clock())


async def test_asymmetric_issuer(clock: Clock) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    issuer = make_issuer(MemoryStore(), clock, algorithm="ES256", signing_key=private)
    store = create_store(secret_key="s" * 32, token_issuer=issuer, clock=clock)
    token = (await issuer.issue("alice")).access_token
    assert store.verifier.verify(token, clock())["sub"] == "alice"


def test_store_with_issuer_refuses_conflicting_options(clock: Clock) -> None:
    issuer = make_issuer(MemoryStore(), clock)
    for extra in (
        {"token_key": "k" * 32},
        {"algorithms": ["HS256"]},
        {"issuer": "x"},
        {"audience": "y"},
        {"auth_type": "gateway"},  # (bearer headers are accepted: test_issuer_bearer.py)
    ):
        with pytest.raises(ConfigurationError):
            create_store(secret_key="s" * 32, token_issuer=issuer, **extra)
    with pytest.raises(ConfigurationError, match="create_issuer"):
        create_store(secret_key="s" * 32, token_issuer=object())  # type: ignore[arg-type]


@pytest.mark.parametrize("auth_token", [None, "", "not-a-jwt", "a.b.c", "e30.e30.e30"])
async def test_refresh_takes_a_bad_old_access_token_as_no_hint(
    issuer: Issuer, clock: Clock, auth_token: str | None
) -> None:
    """issuer.refresh reads whom to mint for from the old access token, unverified, only as
    a hint (the store rotates only if it matches): garbage there is simply no hint."""
    tokens = await issuer.issue("alice")
    result = await issuer.refresh(
        RefreshParam(auth_token=auth_token, refresh_token=tokens.refresh_token)
    )
    assert result.is_success
    claims = minted_claims(result.new_auth_token)
    assert (claims["sub"], claims["sid"]) == ("alice", tokens.family_id)


async def test_a_hint_for_another_session_mints_for_the_tokens_own(
    issuer: Issuer, clock: Clock
) -> None:
    alice, bob = await issuer.issue("alice"), await issuer.issue("bob")
    # Bob's refresh token with Alice's access token: the successor is Bob's, not Alice's.
    result = await issuer.refresh(
        RefreshParam(auth_token=alice.access_token, refresh_token=bob.refresh_token)
    )
    claims = minted_claims(result.new_auth_token)
    assert (claims["sub"], claims["sid"]) == ("bob", bob.family_id)
