"""The request reader on its own: headers, method, path, scheme and a time in, a decision
out. No app, no ASGI, no event loop: the reader does no I/O, so none is needed to test it.

(The same behaviour through real apps is in test_flows.py, test_token_cache.py and the
security catalogue; here each decision is pinned down where it is made.)
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest
from starlette.requests import HTTPConnection

from fastapi_authkit import AuthState, create_issuer, create_refresh, create_store, readercache
from fastapi_authkit.config import AuthStore
from fastapi_authkit.cookies import parse_cookie_header
from fastapi_authkit.decision import (
    CHECK,
    CLEAR,
    DONE,
    REFRESH,
    CachedReading,
    Reading,
    Refused,
)
from fastapi_authkit.reader import RequestReader
from fastapi_authkit.state import SCOPE_KEY, sign_in
from fastapi_authkit.stores import MemoryStore, RedisStore

from tests.support.apps import state_cookie
from tests.support.clock import Clock
from tests.support.tokens import SECRET_KEY, TOKEN_KEY, make_token

HOST = (b"host", b"app.example")


def never_called(param: Any) -> Any:
    raise AssertionError("the reader must never call the refresh callback")


def store_for(clock: Clock, **options: Any) -> AuthStore:
    # leeway=0: the time windows below are exact (external mode's default leeway is 10 s).
    settings: dict[str, Any] = {
        "secret_key": SECRET_KEY,
        "token_key": TOKEN_KEY,
        "clock": clock,
        "leeway": 0,
    }
    settings.update(options)
    return create_store(**settings)


def with_refresh(clock: Clock, **options: Any) -> AuthStore:
    refresh = create_refresh(interval=60, refresh_api_callback=never_called)
    return store_for(clock, refresh=refresh, **options)


def signed_in(
    store: AuthStore, token: str, *, refresh: str | None = None, user_state: Any = None
) -> dict[str, str]:
    """The cookies a browser holds after sign_in (the public sign_in on a bare connection)."""
    state = AuthState(store)
    sign_in(
        HTTPConnection({"type": "http", SCOPE_KEY: state}),
        auth={"token": token, "type": "Bearer"},
        refresh=refresh,
        user_state=user_state,
    )
    jar = {}
    for raw in state.pending_cookies():
        name, _, rest = raw.decode().partition("=")
        if "Max-Age=0;" not in rest:  # a deletion (the refresh cookie, without refresh=)
            jar[name] = rest.split(";", 1)[0]
    return jar


def headers(jar: dict[str, str], *extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    cookie = "; ".join(f"{k}={v}" for k, v in jar.items()).encode()
    return [HOST, (b"cookie", cookie), *extra]


def read(
    reader: RequestReader,
    header_pairs: list[tuple[bytes, bytes]],
    now: float,
    *,
    method: str | None = "GET",
    path: str = "/me",
    scheme: str = "https",
) -> Any:
    return reader.read(header_pairs, method, path, scheme, now)


# --- anonymous, signed in, remembered -----------------------------------------------------------


def test_no_cookies_is_anonymous_with_nothing_to_do(clock: Clock) -> None:
    reader = RequestReader.for_store(with_refresh(clock))
    for pairs in ([HOST], [HOST, (b"cookie", b"theme=dark; _other=1")]):
        decision = read(reader, pairs, clock())
        assert decision == Reading()
        assert decision.then == DONE


def test_a_signed_in_browser_reads_as_signed_in(clock: Clock) -> None:
    store = store_for(clock)
    jar = signed_in(store, make_token(clock), user_state={"name": "Alice"})
    decision = read(RequestReader.for_store(store), headers(jar), clock())
    assert isinstance(decision, Reading)
    assert decision.then == DONE
    assert decision.claims is not None
    assert decision.claims["sub"] == "alice"
    assert decision.token == jar["_auth"]
    assert decision.token_type == "Bearer"
    assert decision.user_state == {"name": "Alice"}
    assert decision.state_id is not None


def test_a_repeated_header_is_remembered_until_the_token_expires(clock: Clock) -> None:
    store = store_for(clock)
    reader = RequestReader.for_store(store)
    jar = signed_in(store, make_token(clock, ttl=30), user_state={"name": "Alice"})
    first = read(reader, headers(jar), clock())
    second = read(reader, headers(jar), clock())
    assert isinstance(first, Reading)
    assert isinstance(second, CachedReading)
    # The record keeps neither token (most of a session's bytes): a request it serves
    # carries them, and AuthState reads them from its cookies when a route asks.
    kept = [getattr(second, field.name) for field in fields(second)]
    assert first.token not in kept
    assert not any(first.token in repr(v) for v in kept)
    assert second.state_id == first.state_id
    assert second.claims.copy() == first.claims
    assert second.user_state.copy() == first.user_state
    assert second.claims.copy() is not second.claims.copy()  # a private copy per request
    assert isinstance(read(reader, headers(jar), clock() + 29), CachedReading)
    later = read(reader, headers(jar), clock() + 30)  # the token's exp bounds it
    assert isinstance(later, Reading)
    assert later.claims is None


def test_a_clock_gone_back_reads_in_full_until_it_catches_up(clock: Clock) -> None:
    """A record serves only after the latest time a record was made: before it the clock
    went back, and the full read answers (never a record whose window had not opened)."""
    store = store_for(clock)
    reader = RequestReader.for_store(store)
    jar = signed_in(store, make_token(clock, ttl=60))  # iat: clock()
    read(reader, headers(jar), clock() + 10)
    assert isinstance(read(reader, headers(jar), clock() + 10), CachedReading)
    back = read(reader, headers(jar), clock() + 5)  # gone back, still after iat
    assert isinstance(back, Reading)
    assert back.claims is not None
    before_iat = read(reader, headers(jar), clock() - 5)  # before the token's window
    assert isinstance(before_iat, Reading)
    assert before_iat.claims is None
    assert isinstance(read(reader, headers(jar), clock() + 11), CachedReading)


def test_remembered_outcome_stops_where_a_refresh_falls_due(clock: Clock) -> None:
    store = with_refresh(clock)
    reader = RequestReader.for_store(store)
    jar = signed_in(store, make_token(clock, ttl=300), refresh="r-1")
    read(reader, headers(jar), clock())
    assert isinstance(read(reader, headers(jar), clock() + 239), CachedReading)
    due = read(reader, headers(jar), clock() + 240)  # 60 s before exp
    assert isinstance(due, Reading)
    assert due.then == REFRESH


def counting_parses(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The Cookie headers the reader parses from now on, in order."""
    parsed: list[bytes] = []

    def counted(header: bytes, wanted: frozenset[bytes]) -> Any:
        parsed.append(header)
        return parse_cookie_header(header, wanted)

    monkeypatch.setattr(readercache, "parse_cookie_header", counted)
    return parsed


