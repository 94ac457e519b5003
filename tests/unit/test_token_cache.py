"""The verified-token cache is a speed-up only: it must not weaken expiry, revocation, key
rotation or configuration isolation, must never hold a token that failed, and stays bounded."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import Request

from fastapi_authkit import TokenError, create_issuer, create_store, get_auth_state
from fastapi_authkit.errors import TokenExpiredError
from fastapi_authkit.fifo import Fifo
from fastapi_authkit.jsoncopy import remember
from fastapi_authkit.stores import MemoryStore

from tests.support.apps import Recorder, build_app, build_store, client, login
from tests.support.clock import Clock
from tests.support.tokens import TOKEN_KEY, make_token


def test_cached_token_still_expires(clock: Clock) -> None:
    verifier = build_store(clock, None).verifier
    token = make_token(clock, ttl=60)
    assert verifier.verify(token, clock())["sub"] == "alice"
    assert verifier.verify(token, clock() + 59)["sub"] == "alice"  # served from the cache
    with pytest.raises(TokenExpiredError):
        verifier.verify(token, clock() + 60)
    assert token not in verifier._cache  # dropped once it failed


def test_cached_token_still_checks_nbf(clock: Clock) -> None:
    verifier = build_store(clock, None).verifier
    token = make_token(clock, ttl=60, nbf=int(clock()))
    verifier.verify(token, clock())
    with pytest.raises(TokenError, match="nbf"):
        verifier.verify(token, clock() - 10)  # a clock moved back: not yet valid again


def test_failures_are_never_cached(clock: Clock) -> None:
    verifier = build_store(clock, None).verifier
    forged = make_token(clock, key="forged-key-" * 4)
    for _ in range(2):
        with pytest.raises(TokenError):
            verifier.verify(forged, clock())
    expired = make_token(clock, ttl=-5)
    with pytest.raises(TokenExpiredError):
        verifier.verify(expired, clock())
    assert verifier._cache == {}


def test_cache_is_per_configuration(clock: Clock) -> None:
    """A token remembered by one configuration means nothing to another (key rotation:
    a store built without the retired key rejects tokens the old store had cached)."""
    old = create_store(secret_key="s" * 32, token_key={"k1": TOKEN_KEY}, clock=clock)
    new = create_store(secret_key="s" * 32, token_key={"k2": "n" * 40}, clock=clock)
    token = make_token(clock, headers={"kid": "k1"})
    assert old.verifier.verify(token, clock())["sub"] == "alice"
    with pytest.raises(TokenError):
        new.verifier.verify(token, clock())


def test_cache_is_bounded(clock: Clock) -> None:
    verifier = build_store(clock, None, verified_token_cache=2).verifier
    tokens = [make_token(clock, sub=f"user-{i}") for i in range(5)]
    for token in tokens:
        verifier.verify(token, clock())
    assert list(verifier._cache) == tokens[-2:]  # first in, first out
    disabled = build_store(clock, None, verified_token_cache=0).verifier
    disabled.verify(tokens[0], clock())
    assert disabled._cache == {}


def test_claims_handed_out_are_copies(clock: Clock) -> None:
    verifier = build_store(clock, None).verifier
    token = make_token(clock)
    verifier.verify(token, clock())["sub"] = "mallory"
    assert verifier.verify(token, clock())["sub"] == "alice"


@pytest.mark.anyio
async def test_revocation_applies_to_cached_tokens(clock: Clock) -> None:
    issuer = create_issuer(
        backend=MemoryStore(),
        signing_key="cache-signing-key-0123456789abcdef-0123",
        access_ttl=60,
        clock=clock,
    )
    store = create_store(secret_key="s" * 32, token_issuer=issuer, clock=clock)
    tokens = await issuer.issue("alice")
    claims = store.verifier.verify(tokens.access_token, clock())  # now cached
    assert await issuer.is_active(claims)
    await issuer.revoke(tokens.refresh_token)
    claims = store.verifier.verify(tokens.access_token, clock())  # still a valid JWT...
    assert not await issuer.is_active(claims)  # ...but the middleware's check refuses it


def test_cache_does_not_change_http_behaviour(clock: Clock) -> None:
    tc = client(build_app(build_store(clock, None)))
    login(tc, clock, ttl=30)
    assert tc.get("/me").status_code == 200
    assert tc.get("/me").status_code == 200
    clock.advance(31)
    assert tc.get("/me").status_code == 401


def _edit_nested(user_state: Any) -> None:
    user_state["roles"].append("admin")


def _edit_flat(user_state: Any) -> None:
    user_state["roles"] = "admin"


@pytest.mark.parametrize("edit", [_edit_nested, _edit_flat])
def test_state_cookie_cache_still_checks_age_and_isolates_copies(clock: Clock, edit: Any) -> None:
    codec = build_store(clock, None, state_max_age=100).state_codec
    original = {"roles": ["user"]} if edit is _edit_nested else {"roles": "user"}
    value = codec.dumps("sid-1", original, "bound-token")
    first = codec.loads(value)  # verified now, and remembered
    assert first is not None
    edit(first.user_state)  # a route editing its copy
    second = codec.loads(value)  # from the cache
    assert second is not None
    assert second.user_state == original
    clock.advance(100)
    assert codec.loads(value) is not None  # exactly max_age old is still accepted
    clock.advance(1)
    assert codec.loads(value) is None  # too old, although it was cached
    assert value not in codec._cache


def test_state_cookie_failures_are_never_cached(clock: Clock) -> None:
    codec = build_store(clock, None).state_codec
    value = codec.dumps("sid-1", None, "bound-token")
    tampered = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    assert codec.loads(tampered) is None
    assert codec.loads(tampered) is None
    assert codec._cache == {}
    clock.advance(-10)  # signed in the future relative to this clock
    assert codec.loads(value) is None


@pytest.mark.anyio
async def test_single_flight_memory_is_bounded_and_forgets_by_successor(clock: Clock) -> None:
    from fastapi_authkit.refresh import Renewed, SingleFlight
    from fastapi_authkit.refresh import flight as flight_module

    flights = SingleFlight(clock)

    def outcome(successor: str) -> Renewed:
        return Renewed("t", "Bearer", {"exp": 0}, None, "sid", successor, ())

    for i in range(5):
        result = outcome(f"succ-{i}")
        assert await flights.run(f"pred-{i}", 10, _returning(result)) is result
    assert len(flights._recent) == 5
    # A predecessor within grace gets the remembered result without a call.
    assert (await flights.run("pred-2", 10, _failing)).refresh_token == "succ-2"
    # Signing out with the successor drops what its predecessor would have revived.
    flights.forget("succ-2")
    assert len(flights._recent) == 4
    assert "pred-2" not in {r.refresh_token for _, r in flights._recent.values()}
    # Expired entries are dropped from the front as new ones arrive.
    clock.advance(11)
    await flights.run("pred-new", 10, _returning(outcome("succ-new")))
    assert len(flights._recent) == 1
    # And the table never outgrows its bound.
    original = flight_module._MAX_RECENT
    flight_module._MAX_RECENT = 3
    try:
        for i in range(6):
            await flights.run(f"more-{i}", 10, _returning(outcome(f"more-succ-{i}")))
        assert len(flights._recent) == 3
        assert len(flights._by_successor) == 3
    finally:
        flight_module._MAX_RECENT = original


def _returning(value: object) -> Any:
    async def call() -> Any:
        return value

    return call


async def _failing() -> Any:
    raise AssertionError("the remembered result should have been used")


def _hot_app(clock: Clock, recorder: Recorder | None = None, **options: Any) -> Any:
    from fastapi_authkit import AuthKitMiddleware

    app = build_app(build_store(clock, recorder, **options))
    tc = client(app)
    tc.get("/public")  # builds the middleware stack
    middleware = app.middleware_stack
    while not isinstance(middleware, AuthKitMiddleware):
        middleware = middleware.app
    return tc, middleware._reader  # the request reader remembers signed-in headers


def test_remembered_signed_in_header_expires_with_its_token(clock: Clock) -> None:
    tc, reader = _hot_app(clock)
    login(tc, clock, ttl=30, refresh=None)
    assert tc.get("/me").status_code == 200  # remembered now
    assert len(reader._cache.readings) == 1
    clock.advance(29)
    assert tc.get("/me").status_code == 200  # from the remembered outcome
    clock.advance(1)
    assert tc.get("/me").status_code == 401  # the token's exp bounds it
    assert reader._cache.readings == {}


def test_remembered_header_stops_where_a_refresh_falls_due(clock: Clock) -> None:
    recorder = Recorder(clock)
    tc, reader = _hot_app(clock, recorder)
    login(tc, clock, ttl=300)
    assert tc.get("/me").json()["sub"] == "alice"
    assert len(reader._cache.readings) == 1  # remembered
    clock.advance(239)  # 61 s left: not yet inside the 60 s refresh interval
    assert tc.get("/me").json()["sub"] == "alice"
    assert recorder.calls == []
    clock.advance(1)  # inside it: the remembered outcome must not hide the refresh
    assert tc.get("/me").json()["sub"] == "alice-1"
    assert len(recorder.calls) == 1


def test_remembered_header_respects_the_state_cookie_age(clock: Clock) -> None:
    tc, _ = _hot_app(clock, state_max_age=60, max_token_lifetime=7200)
    login(tc, clock, ttl=3600, refresh=None, user_state={"name": "A"})
    assert tc.get("/me").json()["user"] == {"name": "A"}
    clock.advance(61)  # the state cookie is too old now; the token is still fine
    # No identity without a valid state cookie (never the claims in place of the state).
    assert tc.get("/me").status_code == 401


def test_unsafe_methods_never_use_the_remembered_header(clock: Clock) -> None:
    tc, _ = _hot_app(clock)
    login(tc, clock, refresh=None)
    assert tc.get("/me").status_code == 200
    assert tc.post("/write").status_code == 403  # no CSRF header: the full checks ran
    csrf = tc.cookies["_auth_csrf"]
    assert tc.post("/write", headers={"x-csrf-token": csrf}).status_code == 200


def test_remembered_outcome_is_copied_per_request(clock: Clock) -> None:
    tc, _ = _hot_app(clock)
    app = tc.app

    @app.get("/edit")  # type: ignore[union-attr]
    async def edit(request: Request) -> Any:
        state = get_auth_state(request)
        state.user_state["roles"].append("admin")
        state.claims["sub"] = "mallory"
        return state.user_state

    login(tc, clock, refresh=None, user_state={"roles": ["user"]})
    tc.get("/me")
    assert tc.get("/edit").json() == {"roles": ["user", "admin"]}
    response = tc.get("/me").json()
    assert response == {"user": {"roles": ["user"]}, "sub": "alice"}


def test_request_that_creates_the_remembered_outcome_cannot_change_it(clock: Clock) -> None:
    """The first request of a header is the one whose outcome is remembered: what its route
    does to its own claims and user state must not reach the requests after it."""
    tc, _ = _hot_app(clock)
    app = tc.app

    @app.get("/edit")  # type: ignore[union-attr]
    async def edit(request: Request) -> Any:
        state = get_auth_state(request)
        state.user_state["name"] = "Mallory"
        state.claims["sub"] = "mallory"
        return state.user_state

    login(tc, clock, refresh=None, user_state={"name": "Alice"})
    assert tc.get("/edit").json() == {"name": "Mallory"}  # the first request: remembered now
    assert tc.get("/me").json() == {"user": {"name": "Alice"}, "sub": "alice"}


def test_remembered_headers_are_bounded_by_the_token_cache(clock: Clock) -> None:
    """One remembered header per verified token at most: the bound is verified_token_cache,
    first in, first out."""
    tc, reader = _hot_app(clock, verified_token_cache=2)
    headers = []
    for i in range(3):
        tc.cookies.clear()
        login(tc, clock, refresh=None, user_state={"n": i})
        assert tc.get("/me").json()["user"] == {"n": i}
        headers.append(next(reversed(reader._cache.readings)))
    assert list(reader._cache.readings) == headers[-2:]
    off, off_reader = _hot_app(clock, verified_token_cache=0)
    login(off, clock, refresh=None, user_state={"n": 0})
    assert off.get("/me").json()["user"] == {"n": 0}
    assert off_reader._cache.readings == {}


@pytest.mark.parametrize(
    "value",
    [
        {"sub": "alice", "n": 1},
        ["a", 1, None],
        {"roles": ["user"], "org": {"id": 7}},
        [{"id": 1}, ["x"]],
        "plain",
        None,
    ],
)
def test_remembered_values_hand_out_private_copies(value: Any) -> None:
    """Whatever the shape, neither the value remember() was given nor any copy it handed
    out can change what the next copy holds."""
    original = json.loads(json.dumps(value))
    remembered = remember(value)
    if isinstance(value, dict):
        value["added"] = True  # the caller's value is the caller's
    first = remembered.copy()
    if isinstance(first, dict):
        first.clear()
        first["x"] = 1
    elif isinstance(first, list):
        first.append("x")
        for item in first:
            if isinstance(item, dict | list):
                item.clear()
    assert remembered.copy() == original
    assert remembered.value == original


def test_remembered_header_builds_the_same_state_as_the_full_read(clock: Clock) -> None:
    """The hot path builds its AuthState without __init__: every public field must come out
    as the full read makes it (a field added to AuthState must be added there too)."""
    tc, reader = _hot_app(clock, Recorder(clock))
    app = tc.app
    seen: list[dict[str, Any]] = []
    fields = (
        "store",
        "token",
        "token_type",
        "claims",
        "user_state",
        "state_id",
        "refresh_token",
        "unavailable",
        "signed_out_refresh_token",
        "is_authenticated",
        "csrf_token",
        "header",
    )

    @app.get("/fields")  # type: ignore[union-attr]
    async def state_fields(request: Request) -> dict[str, bool]:
        state = get_auth_state(request)
        seen.append({name: getattr(state, name) for name in fields})
        seen[-1]["pending"] = state.pending_cookies()
        seen[-1]["user"] = await state.load_user()
        return {"ok": True}

    login(tc, clock, user_state={"name": "A", "roles": ["user"]})
    assert reader._cache.readings == {}
    tc.get("/fields")  # the full read, remembered now
    assert len(reader._cache.readings) == 1
    tc.get("/fields")  # from the remembered outcome
    full, hot = seen
    assert full["is_authenticated"]
    assert full["refresh_token"] == "refresh-0"
    assert hot == full


def test_fifo_keeps_the_newest_entries_up_to_its_size() -> None:
    cache: Fifo[str, int] = Fifo(2)
    for i, key in enumerate("abc"):
        cache.put(key, i)
    assert list(cache.items()) == [("b", 1), ("c", 2)]  # "a", the oldest, went first
    cache.put("b", 10)  # replacing an entry evicts nothing
    assert dict(cache) == {"b": 10, "c": 2}
    nothing: Fifo[str, int] = Fifo(0)
    nothing.put("a", 1)
    assert nothing == {}


def test_fifo_skips_the_places_of_deleted_keys() -> None:
    cache: Fifo[str, int] = Fifo(3)
    for i, key in enumerate("abc"):
        cache.put(key, i)
    del cache["a"]
    cache.pop("b")
    assert cache.oldest() == 2  # "c": the places "a" and "b" left are skipped
    cache.put("d", 3)
    cache.put("e", 4)
    assert cache.pop_oldest() == ("c", 2)
    assert list(cache) == ["d", "e"]
    cache.clear()
    assert cache.oldest() is None
    with pytest.raises(KeyError):
        cache.pop_oldest()


def test_fifo_a_key_added_again_goes_no_later_than_its_turn_and_keeps_the_bound() -> None:
    cache: Fifo[str, int] = Fifo(2)
    cache.put("a", 1)
    cache.put("b", 2)
    del cache["a"]
    cache.put("a", 3)  # "a" again: it may leave at its earlier place, before "b"
    cache.put("c", 4)
    assert len(cache) == 2
    assert "c" in cache


def test_fifo_places_left_behind_do_not_accumulate() -> None:
    """A key deleted and added again, over and over below the size, never evicts; the
    places it leaves behind are dropped once they outnumber the entries."""
    cache: Fifo[str, int] = Fifo(1000)
    cache.put("kept", 0)
    for i in range(10_000):
        cache.put("again", i)
        del cache["again"]
    assert len(cache._order) <= 2 * len(cache) + 17
    assert cache.oldest() == 0
