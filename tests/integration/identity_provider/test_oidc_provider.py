"""Issue 12 and 16 against panva's certified oidc-provider on loopback (JWT access tokens for
a resource indicator, at+jwt, RS256, refresh-token rotation that revokes the grant on
reuse): the real code flow, refresh through the real token endpoint, key rotation, grant
revocation, the provider down or answering garbage, and access tokens that do not verify
here while their refresh token was rotated."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from fastapi_authkit.oidc import JWKSKeySet

from tests.support.http_client import CookieKeeper
from tests.support.oidc_flow import StaticJSON, authorize, browser, code_flow, oidc_app, oidc_client
from tests.support.oidc_server import (
    API,
    OIDCProviderServer,
    SharedTime,
    ec_jwk,
    header,
    public_jwks,
)

pytestmark = pytest.mark.realserver

ACCESS_TTL = 60


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[OIDCProviderServer]:
    server = OIDCProviderServer(
        tmp_path,
        redirect_uris=["https://app.test/auth/callback", "https://testserver/auth/callback"],
        access_ttl=ACCESS_TTL,
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def wall_clock(provider: OIDCProviderServer) -> SharedTime:
    """Our app's clock and the provider's, moved together."""
    return SharedTime(provider)


def test_code_flow_refresh_key_rotation_and_revocation(
    provider: OIDCProviderServer, wall_clock: SharedTime
) -> None:
    oidc = oidc_client(provider, wall_clock)
    app, _ = oidc_app(oidc, wall_clock)
    tc = browser(app)

    signed_in = code_flow(tc, provider)
    assert signed_in.status_code == 303
    assert signed_in.headers["location"] == "/me"
    me = tc.get("/me")
    assert me.status_code == 200
    assert me.json() == {"sub": "alice", "name": "Alice", "email": "alice@example.test"}
    first_refresh = tc.cookies["_auth_refresh"]
    assert header(tc.cookies["_auth"])["kid"] == "key-1"

    # Past expiry: the kit refreshes through the real token endpoint, before the route.
    wall_clock.advance(ACCESS_TTL + 20)
    me = tc.get("/me")
    assert me.status_code == 200, me.text
    assert tc.cookies["_auth_refresh"] != first_refresh  # rotated
    assert provider.presented_refresh_tokens() == [first_refresh]

    # The provider rotates its signing key (restart, new key first in its JWKS); our app is
    # not restarted and keeps the session: the new kid is fetched when it first appears.
    provider.rotate_key("key-2")
    wall_clock.advance(ACCESS_TTL + 20)
    me = tc.get("/me")
    assert me.status_code == 200, me.text
    assert header(tc.cookies["_auth"])["kid"] == "key-2"
    assert oidc.keys.key_ids == ("key-2", "key-1")

    # The grant is revoked at the provider: the next refresh ends the session.
    provider.revoke(tc.cookies["_auth_refresh"])
    wall_clock.advance(ACCESS_TTL + 20)
    me = tc.get("/me")
    assert me.status_code == 401
    cleared = CookieKeeper().update(me)
    assert set(cleared) == {"_auth", "_auth_type", "_auth_state", "_auth_refresh", "_auth_csrf"}
    assert all(attrs["max-age"] == "0" for attrs in cleared.values())
    # Every refresh token was presented exactly once.
    presented = provider.presented_refresh_tokens()
    assert len(presented) == len(set(presented)) == 3


def _signed_in(provider: OIDCProviderServer, clock: SharedTime, **store_options: Any) -> Any:
    oidc = oidc_client(provider, clock)
    app, _ = oidc_app(oidc, clock, **store_options)
    tc = browser(app)
    assert code_flow(tc, provider).status_code == 303
    assert tc.get("/me").status_code == 200
    return tc, oidc


AUTH_COOKIES = {"_auth", "_auth_type", "_auth_state", "_auth_refresh", "_auth_csrf"}


def test_provider_stopped_answers_503_and_clears_nothing(
    provider: OIDCProviderServer, wall_clock: SharedTime
) -> None:
    # No remembered verifications: every request really verifies against the held keys.
    tc, _ = _signed_in(provider, wall_clock, verified_token_cache=0)
    cookies = dict(tc.cookies.items())
    provider.stop()
    # Tokens signed by keys we already hold keep verifying while the provider is down.
    assert tc.get("/me").status_code == 200
    wall_clock.shift += ACCESS_TTL + 20  # (the provider is down: nothing to sync)
    response = tc.get("/me")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.headers.get_list("set-cookie") == []
    assert dict(tc.cookies.items()) == cookies
    assert tc.get("/public").status_code == 200  # public routes still answer
    # The provider comes back: the same cookies refresh and work.
    provider.start()
    wall_clock.advance(0)
    response = tc.get("/me")
    assert response.status_code == 200, response.text
    assert tc.cookies["_auth_refresh"] != cookies["_auth_refresh"]


@pytest.mark.parametrize(
    "garbage",
    [b"<html>Service temporarily overloaded</html>", b'{"unexpected": true}', b"[1, 2, 3]"],
    ids=["html", "json-without-tokens", "json-array"],
)
def test_provider_answering_garbage_answers_503_and_clears_nothing(
    provider: OIDCProviderServer, wall_clock: SharedTime, garbage: bytes
) -> None:
    tc, oidc = _signed_in(provider, wall_clock)
    cookies = dict(tc.cookies.items())
    provider.stop()
    # Something else answers on the provider's port: 200 and garbage to every request.
    with StaticJSON(None, port=provider.port, raw=garbage).running():
        wall_clock.shift += ACCESS_TTL + 20
        response = tc.get("/me")
        assert response.status_code == 503
        assert response.headers.get_list("set-cookie") == []
        assert dict(tc.cookies.items()) == cookies
        # A key reload that reads garbage keeps the keys held.
        assert not anyio.run(partial(oidc.keys.reload, "key-x", trusted=True))
        assert oidc.keys.key_ids == ("key-1",)
    provider.start()
    wall_clock.advance(0)
    assert tc.get("/me").status_code == 200


def test_jwks_with_a_foreign_algorithm_key(
    provider: OIDCProviderServer, wall_clock: SharedTime
) -> None:
    """The provider's JWKS lists an ES256 key first; we accept RS256 only. The ES256 key is
    never held; tokens signed with it are refused; the RS256 key keeps working. When the
    provider signs the refreshed token with the foreign key, the rotated refresh token is
    kept (issue 16), and the session continues once it signs with RS256 again."""
    provider.keys = [ec_jwk("ec-1"), *provider.keys]
    provider.restart()
    tc, oidc = _signed_in(provider, wall_clock)
    assert oidc.keys.key_ids == ("key-1",)

    provider.restart(accessTokenAlg="ES256")
    wall_clock.advance(ACCESS_TTL + 20)
    before = tc.cookies["_auth_refresh"]
    response = tc.get("/me")
    assert response.status_code == 503  # the new access token is refused here...
    written = CookieKeeper().update(response)
    assert set(written) == {"_auth_state", "_auth_refresh", "_auth_csrf"}  # ...its successor kept
    assert tc.cookies["_auth_refresh"] != before

    provider.restart(accessTokenAlg="RS256")
    wall_clock.advance(1)
    response = tc.get("/me")
    assert response.status_code == 200, response.text
    assert header(tc.cookies["_auth"])["kid"] == "key-1"
    _assert_each_refresh_token_presented_once(provider)


def _assert_each_refresh_token_presented_once(provider: OIDCProviderServer) -> None:
    presented = provider.presented_refresh_tokens()
    assert len(presented) == len(set(presented)), presented
    errors = [e for e in provider.log() if e["event"] == "grant.error"]
    assert errors == []  # no "refresh token already used", no revoked grant


# --- issue 16: the provider rotated the refresh token, its access token does not verify ---------


def test_unknown_kid_behind_a_stale_jwks_mirror_keeps_the_session(
    provider: OIDCProviderServer, wall_clock: SharedTime
) -> None:
    """The JWKS is read through a cache that lags behind the provider (a CDN): the provider
    signs with its new key before the mirror has it. The rotated refresh token is kept; once
    the mirror catches up, the session continues with the successor."""
    with StaticJSON(public_jwks(provider.keys)).running() as mirror:
        keys = JWKSKeySet(mirror.url, algorithms=["RS256"], clock=wall_clock)
        tc, _ = _signed_in(provider, wall_clock, token_key=keys)
        provider.rotate_key("key-2")  # the mirror still serves key-1 only
        wall_clock.advance(ACCESS_TTL + 20)
        response = tc.get("/me")
        assert response.status_code == 503
        assert set(CookieKeeper().update(response)) == {
            "_auth_state",
            "_auth_refresh",
            "_auth_csrf",
        }

        mirror.body = public_jwks(provider.keys)  # the cache catches up
        wall_clock.advance(2)
        response = tc.get("/me")
        assert response.status_code == 200, response.text
        assert header(tc.cookies["_auth"])["kid"] == "key-2"
        assert keys.key_ids == ("key-2", "key-1")
    _assert_each_refresh_token_presented_once(provider)
    assert len(provider.presented_refresh_tokens()) == 2


def test_provider_clock_ahead_beyond_leeway_keeps_the_session(
    provider: OIDCProviderServer, wall_clock: SharedTime
) -> None:
    tc, _ = _signed_in(provider, wall_clock, leeway=1)
    wall_clock.skew(3)  # the provider's clock runs 3 s ahead: iat "in the future" here
    wall_clock.advance(ACCESS_TTL + 20)
    response = tc.get("/me")
    assert response.status_code == 503
    assert "_auth_refresh" in CookieKeeper().update(response)

    wall_clock.skew(0.5)  # its clock is corrected to within our leeway
    wall_clock.advance(1)
    response = tc.get("/me")
    assert response.status_code == 200, response.text
    _assert_each_refresh_token_presented_once(provider)


def test_default_leeway_absorbs_a_provider_clock_a_few_seconds_ahead(
    provider: OIDCProviderServer, wall_clock: SharedTime
) -> None:
    tc, _ = _signed_in(provider, wall_clock)  # leeway: the external-mode default
    wall_clock.skew(3)
    wall_clock.advance(ACCESS_TTL + 20)
    response = tc.get("/me")
    assert response.status_code == 200, response.text
    assert set(CookieKeeper().update(response)) == AUTH_COOKIES


def test_wrong_audience_keeps_the_session_until_it_is_fixed(
    provider: OIDCProviderServer, wall_clock: SharedTime
) -> None:
    tc, _ = _signed_in(provider, wall_clock)
    provider.restart(audience="https://another-api.test")  # a provider misconfiguration
    wall_clock.advance(ACCESS_TTL + 20)
    for _ in range(2):  # each attempt rotates, and keeps, the refresh token
        response = tc.get("/me")
        assert response.status_code == 503
        assert "_auth_refresh" in CookieKeeper().update(response)
        wall_clock.advance(1)
    provider.restart(audience=API)
    wall_clock.advance(1)
    response = tc.get("/me")
    assert response.status_code == 200, response.text
    _assert_each_refresh_token_presented_once(provider)
    assert len(provider.presented_refresh_tokens()) == 3


def _refresh_at_the_provider(provider: OIDCProviderServer, refresh_token: str) -> Any:
    """Present ``refresh_token`` to the provider's token endpoint directly, as our app would."""
    return httpx2.post(
        f"{provider.issuer}/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token, "resource": API},
        auth=(provider.client_options["client_id"], provider.client_options["client_secret"]),
        timeout=10.0,
    )


