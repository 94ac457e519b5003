"""Memory per session, not per header value (issue 17, item 1).

One signed-in user must not be able to make a worker hold memory by varying what it sends:
a junk cookie that changes on every request beside a valid session (the remembered outcomes
were keyed by the whole Cookie header), or valid state cookies with a new refresh cookie on
every request (the state binding was remembered per raw refresh token), signed out or
refused or not. Memory is measured with tracemalloc over the real reader and the real app,
after a warm-up that fills what is bounded by count (the parsed-header cache), so that
what is left is what grows with the attacker's requests; before the fix each of these
attacks kept kilobytes per request.

The same attacks through a real process, as RSS growth per request, are a benchmark
(``benchmarks/memory.py``, in ``scripts/bench``).
"""

from __future__ import annotations

import gc
import secrets
import tracemalloc
from collections.abc import Callable

import anyio
import pytest
from fastapi import FastAPI

from fastapi_authkit.decision import CachedReading, Reading
from fastapi_authkit.reader import RequestReader

from .helpers import asgi_http, cookie_header, safe_client, security_app
from tests.support.apps import Recorder, build_store, login
from tests.support.clock import Clock

JUNK = 2000  # bytes of junk cookie per request: what made each request cost kilobytes
# Retained by the attack's requests after the warm-up: a few hundred bytes of noise are
# normal (interned strings, allocator bookkeeping); one header kept per request is megabytes.
LIMIT = 256 * 1024


def retained(step: Callable[[int], None], *, warm_up: int, attack: int) -> int:
    """Bytes still allocated after ``attack`` more calls of ``step``, following ``warm_up``
    (traced from the start, so that what the attack's requests push out of a bounded cache
    counts as freed)."""
    tracemalloc.start()
    try:
        for i in range(warm_up):
            step(i)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(warm_up, warm_up + attack):
            step(i)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.fixture
def jar(clock: Clock, app: FastAPI) -> dict[str, str]:
    tc = safe_client(app)
    login(tc, clock, ttl=3600, user_state={"name": "Alice"})
    return dict(tc.cookies.items())


def test_a_junk_cookie_changing_per_request_keeps_one_remembered_outcome(
    clock: Clock, recorder: Recorder, jar: dict[str, str]
) -> None:
    reader = RequestReader.for_store(build_store(clock, recorder))
    session = cookie_header(jar).encode()

    def read(i: int) -> object:
        junk = b"; junk=%d%s" % (i, b"x" * JUNK)
        return reader.read([(b"cookie", session + junk)], "GET", "/me", "https", clock())

    def step(i: int) -> None:
        decision = read(i)
        assert isinstance(decision, Reading | CachedReading)
        assert decision.claims is not None  # signed in, every time

    # Headers under 4 KiB are parsed once each into a cache of 4,096: warm it up first.
    assert retained(step, warm_up=5000, attack=5000) < LIMIT
    assert len(reader._cache.readings) == 1  # one session, one remembered outcome
    assert isinstance(read(-1), CachedReading)  # which serves a header never seen before


def test_a_changing_token_type_cookie_keeps_one_remembered_outcome(
    clock: Clock, recorder: Recorder, jar: dict[str, str]
) -> None:
    # The token-type cookie is not signed: it must not make a session's outcomes many.
    reader = RequestReader.for_store(build_store(clock, recorder))

    def step(i: int) -> None:
        cookies = {**jar, "_auth_type": f"T{i}{'x' * JUNK}"}
        headers = [(b"cookie", cookie_header(cookies).encode())]
        decision = reader.read(headers, "GET", "/me", "https", clock())
        assert decision.token_type == cookies["_auth_type"]

    assert retained(step, warm_up=5000, attack=5000) < LIMIT
    assert len(reader._cache.readings) == 1


@pytest.mark.parametrize("signed_out", [False, True], ids=["signed-in", "signed-out"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_new_refresh_cookies_beside_a_valid_state_cookie_keep_nothing(
    clock: Clock,
    app: FastAPI,
    recorder: Recorder,
    jar: dict[str, str],
    signed_out: bool,
    method: str,
) -> None:
    # A valid state cookie (still signed after its session signed out) with a new refresh
    # cookie of 2 KB on every request, GETs and (refused) POSTs, through the real app. A
    # padding cookie takes the header past 4 KiB, which is never kept by the parsed-header
    # cache, so a short warm-up does.
    if signed_out:
        tc = safe_client(app)
        tc.cookies.update(jar)
        assert tc.post("/logout", headers={"x-csrf-token": jar["_auth_csrf"]}).status_code == 200
    state = jar["_auth_state"]
    calls_before = len(recorder.calls)
    batch = 250

    async def attack(start: int) -> None:
        for i in range(start, start + batch):
            refresh = f"{i}-{secrets.token_urlsafe(JUNK * 3 // 4)}"
            cookie = f"_auth_state={state}; _auth_refresh={refresh}; pad={'p' * 2500}"
            reply = await asgi_http(app, method, "/whoami", [(b"cookie", cookie.encode())])
            assert reply.status == (200 if method == "GET" else 403)

    def step(i: int) -> None:
        if i % batch == 0:  # one event loop per batch
            anyio.run(attack, i)

    assert retained(step, warm_up=batch, attack=4 * batch) < LIMIT
    assert len(recorder.calls) == calls_before  # none of them was a session's refresh


def test_remembered_outcomes_are_dropped_at_their_validity_end(
    clock: Clock, recorder: Recorder
) -> None:
    # Sessions that went away must not stay until a hundred thousand others push them out:
    # each new entry drops the expired ones at the front.
    store = build_store(clock, recorder)
    reader = RequestReader.for_store(store)
    tc = safe_client(security_app(store))

    def read(i: int) -> object:
        tc.cookies.clear()
        login(tc, clock, ttl=100, refresh=f"refresh-{i}")
        cookie = cookie_header(dict(tc.cookies.items()))
        return reader.read([(b"cookie", cookie.encode())], "GET", "/me", "https", clock())

    for i in range(100):
        assert isinstance(read(i), Reading)
    assert len(reader._cache.readings) == 100
    clock.advance(100)  # every one of them past its window (a refresh is due 60 s before exp)
    for i in range(100, 150):
        read(i)
    assert len(reader._cache.readings) == 50  # only the live sessions are left
