"""Issue 24.2: opaque access tokens, verified by RFC 7662 introspection, against a real
Authlib authorization server on loopback (tests/support/oauth2_server.py): sign-in, refreshes past
the access token's expiry, sign-out; an inactive token is anonymous, the cache is bounded,
and a provider that is down answers 503 without clearing anything."""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import anyio
import pytest
from starlette.testclient import TestClient

from fastapi_authkit.errors import TokenExpiredError
from fastapi_authkit.oidc import OIDCClient, TokenIntrospection
from fastapi_authkit.oidc.grant import TokenEndpoint
from fastapi_authkit.oidc.http import ProviderHTTP

from tests.support.oauth2_server import OAuth2Server
from tests.support.oidc_flow import StaticJSON, opaque_sign_in

pytestmark = pytest.mark.realserver

ACCESS_TTL = 60
REDIRECT = "https://testserver/auth/callback"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OAuth2Server]:
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    with OAuth2Server([REDIRECT], access_ttl=ACCESS_TTL).running() as running:
        yield running


def _sign_in(server: OAuth2Server, **options: Any) -> tuple[TestClient, OIDCClient]:
    return opaque_sign_in(server, REDIRECT, **options)


def test_sign_in_refreshes_and_sign_out_with_opaque_tokens(server: OAuth2Server) -> None:
    tc, _oidc = _sign_in(server)
    assert "." not in tc.cookies["_auth"]  # opaque: not a JWT
    me = tc.get("/me")
    assert me.status_code == 200, me.text
    assert me.json()["sub"] == "alice"
    asked = server.introspections
    for _ in range(5):  # cache hits: no network
        assert tc.get("/me").status_code == 200
    assert server.introspections == asked

    refresh_tokens = {tc.cookies["_auth_refresh"]}
    for _ in range(3):
        server.offset += ACCESS_TTL + 20  # past the access token's expiry
        me = tc.get("/me")
        assert me.status_code == 200, me.text
        assert me.json()["sub"] == "alice"
        refresh_tokens.add(tc.cookies["_auth_refresh"])
    assert len(refresh_tokens) == 4  # rotated at every refresh

    last = server.by_refresh(tc.cookies["_auth_refresh"])
    assert last is not None
    assert not last.revoked
    out = tc.post("/logout", headers={"x-csrf-token": tc.cookies["_auth_csrf"]})
    assert out.status_code == 200
    assert tc.get("/me").status_code == 401
    assert last.revoked  # RFC 7009 at sign-out


def test_inactive_token_is_anonymous(server: OAuth2Server) -> None:
    tc, _oidc = _sign_in(server, introspection_cache_ttl=5)
    assert tc.get("/me").status_code == 200
    token = server.by_access(tc.cookies["_auth"])
    assert token is not None
    token.revoked = True  # revoked at the provider (an administrator, another app)
    tc.cookies.delete("_auth_refresh")  # no refresh to fall back on
    server.offset += 10  # past the cache's ttl, not the token's expiry
    assert tc.get("/me").status_code == 401
    assert tc.get("/public").json() == {"user": None}


def test_provider_down_answers_503_and_clears_nothing(server: OAuth2Server) -> None:
    tc, _oidc = _sign_in(server, introspection_cache_ttl=5)
    assert tc.get("/me").status_code == 200
    cookies = dict(tc.cookies)
    server.down = True
    server.offset += 10  # the cached answer expired; the token has not
    me = tc.get("/me")
    assert me.status_code == 503, me.text
    assert "retry-after" in me.headers
    assert "set-cookie" not in me.headers
    assert tc.get("/public").status_code == 200
    server.down = False
    server.offset += 2  # past retry_interval
    assert tc.get("/me").status_code == 200
    assert dict(tc.cookies) == cookies


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
