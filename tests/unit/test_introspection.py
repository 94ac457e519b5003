"""fastapi_authkit.oidc.introspection alone: the answer cache (bounded, keyed by a hash,
entries expiring at the earlier of the token's exp and cache_ttl) and how failures are told
to the operator. A loopback HTTP server stands in for the introspection endpoint
(tests/integration/identity_provider/test_oidc_introspection.py runs a real Authlib server)."""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import Any

import anyio
import pytest

from fastapi_authkit.errors import TokenExpiredError, VerificationUnavailableError
from fastapi_authkit.oidc import TokenIntrospection
from fastapi_authkit.oidc.grant import TokenEndpoint
from fastapi_authkit.oidc.http import ProviderHTTP

from tests.support.oidc_flow import StaticJSON


def _introspection(url: str, **options: Any) -> TokenIntrospection:
    endpoint = TokenEndpoint(
        url,
        client_id="kit",
        client_secret="s3cret",
        auth_method="client_secret_basic",
        http=ProviderHTTP(None, 5.0),
    )
    return TokenIntrospection(url, client=endpoint, **options)


def test_cache_is_bounded_and_entries_expire_at_min_of_exp_and_ttl() -> None:
    now = time.time()
    with StaticJSON({"active": True, "sub": "a", "exp": now + 100}).running() as answer:
        cache = _introspection(answer.url, cache_ttl=30, max_entries=3)

        async def ask_all() -> None:
            for n in range(10):
                await cache.introspect(f"token-{n}", trusted=False)
            await cache.introspect("token-9", trusted=False)  # remembered: not asked again

        anyio.run(ask_all)
        assert len(cache) == 3
        assert len(answer.requests) == 10
        assert cache.lookup("token-0", now) is None  # the oldest went first
        found = cache.lookup("token-9", now)
        assert found is not None
        assert found[1] == now + 30
        assert cache.lookup("token-9", now + 30) is None  # expired, dropped
        answer.body = {"active": True, "sub": "a", "exp": now + 10}
        anyio.run(partial(cache.introspect, "short", trusted=False))
        found = cache.lookup("short", now)
        assert found is not None
        assert found[1] == now + 10
        # The cache holds hashes, never a token.
        assert not any(b"token" in key for key in cache._entries)


def test_inactive_answer_is_remembered_and_refused() -> None:
    with StaticJSON({"active": False}).running() as answer:
        cache = _introspection(answer.url)
        anyio.run(partial(cache.introspect, "gone", trusted=False))
        anyio.run(partial(cache.introspect, "gone", trusted=False))
        assert len(answer.requests) == 1
        with pytest.raises(TokenExpiredError):
            cache.lookup("gone", time.time())


def _introspect_each(cache: TokenIntrospection, tokens: list[str]) -> None:
    async def ask() -> None:
        for token in tokens:
            await cache.introspect(token, trusted=False)

    anyio.run(ask)


def _log(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records]


_REFUSED = {"error": "invalid_client", "error_description": "bad secret"}
_REFUSED_LINE = (
    logging.ERROR,
    "token introspection impossible, the provider refuses this app's client "
    "(HTTP 401 'invalid_client'): check client_id, client_secret and auth_method; "
    "protected routes answer 503 until the configuration is fixed",
)
_OUTAGE_LINE = (
    logging.WARNING,
    "token introspection answered HTTP 500 'server_error' (503 meanwhile)",
)


@pytest.mark.parametrize(
    ("failure", "first", "end", "again", "again_line"),
    [
        pytest.param(
            (401, _REFUSED),
            _REFUSED_LINE,
            "the introspection endpoint accepts this app's client again after 5 refused "
            "introspection(s)",
            (401, _REFUSED),
            _REFUSED_LINE,
            id="client-refused",
        ),
        pytest.param(
            (500, {"error": "server_error"}),
            _OUTAGE_LINE,
            "the introspection endpoint answers again after 5 failed introspection(s)",
            (502, {}),
            (logging.WARNING, "token introspection answered HTTP 502 (503 meanwhile)"),
            id="outage",
        ),
    ],
)
def test_a_run_of_failures_is_one_line_naming_it_and_a_line_at_its_end(
    caplog: pytest.LogCaptureFixture,
    failure: tuple[int, dict[str, str]],
    first: tuple[int, str],
    end: str,
    again: tuple[int, dict[str, str]],
    again_line: tuple[int, str],
) -> None:
    """While the provider refuses this app's client (an ERROR naming the fix) or fails (a
    WARNING), every request with a token not seen yet asks it again and answers 503; the run
    is one line, not one per token, and its end is said (a WARNING); a new run starts over."""
    status, body = failure
    with StaticJSON(body, status=status).running() as answer:
        cache = _introspection(answer.url)
        with caplog.at_level(logging.INFO, logger="fastapi_authkit"):
            _introspect_each(cache, [f"token-{n}" for n in range(5)])
            assert len(answer.requests) == 5
            assert _log(caplog) == [first]
            with pytest.raises(VerificationUnavailableError):
                cache.lookup("token-4", time.time())  # neither accepted nor refused
            caplog.clear()
            answer.status, answer.body = 200, {"active": False}
            _introspect_each(cache, ["back"])
            answer.status, answer.body = again
            _introspect_each(cache, ["failing-again"])
    assert _log(caplog) == [(logging.WARNING, end), again_line]
    assert all(r.exc_info is None for r in caplog.records)


@pytest.mark.parametrize(
    ("status", "body", "said", "check"),
    [
        (403, {}, "HTTP 403", "client_id, client_secret and auth_method"),
        (
            400,
            {"error": "unauthorized_client"},
            "HTTP 400 'unauthorized_client'",
            "client_id and the grant types",
        ),
    ],
)
def test_other_client_refusals_are_errors_too(
    caplog: pytest.LogCaptureFixture, status: int, body: dict[str, str], said: str, check: str
) -> None:
    with StaticJSON(body, status=status).running() as answer:
        cache = _introspection(answer.url)
        with caplog.at_level(logging.INFO, logger="fastapi_authkit"):
            _introspect_each(cache, ["one", "two"])
    [(level, message)] = _log(caplog)
    assert level == logging.ERROR
    assert f"({said}): check {check}" in message


def test_provider_errors_stay_warnings(caplog: pytest.LogCaptureFixture) -> None:
    with StaticJSON({"error": "server_error"}, status=500).running() as answer:
        cache = _introspection(answer.url)
        with caplog.at_level(logging.INFO, logger="fastapi_authkit"):
            _introspect_each(cache, ["one"])
    assert _log(caplog) == [_OUTAGE_LINE]


def test_an_unreachable_endpoint_is_one_warning_with_its_traceback_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with StaticJSON({}).running() as answer:
        url = answer.url  # a port that no longer answers once the server has stopped
    cache = _introspection(url)
    with caplog.at_level(logging.DEBUG, logger="fastapi_authkit"):
        _introspect_each(cache, ["one", "two", "three"])
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage().startswith("token introspection failed (503 meanwhile): ")
    assert warnings[0].exc_info is None
    assert any(r.levelno == logging.DEBUG and r.exc_info for r in caplog.records)
