"""Issue 24: the set-ups of docs/deployments/identity-provider.md, copied as the page prints
them, against a second OpenID Provider written independently of panva's oidc-provider:
Authlib's OpenID Connect server (tests/support/authlib_op.py), with Authlib's default
policies (refresh-token rotation on, and off as Authlib has it by default). For the
provider's tokens as the session and for social sign-in into our own sessions: sign-in,
refreshes past the access token's expiry, the provider's key rotation without an app
restart, and sign-out (revoked at the provider, or at the issuer)."""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from fastapi import Request
from starlette.testclient import TestClient

from fastapi_authkit import sign_out
from fastapi_authkit.oidc import AppUser, OIDCClient, ProviderIdentity

from tests.support.authlib_op import AuthlibOP
from tests.support.docs_examples import Examples
from tests.support.http_client import CookieKeeper
from tests.support.oauth2_server import CLIENT_ID, CLIENT_SECRET
from tests.support.oidc_flow import browser, code_flow
from tests.support.oidc_server import API, header
from tests.support.tokens import SECRET_KEY, TOKEN_KEY

pytestmark = pytest.mark.realserver

CALLBACK = "https://testserver/auth/callback"
COMPANY_CALLBACK = "https://testserver/auth/company/callback"
USERINFO_CALLBACK = "https://testserver/auth/userinfo/callback"
ACCESS_TTL = 300  # the provider's access tokens
ISSUER_ACCESS_TTL = 300  # create_issuer's default, which the social example keeps
AUTH_COOKIES = {"_auth", "_auth_type", "_auth_state", "_auth_refresh", "_auth_csrf"}
# This client's registration at the provider, for the page's placeholders.
CLIENT = {'"my-app"': repr(CLIENT_ID), '"..."': repr(CLIENT_SECRET)}