def test_each_remembered_session_keeps_its_header_past_the_header_cache(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More active sessions than the parsed-header cache holds (4,096; 2 here) are not
    parsed again on every request: each remembered session keeps its own last header."""
    store = store_for(clock)
    reader = RequestReader.for_store(store)
    reader._cache._parsed.size = 2
    jars = [signed_in(store, make_token(clock, sub=f"user-{i}")) for i in range(5)]
    parses = counting_parses(monkeypatch)
    for jar in jars:
        assert isinstance(read(reader, headers(jar), clock()), Reading)  # the first: full
    assert len(parses) == 5
    for _ in range(3):
        for jar in jars:  # long evicted from the 2-header cache
            assert isinstance(read(reader, headers(jar), clock()), CachedReading)
    assert len(parses) == 5
    assert len(reader._cache._by_header) == len(reader._cache.readings) == 5


def test_a_session_keeps_one_header_whatever_else_its_cookie_header_holds(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A junk cookie changing on every request makes each header new, but the session
    keeps only its latest one: memory per session, not per header value."""
    store = store_for(clock)
    reader = RequestReader.for_store(store)
    jar = signed_in(store, make_token(clock))
    read(reader, headers(jar), clock())
    parses = counting_parses(monkeypatch)
    for i in range(200):
        decision = read(reader, headers({**jar, "junk": str(i)}), clock())
        assert isinstance(decision, CachedReading)
    assert len(parses) == 200  # each header is new, so parsed once
    (kept,) = reader._cache._by_header
    last = dict(headers({**jar, "junk": "199"}))[b"cookie"]
    assert kept == readercache.header_digest(last)  # the latest header, by its digest
    assert len(reader._cache.readings) == 1


def test_a_remembered_session_keeps_its_headers_digest_not_the_header(clock: Clock) -> None:
    """Past the parsed-header layer, a session is known by its header's 15-byte digest:
    the header's bytes, the cookie names and the CSRF value are not kept per session."""
    store = store_for(clock)
    reader = RequestReader.for_store(store)
    reader._cache._parsed.size = 0
    jar = signed_in(store, make_token(clock), refresh="r-1")
    read(reader, headers(jar), clock())
    assert isinstance(read(reader, headers(jar), clock()), CachedReading)
    ((digest, record),) = reader._cache._by_header.items()
    assert digest == readercache.header_digest(dict(headers(jar))[b"cookie"])
    assert len(digest) == 15
    assert record.header == digest
    assert record.session == readercache.session_digest((jar["_auth"], jar["_auth_state"], "r-1"))
    assert len(record.session) == 15
    assert not hasattr(record, "cookies")


def test_the_default_bound_keeps_a_workers_caches_small() -> None:
    """20,000 remembered sessions by default (under 64 MiB per worker)."""
    store = create_store(secret_key=SECRET_KEY, token_key=TOKEN_KEY)
    assert store.verifier.cache_size == 20_000
    assert RequestReader.for_store(store)._cache.readings.size == 20_000


def test_without_a_token_cache_no_header_is_kept_per_session(clock: Clock) -> None:
    store = store_for(clock, verified_token_cache=0)
    reader = RequestReader.for_store(store)
    jar = signed_in(store, make_token(clock))
    for _ in range(3):
        read(reader, headers(jar), clock())
    assert reader._cache._by_header == {}


def test_a_remembered_session_is_one_record_not_an_entry_in_each_cache(clock: Clock) -> None:
    """The verifier and the state codec hand what they remembered of the session's token
    and state cookie to its record: the session is one entry, and no cache keeps the state
    cookie itself."""
    store = store_for(clock)
    reader = RequestReader.for_store(store)
    jar = signed_in(store, make_token(clock), refresh="r-1", user_state={"name": "Alice"})
    read(reader, headers(jar), clock())
    assert store.verifier.remembered(jar["_auth"]) is None
    assert store.state_codec.remembered(jar["_auth_state"]) is None
    ((session, record),) = reader._cache.readings.items()
    assert session == readercache.session_digest((jar["_auth"], jar["_auth_state"], "r-1"))
    assert record.claims.copy()["sub"] == "alice"
    assert record.user_state.copy() == {"name": "Alice"}
    assert isinstance(read(reader, headers(jar), clock()), CachedReading)


def test_a_user_state_repeating_the_claims_shares_their_strings(clock: Clock) -> None:
    """A record keeps one copy of a string the user state and the claims both hold under
    the same key (``sub`` here); what each request is handed is unchanged."""
    store = store_for(clock)
    reader = RequestReader.for_store(store)
    jar = signed_in(store, make_token(clock), user_state={"sub": "alice", "name": "Alice"})
    read(reader, headers(jar), clock())
    ((_, record),) = reader._cache.readings.items()
    user_state, claims = record.user_state.copy(), record.claims.copy()
    assert user_state == {"sub": "alice", "name": "Alice"}
    assert claims["sub"] == "alice"
    assert user_state["sub"] is claims["sub"]
    user_state["sub"] = "mallory"  # a request's copy, its own
    assert record.user_state.copy()["sub"] == record.claims.copy()["sub"] == "alice"


def test_an_unsafe_request_of_a_remembered_session_is_answered_from_its_record(
    clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A POST of a remembered session is neither verified nor decoded again (the record
    holds what the caches would), and still needs its CSRF token."""
    store = store_for(clock)
    reader = RequestReader.for_store(store)
    jar = signed_in(store, make_token(clock), user_state={"name": "Alice"})
    read(reader, headers(jar), clock())
    verified: list[str] = []
    original = type(store.verifier)._verify_uncached

    def counted(verifier: Any, token: str) -> Any:
        verified.append(token)
        return original(verifier, token)

    monkeypatch.setattr(type(store.verifier), "_verify_uncached", counted)
    assert read(reader, headers(jar), clock(), method="POST") == Refused(
        "CSRF token missing or invalid"
    )
    csrf = (b"x-csrf-token", jar["_auth_csrf"].encode())
    posted = read(reader, headers(jar, csrf), clock(), method="POST")
    assert isinstance(posted, Reading)
    assert posted.then == DONE
    assert posted.claims is not None
    assert posted.claims["sub"] == "alice"
    assert posted.user_state == {"name": "Alice"}
    assert posted.token == jar["_auth"]
    assert verified == []
    assert isinstance(read(reader, headers(jar), clock()), CachedReading)


def test_a_record_serves_only_its_own_cookies(clock: Clock) -> None:
    """Another state cookie issued with the same tokens, or another refresh cookie beside
    the same access token and state cookie, is not the remembered session."""
    store = store_for(clock)
    reader = RequestReader.for_store(store)
    token = make_token(clock)
    first = signed_in(store, token, refresh="r-1", user_state={"v": 1})
    second = signed_in(store, token, refresh="r-1", user_state={"v": 2})
    assert first["_auth_state"] != second["_auth_state"]
    read(reader, headers(first), clock())
    assert read(reader, headers(first), clock()).user_state.copy() == {"v": 1}
    other = read(reader, headers(second), clock())
    assert isinstance(other, Reading)
    assert other.user_state == {"v": 2}
    assert read(reader, headers(second), clock()).user_state.copy() == {"v": 2}
    foreign = read(reader, headers({**first, "_auth_refresh": "r-2"}), clock())
    assert isinstance(foreign, Reading)
    assert foreign.claims is None  # the state cookie is bound to r-1: anonymous
    assert len(reader._cache.readings) == 2


def test_another_token_type_cookie_retypes_the_record(clock: Clock) -> None:
    store = store_for(clock)
    reader = RequestReader.for_store(store)
    jar = signed_in(store, make_token(clock))
    read(reader, headers(jar), clock())
    retyped = {**jar, "_auth_type": "DPoP"}
    decision = read(reader, headers(retyped), clock())
    assert isinstance(decision, Reading)
    assert decision.token_type == "DPoP"
    again = read(reader, headers(retyped), clock())
    assert isinstance(again, CachedReading)
    assert again.token_type == "DPoP"
    assert len(reader._cache.readings) == len(reader._cache._by_header) == 1


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", None])
def test_unsafe_methods_and_websockets_are_never_remembered(clock: Clock, method: Any) -> None:
    store = store_for(clock, csrf_exempt_paths={"/me"})
    reader = RequestReader.for_store(store)
    jar = signed_in(store, make_token(clock))
    for _ in range(2):
        decision = read(reader, headers(jar), clock(), method=method)
        assert isinstance(decision, Reading)
        assert decision.claims is not None
    assert reader._cache.readings == {}


def test_the_time_is_an_input(clock: Clock) -> None:
    store = store_for(clock)
    jar = signed_in(store, make_token(clock, ttl=60))
    reader = RequestReader.for_store(store)
    assert read(reader, headers(jar), clock() + 59).claims is not None
    assert read(RequestReader.for_store(store), headers(jar), clock() + 61).claims is None
    assert (
        read(RequestReader.for_store(store), headers(jar), clock() - 10).claims is None
    )  # iat ahead


# --- what needs I/O: refresh, session check -------------------------------------------------------


def test_an_expired_token_with_a_refresh_cookie_needs_a_refresh(clock: Clock) -> None:
    store = with_refresh(clock)
    jar = signed_in(store, make_token(clock, ttl=30), refresh="r-1", user_state={"n": 1})
    decision = read(RequestReader.for_store(store), headers(jar), clock() + 31)
    assert isinstance(decision, Reading)
    assert decision.then == REFRESH
    assert decision.expired
    assert decision.claims is None
    assert decision.access == jar["_auth"]  # handed to the refresh callback
    assert decision.refresh_token == "r-1"
    assert decision.user_state == {"n": 1}


def test_a_token_within_the_interval_needs_a_refresh_and_keeps_its_identity(clock: Clock) -> None:
    store = with_refresh(clock)
    jar = signed_in(store, make_token(clock, ttl=300), refresh="r-1")
    decision = read(RequestReader.for_store(store), headers(jar), clock() + 250)
    assert decision.then == REFRESH
    assert not decision.expired
    assert decision.claims is not None  # the old identity stays usable if the refresh fails


def test_a_missing_access_token_with_a_refresh_cookie_needs_a_refresh(clock: Clock) -> None:
    store = with_refresh(clock)
    jar = signed_in(store, make_token(clock), refresh="r-1")
    del jar["_auth"]  # the browser dropped it at Max-Age
    decision = read(RequestReader.for_store(store), headers(jar), clock())
    assert decision.then == REFRESH
    assert decision.access is None
    assert decision.state_id is not None  # the state cookie is bound to the refresh token


def test_no_refresh_without_a_refresh_cookie_or_configuration(clock: Clock) -> None:
    token = make_token(clock, ttl=30)
    configured = with_refresh(clock)
    no_cookie = read(
        RequestReader.for_store(configured), headers(signed_in(configured, token)), clock() + 31
    )
    assert no_cookie.then == DONE
    assert no_cookie.expired
    assert no_cookie.claims is None
    plain = store_for(clock)
    jar = signed_in(plain, token, refresh="r-1")
    not_configured = read(RequestReader.for_store(plain), headers(jar), clock() + 31)
    assert not_configured.then == DONE
    assert not_configured.claims is None


def test_a_forged_token_is_anonymous_and_never_refreshed(clock: Clock) -> None:
    store = with_refresh(clock)
    forged = make_token(clock, ttl=-10, key="forged-key-" * 4)  # expired *and* forged
    jar = signed_in(store, make_token(clock), refresh="r-1")
    # With a state cookie bound to the forged token, so that the signature is what decides.
    jar["_auth"], jar["_auth_state"] = forged, state_cookie(store, "r-1", forged)
    decision = read(RequestReader.for_store(store), headers(jar), clock())
    assert decision.then == DONE
    assert decision.claims is None
    assert not decision.expired


ISSUER_KEY = "reader-signing-key-0123456789abcdef-01"


@pytest.mark.anyio
async def test_the_issuers_view_answers_the_session_check_without_io(clock: Clock) -> None:
    backend = MemoryStore()  # one process: its view is always current
    issuer = create_issuer(backend=backend, signing_key=ISSUER_KEY, clock=clock)
    store = create_store(secret_key=SECRET_KEY, token_issuer=issuer, clock=clock)
    reader = RequestReader.for_store(store)
    tokens = await issuer.issue("alice")
    jar = signed_in(store, tokens.access_token, refresh=tokens.refresh_token)
    live = read(reader, headers(jar), clock())
    assert live.then == DONE
    hit = read(reader, headers(jar), clock())
    assert isinstance(hit, CachedReading)  # remembered, with its family
    assert hit.family == tokens.family_id
    await issuer.revoke(tokens.refresh_token)
    assert read(reader, headers(jar), clock()) == Reading(then=CLEAR)  # not served again
    assert reader._cache.readings == {}  # and no longer remembered
    unknown = signed_in(store, issuer.mint_access("bob", "no-such-family", clock()))
    assert read(reader, headers(unknown), clock()).then == CLEAR


def test_the_session_check_is_asked_when_the_view_cannot_answer(clock: Clock) -> None:
    # A RedisStore that has learned nothing (and never connects: the reader does no I/O).
    backend = RedisStore.from_url("redis://127.0.0.1:9/0")
    issuer = create_issuer(backend=backend, signing_key=ISSUER_KEY, clock=clock)
    store = create_store(secret_key=SECRET_KEY, token_issuer=issuer, clock=clock)
    reader = RequestReader.for_store(store)
    jar = signed_in(store, issuer.mint_access("alice", "family-1", clock()), refresh="r-1")
    assert read(reader, headers(jar), clock()).then == CHECK
    assert read(reader, headers(jar), clock()).then == CHECK  # never remembered
    due = read(reader, headers(jar), clock() + 250)  # within the refresh interval as well
    assert due.then == CHECK | REFRESH
    expired = read(reader, headers(jar), clock() + 301)
    assert expired.then == REFRESH  # nothing to check: no valid token
    assert expired.expired_claims is not None  # whom the refresh is for
    assert expired.expired_claims["sid"] == "family-1"


# --- forgery: CSRF, Sec-Fetch-Site, Origin, WebSocket -----------------------------------------


def test_an_unsafe_request_needs_its_sessions_csrf_token(clock: Clock) -> None:
    store = store_for(clock)
    jar = signed_in(store, make_token(clock))
    reader = RequestReader.for_store(store)
    good = (b"x-csrf-token", jar["_auth_csrf"].encode())
    other = signed_in(store, make_token(clock))["_auth_csrf"]
    assert read(reader, headers(jar), clock(), method="POST") == Refused(
        "CSRF token missing or invalid"
    )
    wrong = (b"x-csrf-token", other.encode())
    assert isinstance(read(reader, headers(jar, wrong), clock(), method="POST"), Refused)
    twice = [good, good]
    assert isinstance(read(reader, headers(jar, *twice), clock(), method="POST"), Refused)
    accepted = read(reader, headers(jar, good), clock(), method="DELETE")
    assert isinstance(accepted, Reading)
    assert accepted.claims is not None


def test_csrf_exempt_paths_skip_the_token_but_not_the_origin(clock: Clock) -> None:
    store = store_for(clock, csrf_exempt_paths={"/login"})
    jar = signed_in(store, make_token(clock))
    reader = RequestReader.for_store(store)
    assert isinstance(read(reader, headers(jar), clock(), method="POST", path="/login"), Reading)
    foreign = (b"origin", b"https://evil.example")
    refused = read(reader, headers(jar, foreign), clock(), method="POST", path="/login")
    assert refused == Refused("foreign Origin https://evil.example")


@pytest.mark.parametrize(
    ("extra", "refused"),
    [
        ((b"sec-fetch-site", b"cross-site"), True),
        ((b"sec-fetch-site", b"same-origin"), False),
        ((b"origin", b"https://app.example"), False),  # the app's own: scheme + Host
        ((b"origin", b"http://app.example"), True),  # another scheme is another origin
        ((b"origin", b"https://partner.example"), False),  # in allowed_origins
        ((b"origin", b"null"), True),
    ],
)
def test_unsafe_requests_are_checked_by_origin(
    clock: Clock, extra: tuple[bytes, bytes], refused: bool
) -> None:
    store = store_for(clock, allowed_origins={"https://partner.example"})
    jar = signed_in(store, make_token(clock))
    csrf = (b"x-csrf-token", jar["_auth_csrf"].encode())
    decision = read(
        RequestReader.for_store(store), headers(jar, csrf, extra), clock(), method="PUT"
    )
    assert isinstance(decision, Refused) is refused


def test_a_cookie_carrying_websocket_handshake_is_checked_by_origin_only(clock: Clock) -> None:
    store = store_for(clock)
    jar = signed_in(store, make_token(clock))
    reader = RequestReader.for_store(store)
    # No CSRF header on a handshake: browsers cannot send one. Origin decides.
    ok = read(reader, headers(jar, (b"origin", b"https://app.example")), clock(), method=None)
    assert isinstance(ok, Reading)
    assert ok.claims is not None
    ws = read(reader, headers(jar, (b"origin", b"https://app.example")), clock(), method=None)
    assert isinstance(ws, Reading)  # wss/ws map to the app's https/http origin too
    foreign = headers(jar, (b"origin", b"https://evil.example"))
    assert read(reader, foreign, clock(), method=None, scheme="wss") == Refused(
        "foreign Origin https://evil.example"
    )


def test_anonymous_unsafe_requests_are_not_checked(clock: Clock) -> None:
    # No credentials, nothing to forge: the app's own CSRF story applies, not the kit's.
    store = store_for(clock)
    pairs = [HOST, (b"origin", b"https://evil.example"), (b"cookie", b"theme=dark")]
    assert read(RequestReader.for_store(store), pairs, clock(), method="POST") == Reading()


# --- the state cookie ---------------------------------------------------------------------------


def test_a_state_cookie_of_another_session_is_ignored(clock: Clock) -> None:
    store = with_refresh(clock)
    mine = signed_in(store, make_token(clock), refresh="r-mine", user_state={"role": "user"})
    theirs = signed_in(store, make_token(clock), refresh="r-old", user_state={"role": "admin"})
    jar = {**mine, "_auth_state": theirs["_auth_state"]}
    assert (
        read(RequestReader.for_store(store), headers(mine), clock()).claims is not None
    )  # the control
    # The token is fine, but without its session's state cookie it is no identity (the
    # user would be the claims instead of the user state): anonymous, nothing to do.
    assert read(RequestReader.for_store(store), headers(jar), clock()) == Reading(
        refresh_token="r-mine"
    )


def test_a_tampered_state_cookie_is_ignored(clock: Clock) -> None:
    store = store_for(clock)
    jar = signed_in(store, make_token(clock), user_state={"role": "user"})
    jar["_auth_state"] = jar["_auth_state"][:-2] + "xx"
    assert read(RequestReader.for_store(store), headers(jar), clock()) == Reading()


@pytest.mark.parametrize("method", ["GET", None])
def test_an_access_token_without_its_state_cookie_is_anonymous(
    clock: Clock, method: str | None
) -> None:
    # On HTTP and on a WebSocket handshake (method None) alike, and never remembered.
    store = store_for(clock)
    jar = signed_in(store, make_token(clock), user_state={"name": "Alice"})
    del jar["_auth_state"]
    reader = RequestReader.for_store(store)
    for _ in range(2):
        assert read(reader, headers(jar), clock(), method=method) == Reading()


# --- bearer mode ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "authenticated"),
    [
        ([b"Bearer {t}"], True),
        ([b"bearer   {t}"], True),
        ([b"Basic {t}"], False),
        ([b"Bearer {t}", b"Bearer {t}"], False),  # ambiguous
        ([b"Bearer "], False),
        ([], False),
    ],
)
def test_bearer_mode_reads_exactly_one_authorization_header(
    clock: Clock, values: list[bytes], authenticated: bool
) -> None:
    store = store_for(clock, auth_type="header")
    token = make_token(clock).encode()
    pairs = [HOST, *((b"authorization", v.replace(b"{t}", token)) for v in values)]
    decision = read(
        RequestReader.for_store(store), pairs, clock(), method="POST"
    )  # no CSRF in this mode
    assert isinstance(decision, Reading)
    assert decision.then == DONE
    assert (decision.claims is not None) is authenticated
    if authenticated:
        assert decision.token == token.decode()
        assert decision.token_type == "Bearer"


# --- several kinds of credential (auth_type combinations) -------------------------------------


def test_a_valid_bearer_header_wins_over_a_remembered_cookie_session(clock: Clock) -> None:
    """Even when the cookie session's outcome is remembered (the hot path), the header is
    read first, and it needs no I/O and no CSRF token."""
    store = with_refresh(clock, auth_type=("cookie", "header"))
    reader = RequestReader.for_store(store)
    jar = signed_in(store, make_token(clock), refresh="r0")
    assert read(reader, headers(jar), clock()).claims["sub"] == "alice"
    assert isinstance(read(reader, headers(jar), clock()), CachedReading)
    token = make_token(clock, sub="mobile")
    auth = (b"authorization", f"Bearer {token}".encode())
    for method in ("GET", "POST"):
        decision = read(reader, headers(jar, auth), clock(), method=method)
        assert isinstance(decision, Reading)
        assert (decision.claims["sub"], decision.credential) == ("mobile", "header")
        assert (decision.then, decision.refresh_token, decision.state_id) == (DONE, None, None)


def test_an_invalid_bearer_header_leaves_the_cookie_session_and_its_csrf_check(
    clock: Clock,
) -> None:
    store = store_for(clock, auth_type=("cookie", "header"))
    reader = RequestReader.for_store(store)
    jar = signed_in(store, make_token(clock))
    junk = (b"authorization", b"Bearer junk")
    decision = read(reader, headers(jar, junk), clock())
    assert (decision.claims["sub"], decision.credential) == ("alice", "cookie")
    assert isinstance(read(reader, headers(jar, junk), clock(), method="POST"), Refused)


def test_a_gateway_cookie_reads_without_a_state_cookie(clock: Clock) -> None:
    cookie = (b"cookie", f"_auth={make_token(clock, sub='gw')}".encode())
    gateway = RequestReader.for_store(store_for(clock, auth_type="gateway"))
    decision = read(gateway, [HOST, cookie], clock())
    assert (decision.claims["sub"], decision.credential, decision.then) == ("gw", "gateway", DONE)
    assert isinstance(read(gateway, [HOST, cookie], clock(), method="POST"), Refused)
    same_origin = (b"origin", b"https://app.example")
    assert read(gateway, [HOST, cookie, same_origin], clock(), method="POST").claims is not None
    # The default mode: the same cookie is anonymous.
    assert read(RequestReader.for_store(store_for(clock)), [HOST, cookie], clock()).claims is None
