"""Issue 12 and 16 against panva's certified oidc-provider on loopback (JWT access tokens for
a resource indicator, at+jwt, RS256, refresh-token rotation that revokes the grant on
reuse): the real code flow, refresh through the real token endpoint, key rotation, grant
revocation, the provider down or answering garbage, and access tokens that do not verify
here while their refresh token was rotated."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from oidc_flow import browser, code_flow, oidc_app, oidc_client
from oidc_server import OIDCProviderServer, SharedTime, header

from servers import CookieKeeper

pytestmark = pytest.mark.realserver

ACCESS_TTL = 60


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[OIDCProviderServer]:
    server = OIDCProviderServer(
        tmp_path, redirect_uris=["https://app.test/auth/callback"], access_ttl=ACCESS_TTL
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