@pytest.fixture
def op(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[AuthlibOP]:
    """The provider; ``@pytest.mark.parametrize("op", [{...}], indirect=True)`` sets options."""
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # loopback http
    options = getattr(request, "param", {})
    server = AuthlibOP(
        [CALLBACK, COMPANY_CALLBACK, USERINFO_CALLBACK], access_ttl=ACCESS_TTL, **options
    )
    with server.running() as running:
        yield running


def docs_app(
    monkeypatch: pytest.MonkeyPatch, op: AuthlibOP, label: str, replace: dict[str, str]
) -> types.ModuleType:
    """The page's example ``label`` pointed at ``op``, its store (and issuer) given the
    provider's clock so that the tests move time instead of waiting."""
    monkeypatch.setenv("TOKEN_SECRET", TOKEN_KEY)
    monkeypatch.setenv("COOKIE_SECRET", SECRET_KEY)
    module = types.ModuleType(f"docs_example_{label}_authlib")
    module.clock = op.now  # type: ignore[attr-defined]
    replace = {"https://id.example.com/realms/main": op.issuer, **CLIENT, **replace}
    return Examples(monkeypatch).run(label, into=module, replace=replace)


def csrf(tc: TestClient) -> dict[str, str]:
    return {"X-CSRF-Token": tc.cookies["_auth_csrf"]}


def refresh_at_the_provider(op: AuthlibOP, refresh_token: str) -> Any:
    """Present ``refresh_token`` to the provider's token endpoint, as the app would."""
    return httpx2.post(
        f"{op.issuer}/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(CLIENT_ID, CLIENT_SECRET),
        timeout=10.0,
    )


# -- The provider's tokens as the session: the smallest app -----------------------------------


def provider_session(monkeypatch: pytest.MonkeyPatch, op: AuthlibOP) -> tuple[Any, TestClient]:
    """The page's smallest app, plus the sign-out route the page describes next to it."""
    module = docs_app(
        monkeypatch,
        op,
        "oidc_smallest_app",
        {
            "https://api.example.com": API,
            "**oidc.store_options()": "clock=clock, **oidc.store_options()",
        },
    )

    @module.app.post("/logout")
    async def logout(request: Request) -> dict[str, bool]:
        sign_out(request)  # also revokes the refresh token at the provider
        return {"ok": True}

    tc = browser(module.app)
    start = tc.get("/auth/login", follow_redirects=False)
    asked = parse_qs(urlsplit(start.headers["location"]).query)
    # Discovery lists offline_access and consent: the sign-in asks for both.
    assert asked["scope"] == ["openid offline_access"]
    assert asked["prompt"] == ["consent"]
    signed_in = code_flow(tc, op, redirect=CALLBACK)
    assert signed_in.status_code == 303, signed_in.text
    assert signed_in.headers["location"] == "/me"
    return module, tc


def test_provider_session_signs_in_and_refreshes_past_expiry(
    monkeypatch: pytest.MonkeyPatch, op: AuthlibOP
) -> None:
    _, tc = provider_session(monkeypatch, op)
    me = tc.get("/me")
    assert me.status_code == 200, me.text
    assert me.json() == {"sub": "alice"}  # scope openid: the sub only
    access = header(tc.cookies["_auth"])
    assert (access["typ"], access["kid"]) == ("at+jwt", "key-1")  # RFC 9068, Authlib's
    for _ in range(3):
        before = tc.cookies["_auth_refresh"]
        op.offset += ACCESS_TTL + 20  # past the access token's expiry
        me = tc.get("/me")
        assert me.status_code == 200, me.text
        assert tc.cookies["_auth_refresh"] != before  # rotated at the provider...
        assert op.refresh_token_revoked(before)  # ...which revoked its predecessor
    # Each refresh token was presented once: four token answers, one live refresh token.
    assert len(op.tokens) == 4
    assert [token.revoked for token in op.tokens] == [True, True, True, False]


@pytest.mark.parametrize("op", [{"rotate_refresh_tokens": False}], indirect=True)
def test_provider_session_without_refresh_token_rotation(
    monkeypatch: pytest.MonkeyPatch, op: AuthlibOP
) -> None:
    """Authlib's own default: the refresh grant answers no new refresh token. The session
    keeps its refresh token through the refreshes, and sign-out revokes that one."""
    _, tc = provider_session(monkeypatch, op)
    refresh_token = tc.cookies["_auth_refresh"]
    for _ in range(3):
        before = tc.cookies["_auth"]
        op.offset += ACCESS_TTL + 20
        me = tc.get("/me")
        assert me.status_code == 200, me.text
        assert tc.cookies["_auth"] != before  # a new access token...
        assert tc.cookies["_auth_refresh"] == refresh_token  # ...by the same refresh token
    assert [token.refresh_token for token in op.tokens] == [refresh_token, None, None, None]
    assert tc.post("/logout", headers=csrf(tc)).json() == {"ok": True}
    assert op.refresh_token_revoked(refresh_token)


def test_provider_session_survives_key_rotation_without_restart(
    monkeypatch: pytest.MonkeyPatch, op: AuthlibOP
) -> None:
    module, tc = provider_session(monkeypatch, op)
    assert tc.get("/me").status_code == 200
    op.rotate_key("key-2")  # new tokens are signed with key-2; key-1 still published
    op.offset += ACCESS_TTL + 20
    me = tc.get("/me")
    assert me.status_code == 200, me.text
    assert header(tc.cookies["_auth"])["kid"] == "key-2"
    assert module.oidc.keys.key_ids == ("key-2", "key-1")
    # key-1 is retired from the JWKS; the session goes on with key-2, through refreshes.
    op.retire_key("key-1")
    for _ in range(2):
        op.offset += ACCESS_TTL + 20
        me = tc.get("/me")
        assert me.status_code == 200, me.text
        assert header(tc.cookies["_auth"])["kid"] == "key-2"
    # A new sign-in (ID token and access token signed with key-2) works too.
    other = browser(module.app)
    assert code_flow(other, op, redirect=CALLBACK).status_code == 303
    assert other.get("/me").json() == {"sub": "alice"}


def test_provider_session_sign_out_revokes_at_the_provider(
    monkeypatch: pytest.MonkeyPatch, op: AuthlibOP
) -> None:
    _, tc = provider_session(monkeypatch, op)
    op.offset += ACCESS_TTL + 20  # one refresh first: the rotated token is the one revoked
    assert tc.get("/me").status_code == 200
    refresh_token = tc.cookies["_auth_refresh"]
    assert not op.refresh_token_revoked(refresh_token)
    response = tc.post("/logout", headers=csrf(tc))
    assert response.json() == {"ok": True}
    cleared = CookieKeeper().update(response)
    assert set(cleared) == AUTH_COOKIES
    assert all(attrs["max-age"] == "0" for attrs in cleared.values())
    assert op.refresh_token_revoked(refresh_token)  # RFC 7009, at discovery's endpoint
    dead = refresh_at_the_provider(op, refresh_token)
    assert dead.status_code == 400
    assert dead.json()["error"] == "invalid_grant"
    assert tc.get("/me").status_code == 401


# -- Sign in with the provider, keep the session here: the social example ---------------------


@pytest.fixture
def social(monkeypatch: pytest.MonkeyPatch, op: AuthlibOP) -> types.ModuleType:
    """The page's social sign-in app, its company provider the Authlib OP (its GitHub client
    is built but not used here: tests/test_social_signin.py runs it)."""
    return docs_app(
        monkeypatch,
        op,
        "social_sign_in",
        {
            'signing_key=os.environ["TOKEN_SECRET"])': (
                'signing_key=os.environ["TOKEN_SECRET"], clock=clock)'
            ),
            "token_issuer=issuer)": "token_issuer=issuer, clock=clock)",
        },
    )


def social_sign_in(module: types.ModuleType, op: AuthlibOP) -> TestClient:
    tc = browser(module.app)
    start = tc.get("/auth/company/login", follow_redirects=False)
    asked = parse_qs(urlsplit(start.headers["location"]).query)
    assert asked["scope"] == ["openid profile email"]  # no provider refresh token asked for
    assert "prompt" not in asked
    signed_in = code_flow(tc, op, redirect=COMPANY_CALLBACK, prefix="/auth/company")
    assert signed_in.status_code == 303, signed_in.text
    assert tc.get("/me").json() == {"name": "Alice", "via": "company"}
    return tc


def _provider_tokens(op: AuthlibOP) -> set[str]:
    return {
        value
        for token in op.tokens
        for value in (token.access_token, token.refresh_token)
        if value is not None
    }


def test_social_sign_in_keeps_an_issuer_session_through_refreshes(
    social: types.ModuleType, op: AuthlibOP
) -> None:
    tc = social_sign_in(social, op)
    assert social.links == {(op.issuer, "alice"): "user-1"}
    # The cookies are the issuer's (HS256); Authlib issued a refresh token by its default
    # policy, and the kit kept none of the provider's tokens.
    assert header(tc.cookies["_auth"])["alg"] == "HS256"
    assert op.tokens[0].refresh_token is not None
    assert not _provider_tokens(op) & set(dict(tc.cookies.items()).values())
    for _ in range(3):
        before = tc.cookies["_auth_refresh"]
        op.offset += ISSUER_ACCESS_TTL + 5
        me = tc.get("/me")
        assert me.status_code == 200, me.text
        assert tc.cookies["_auth_refresh"] != before  # rotated by the issuer
    assert len(op.tokens) == 1  # the refreshes were the issuer's: the provider saw none
    # A later sign-in of the same provider user is the same app user.
    social_sign_in(social, op)
    assert social.links == {(op.issuer, "alice"): "user-1"}


def test_social_sign_in_survives_key_rotation_at_the_provider(
    social: types.ModuleType, op: AuthlibOP
) -> None:
    tc = social_sign_in(social, op)
    op.rotate_key("key-2")
    op.retire_key("key-1")  # at once: ID tokens signed with key-1 are never seen again
    # Later sign-ins bring ID tokens signed with key-2: the key set is reloaded, no restart.
    again = social_sign_in(social, op)
    assert social.company.keys.key_ids == ("key-2",)
    assert social_sign_in(social, op).get("/me").status_code == 200
    # The sessions started before and after the rotation are the issuer's: both go on.
    op.offset += ISSUER_ACCESS_TTL + 5
    assert tc.get("/me").status_code == 200
    assert again.get("/me").status_code == 200
    assert social.links == {(op.issuer, "alice"): "user-1"}


def test_social_sign_out_ends_the_issuer_session(social: types.ModuleType, op: AuthlibOP) -> None:
    tc = social_sign_in(social, op)
    op.offset += ISSUER_ACCESS_TTL + 5
    assert tc.get("/me").status_code == 200
    refresh = tc.cookies["_auth_refresh"]
    assert tc.post("/logout", headers=csrf(tc)).json() == {"ok": True}
    assert tc.get("/me").status_code == 401
    # The issuer revoked the session: its refresh token, presented again, signs nobody in.
    tc.cookies.clear()
    tc.cookies.set("_auth_refresh", refresh)
    assert tc.get("/me").status_code == 401
    # The account is refused at its next sign-in once the app disables it (the page's hook).
    social.accounts["user-1"]["disabled"] = True
    refused = code_flow(browser(social.app), op, redirect=COMPANY_CALLBACK, prefix="/auth/company")
    assert refused.status_code == 403
    assert refused.json() == {"detail": "this account is disabled"}


def test_social_sign_in_with_the_providers_userinfo(
    social: types.ModuleType, op: AuthlibOP
) -> None:
    """The page's hook behind a client that also asks the provider's userinfo endpoint
    (Authlib's ``UserInfoEndpoint``, with the RFC 9068 access token): the hook gets its
    answer beside the ID token's claims."""
    seen: list[ProviderIdentity] = []

    async def on_identity(identity: ProviderIdentity) -> AppUser | None:
        seen.append(identity)
        return await social.on_identity(identity)

    client = OIDCClient(
        issuer=op.issuer,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        scope="openid profile email",
        userinfo_endpoint=f"{op.issuer}/userinfo",
        name="company-userinfo",
        session=social.issuer,
        on_identity=on_identity,
    )
    social.app.include_router(client.router(prefix="/auth/userinfo"))
    tc = browser(social.app)
    done = code_flow(tc, op, redirect=USERINFO_CALLBACK, prefix="/auth/userinfo")
    assert done.status_code == 303, done.text
    assert tc.get("/me").json() == {"name": "Alice", "via": "company-userinfo"}
    (identity,) = seen
    assert identity.userinfo == {"sub": "alice", "name": "Alice", "email": "alice@example.test"}
    assert identity.id_claims["sub"] == "alice"