def test_sign_out_revokes_the_refresh_token_at_the_provider(
    provider: OIDCProviderServer, wall_clock: SharedTime, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 15: sign-out in external mode only cleared the cookies; the grant stayed live at
    the provider. sign_out now calls the refresh grant's revocation hook (RFC 7009, the
    endpoint from discovery), so the refresh token is dead at the provider."""
    # Control: a signed-in session's refresh token is live at the provider (the assertion
    # below can fail), and presenting it rotates it, so take the rotated one from the answer.
    tc, _ = _signed_in(provider, wall_clock)
    live = _refresh_at_the_provider(provider, tc.cookies["_auth_refresh"])
    assert live.status_code == 200, live.text

    tc, _ = _signed_in(provider, wall_clock)
    refresh_token = tc.cookies["_auth_refresh"]
    with caplog.at_level(logging.WARNING, logger="fastapi_authkit"):
        response = tc.post("/logout", headers={"X-CSRF-Token": tc.cookies["_auth_csrf"]})
    assert response.json() == {"ok": True}
    assert set(CookieKeeper().update(response)) == AUTH_COOKIES  # all cleared
    # Revoked without a complaint.
    complaints = [
        r.getMessage()
        for r in caplog.records
        if r.name == "fastapi_authkit" and r.levelno >= logging.WARNING
    ]
    assert complaints == []
    dead = _refresh_at_the_provider(provider, refresh_token)
    assert dead.status_code == 400
    assert dead.json()["error"] == "invalid_grant"


def test_sign_out_while_the_provider_is_down_clears_the_cookies_and_says_so(
    provider: OIDCProviderServer, wall_clock: SharedTime, caplog: pytest.LogCaptureFixture
) -> None:
    tc, _ = _signed_in(provider, wall_clock)
    provider.stop()
    with caplog.at_level(logging.ERROR, logger="fastapi_authkit"):
        response = tc.post("/logout", headers={"X-CSRF-Token": tc.cookies["_auth_csrf"]})
    assert response.status_code == 200
    assert set(CookieKeeper().update(response)) == AUTH_COOKIES
    assert "sign-out could not revoke the session at the auth server: ProviderError" in (
        caplog.text
    )


# --- issue 24.1: refresh tokens with the provider's default policy ------------------------------


def test_default_provider_policy_keeps_the_user_signed_in_across_refreshes(
    provider: OIDCProviderServer, wall_clock: SharedTime
) -> None:
    """oidc-provider's default ``issueRefreshToken`` issues a refresh token only for a
    consented ``offline_access`` (OIDC Core §11); the test provider no longer overrides it.
    Set up as the docs say, a user stays signed in past several access-token expiries."""
    oidc = oidc_client(provider, wall_clock)
    app, _ = oidc_app(oidc, wall_clock)
    tc = browser(app)
    assert code_flow(tc, provider).status_code == 303
    assert "_auth_refresh" in tc.cookies
    for _ in range(3):
        before = tc.cookies["_auth_refresh"]
        wall_clock.advance(ACCESS_TTL + 20)
        response = tc.get("/me")
        assert response.status_code == 200, response.text
        assert tc.cookies["_auth_refresh"] != before
    assert len(provider.presented_refresh_tokens()) == 3
    _assert_each_refresh_token_presented_once(provider)


# --- issue 24.4: forged and replayed callbacks never reach the token endpoint ------------------


def _code_grants(provider: OIDCProviderServer) -> list[dict[str, Any]]:
    return [e for e in provider.log() if e.get("grant_type") == "authorization_code"]


def test_replayed_and_planted_callbacks_never_reach_the_token_endpoint(
    provider: OIDCProviderServer, wall_clock: SharedTime
) -> None:
    oidc = oidc_client(provider, wall_clock)
    app, _ = oidc_app(oidc, wall_clock)
    tc = browser(app)
    name = "__Host-_auth_oidc"
    query = authorize(tc, provider)
    transaction = tc.cookies[name]
    assert tc.get(f"/auth/callback?{query}", follow_redirects=False).status_code == 303
    assert name not in tc.cookies  # deleted once used
    assert len(_code_grants(provider)) == 1
    # The same transaction cookie and callback, replayed (a copy kept by an attacker).
    victim = browser(app)
    for _ in range(3):
        replay = victim.get(
            f"/auth/callback?{query}",
            headers={"cookie": f"{name}={transaction}"},
            follow_redirects=False,
        )
        assert replay.status_code == 400
        assert "_auth" not in victim.cookies
    # Login CSRF: the attacker's own transaction and code, planted in the victim's browser
    # without the __Host- cookie (tossed from a sibling subdomain, or over http) or without
    # any cookie at all.
    attacker = browser(app)
    query = authorize(attacker, provider, login="mallory")
    planted = attacker.cookies[name]
    for cookie in (f"_auth_oidc={planted}", f"{name}={planted}; {name}={planted}", ""):
        response = victim.get(
            f"/auth/callback?{query}", headers={"cookie": cookie}, follow_redirects=False
        )
        assert response.status_code == 400
        assert "_auth" not in victim.cookies
    assert len(_code_grants(provider)) == 1  # one token-endpoint call in all
