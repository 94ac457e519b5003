"""Issue 24.2: opaque access tokens, verified by RFC 7662 introspection, against a real
Authlib authorization server on loopback (tests/support/oauth2_server.py): sign-in, refreshes past
the access token's expiry, sign-out; an inactive token is anonymous, a provider that is down
answers 503 without clearing anything, and so does one that refuses the app's client (told
to the operator at ERROR); the refresh cookie lives as long as the provider's
``refresh_token_expires_in`` says, never beyond ``state_max_age``. The cache alone:
tests/unit/test_introspection.py."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from fastapi_authkit.oidc import OIDCClient

from tests.support.oauth2_server import CLIENT_SECRET, OAuth2Server
from tests.support.oidc_flow import opaque_sign_in

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


def _kit_log(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "fastapi_authkit"]


def test_client_refused_at_introspection_is_one_error_and_503(
    server: OAuth2Server, caplog: pytest.LogCaptureFixture
) -> None:
    tc, _oidc = _sign_in(server, introspection_cache_ttl=5)
    assert tc.get("/me").status_code == 200
    cookies = dict(tc.cookies)
    server.client.client_secret = "rotated-at-the-provider"  # the app's secret is now wrong
    server.offset += 10  # the cached answer expired; the token has not
    with caplog.at_level(logging.INFO, logger="fastapi_authkit"):
        for _ in range(3):
            me = tc.get("/me")
            assert me.status_code == 503, me.text
            assert "set-cookie" not in me.headers
            server.offset += 2  # past retry_interval: asked again, refused again
        assert _kit_log(caplog) == [
            (
                logging.ERROR,
                "token introspection impossible, the provider refuses this app's client "
                "(HTTP 401 'invalid_client'): check client_id, client_secret and auth_method; "
                "protected routes answer 503 until the configuration is fixed",
            )
        ]
        caplog.clear()
        server.client.client_secret = CLIENT_SECRET  # fixed
        assert tc.get("/me").status_code == 200
    assert _kit_log(caplog) == [
        (
            logging.WARNING,
            "the introspection endpoint accepts this app's client again after 3 refused "
            "introspection(s)",
        )
    ]
    assert dict(tc.cookies) == cookies


def _refresh_max_age(set_cookies: list[str]) -> int:
    (refresh,) = [c for c in set_cookies if c.startswith("_auth_refresh=")]
    found = re.search(r"Max-Age=(\d+)", refresh)
    assert found is not None, refresh
    return int(found.group(1))


@pytest.mark.parametrize(
    ("stated", "max_age"),
    [
        (3 * 3600, 3 * 3600),  # shorter than the kit's 14-day default: the provider's
        (15897600, 30 * 86400),  # GitHub's six months: no longer than state_max_age
    ],
)
def test_the_refresh_cookie_lives_as_long_as_the_provider_says_the_refresh_token_does(
    server: OAuth2Server, stated: int, max_age: int
) -> None:
    server.refresh_token_expires_in = stated  # GitHub's refresh_token_expires_in
    tc, _oidc = _sign_in(server)
    (signed_in,) = [c for c in tc.cookies.jar if c.name == "_auth_refresh"]
    assert signed_in.expires is not None
    assert abs(signed_in.expires - time.time() - max_age) < 60  # the jar's real clock
    for _ in range(3):
        server.offset += ACCESS_TTL + 20  # past the access token's expiry
        me = tc.get("/me")
        assert me.status_code == 200, me.text
        assert _refresh_max_age(me.headers.get_list("set-cookie")) == max_age
