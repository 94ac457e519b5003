"""Issue 24.3: social sign-in into the app's own sessions. The provider only says who signed
in (panva's oidc-provider through OpenID Connect; a plain OAuth 2.0 Authlib server,
GitHub-style, through its user API), the app's hook names its user, and the built-in issuer
starts the session: the cookies are the issuer's, refreshes rotate them past the access
token's expiry, sign-out revokes the session; a refusing hook answers 403 and starts none;
the transaction cookie stays single-use and bound to its state."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest
from fastapi import FastAPI, Request
from starlette.testclient import TestClient

from fastapi_authkit import AuthKitMiddleware, create_issuer, create_store
from fastapi_authkit.dependencies import CurrentUser
from fastapi_authkit.errors import ConfigurationError
from fastapi_authkit.issuer import Issuer
from fastapi_authkit.oidc import AppUser, IdentityRefused, OIDCClient, ProviderIdentity
from fastapi_authkit.stores import MemoryStore

from tests.support.oauth2_server import OAuth2Server
from tests.support.oidc_flow import authorize, browser, code_flow
from tests.support.oidc_server import OIDCProviderServer, SharedTime, header
from tests.support.tokens import SECRET_KEY

pytestmark = pytest.mark.realserver

ISSUER_ACCESS_TTL = 60
OIDC_REDIRECT = "https://testserver/auth/oidc/callback"
GITHUB_REDIRECT = "https://testserver/auth/github/callback"
SIGNING_KEY = "social-signing-key-0123456789abcdef-0123456"


class Accounts:
    """The app's accounts, linked by (issuer, provider subject): the hook the docs describe."""

    def __init__(self) -> None:
        self.links: dict[tuple[str, str], str] = {}
        self.seen: list[ProviderIdentity] = []
        self.banned: set[str] = set()

    def on_identity(self, identity: ProviderIdentity) -> AppUser | None:
        self.seen.append(identity)
        profile = identity.claims
        if profile.get("email") in self.banned:
            raise IdentityRefused("this account is suspended")
        if profile.get("login") == "bob":
            return None  # refused without a reason
        key = (identity.issuer, identity.subject)
        user_id = self.links.setdefault(key, f"user-{len(self.links) + 1}")
        return AppUser(user_id, user_state={"name": profile.get("name"), "via": identity.provider})


def social_app(
    clock: Callable[[], float], clients: Callable[[Issuer], list[tuple[OIDCClient, str]]]
) -> tuple[FastAPI, Issuer]:
    issuer = create_issuer(
        backend=MemoryStore(), signing_key=SIGNING_KEY, access_ttl=ISSUER_ACCESS_TTL, clock=clock
    )
    store = create_store(secret_key=SECRET_KEY, token_issuer=issuer, clock=clock)
    app = FastAPI()
    app.add_middleware(AuthKitMiddleware, store=store)
    for client, prefix in clients(issuer):
        app.include_router(client.router(prefix=prefix))

    @app.get("/me")
    async def me(user: CurrentUser) -> Any:
        return user

    @app.get("/sessions")
    async def sessions(request: Request, user: CurrentUser) -> Any:
        return [session.id for session in await issuer.sessions(request)]

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, bool]:
        await issuer.sign_out(request)
        return {"ok": True}

    return app, issuer


# -- OpenID Connect: panva's oidc-provider ------------------------------------------------


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[OIDCProviderServer]:
    server = OIDCProviderServer(tmp_path, redirect_uris=[OIDC_REDIRECT], access_ttl=60)
    # oidc-provider's default policy: the access token is for its userinfo endpoint, the ID
    # token carries only sub, and the claims the scopes ask for are at userinfo.
    server.settings["apiByDefault"] = False
    server.start()
    yield server
    server.stop()


def oidc_social(
    provider: OIDCProviderServer,
    clock: Callable[[], float],
    issuer: Issuer,
    accounts: Accounts,
    **options: Any,
) -> OIDCClient:
    return OIDCClient(
        issuer=provider.issuer,
        **provider.client_options,
        scope="openid profile email",
        redirect_uri=OIDC_REDIRECT,
        clock=clock,
        name="oidc",
        session=issuer,
        on_identity=accounts.on_identity,
        **options,
    )


def _assert_issuer_session(tc: TestClient, name: str, via: str) -> None:
    me = tc.get("/me")
    assert me.status_code == 200, me.text
    assert me.json() == {"name": name, "via": via}
    # The cookies are the issuer's: its HS256 access token, no provider token anywhere.
    assert header(tc.cookies["_auth"])["alg"] == "HS256"
    assert set(dict(tc.cookies.items())) == {
        "_auth",
        "_auth_type",
        "_auth_state",
        "_auth_refresh",
        "_auth_csrf",
    }


def _refreshes_then_sign_out(tc: TestClient, advance: Callable[[float], None]) -> None:
    sessions = tc.get("/sessions").json()
    assert len(sessions) == 1
    for _ in range(3):  # past the issuer's access-token expiry, three times
        before = tc.cookies["_auth_refresh"]
        advance(ISSUER_ACCESS_TTL + 5)
        me = tc.get("/me")
        assert me.status_code == 200, me.text
        assert tc.cookies["_auth_refresh"] != before  # rotated by the issuer
    assert tc.get("/sessions").json() == sessions  # the same session throughout
    refresh = tc.cookies["_auth_refresh"]
    assert tc.post("/logout", headers={"x-csrf-token": tc.cookies["_auth_csrf"]}).status_code == 200
    assert tc.get("/me").status_code == 401
    # The refresh token is revoked at the issuer: presented again, it signs nobody in.
    tc.cookies.clear()
    tc.cookies.set("_auth_refresh", refresh)
    assert tc.get("/me").status_code == 401


def test_oidc_sign_in_lands_an_issuer_session(provider: OIDCProviderServer) -> None:
    clock = SharedTime(provider)
    accounts = Accounts()
    app, _ = social_app(
        clock, lambda issuer: [(oidc_social(provider, clock, issuer, accounts), "/auth/oidc")]
    )
    tc = browser(app)
    start = tc.get("/auth/oidc/login", follow_redirects=False).headers["location"]
    assert "offline_access" not in start  # no provider refresh token is asked for
    assert "prompt=consent" not in start
    done = code_flow(tc, provider, redirect=OIDC_REDIRECT, prefix="/auth/oidc")
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/me"
    _assert_issuer_session(tc, "Alice", "oidc")
    (identity,) = accounts.seen
    assert identity.issuer == provider.issuer
    assert identity.subject == "alice"
    assert identity.id_claims["sub"] == "alice"
    assert identity.id_claims["aud"] == provider.client_options["client_id"]
    # The provider's default policy: the scopes' claims are at userinfo (discovery's), not
    # in the ID token; the hook sees them all in claims, the ID token's over userinfo's.
    assert "email" not in identity.id_claims
    assert identity.userinfo == {"sub": "alice", "name": "Alice", "email": "alice@example.test"}
    assert identity.claims == {**identity.userinfo, **identity.id_claims}
    assert identity.claims["email"] == "alice@example.test"
    # No provider refresh token was asked for (the issuer's is the session's).
    assert provider.presented_refresh_tokens() == []
    _refreshes_then_sign_out(tc, clock.advance)

    # A later sign-in of the same provider user is the same app user.
    tc = browser(app)
    assert code_flow(tc, provider, redirect=OIDC_REDIRECT, prefix="/auth/oidc").status_code == 303
    assert accounts.links == {(provider.issuer, "alice"): "user-1"}


def test_oidc_hook_refusal_is_403_without_session(provider: OIDCProviderServer) -> None:
    clock = SharedTime(provider)
    accounts = Accounts()
    accounts.banned.add("alice@example.test")
    app, _ = social_app(
        clock, lambda issuer: [(oidc_social(provider, clock, issuer, accounts), "/auth/oidc")]
    )
    tc = browser(app)
    done = code_flow(tc, provider, redirect=OIDC_REDIRECT, prefix="/auth/oidc")
    assert done.status_code == 403
    assert done.json() == {"detail": "this account is suspended"}
    assert "_auth" not in tc.cookies
    assert "_auth_refresh" not in tc.cookies
    assert tc.get("/me").status_code == 401


def test_oidc_transaction_is_single_use_and_bound_to_its_state(
    provider: OIDCProviderServer,
) -> None:
    clock = SharedTime(provider)
    accounts = Accounts()
    app, _ = social_app(
        clock, lambda issuer: [(oidc_social(provider, clock, issuer, accounts), "/auth/oidc")]
    )
    tc = browser(app)
    query = authorize(tc, provider, redirect=OIDC_REDIRECT, prefix="/auth/oidc")
    cookie_name = "__Host-_auth_auth_oidc_oidc"
    transaction = tc.cookies[cookie_name]
    # A state that is not this transaction's: refused before the token endpoint.
    tampered = query.replace("state=", "state=x")
    assert tc.get(f"/auth/oidc/callback?{tampered}").status_code == 400
    # The transaction cookie was deleted; brought back, it completes once, and only once.
    tc.cookies.set(cookie_name, transaction)
    assert tc.get(f"/auth/oidc/callback?{query}", follow_redirects=False).status_code == 303
    tc.cookies.set(cookie_name, transaction)
    replay = tc.get(f"/auth/oidc/callback?{query}", follow_redirects=False)
    assert replay.status_code == 400
    assert "already used" in replay.json()["detail"]
    assert len(accounts.seen) == 1


def test_oidc_sign_in_after_the_provider_rotates_its_key(provider: OIDCProviderServer) -> None:
    """oidc-provider rotates its signing key (restarted with a new key first in its JWKS,
    later with the old one retired): sign-ins after it verify ID tokens signed with the new
    key, the app not restarted, and the sessions started before go on (the issuer's)."""
    clock = SharedTime(provider)
    accounts = Accounts()
    made: list[OIDCClient] = []

    def clients(issuer: Issuer) -> list[tuple[OIDCClient, str]]:
        made.append(oidc_social(provider, clock, issuer, accounts))
        return [(made[0], "/auth/oidc")]

    app, _ = social_app(clock, clients)
    browsers = [browser(app)]
    done = code_flow(browsers[0], provider, redirect=OIDC_REDIRECT, prefix="/auth/oidc")
    assert done.status_code == 303, done.text
    assert made[0].keys.key_ids == ("key-1",)

    provider.rotate_key("key-2")
    browsers.append(browser(app))
    done = code_flow(browsers[1], provider, redirect=OIDC_REDIRECT, prefix="/auth/oidc")
    assert done.status_code == 303, done.text
    assert made[0].keys.key_ids == ("key-2", "key-1")  # reloaded for the new kid

    provider.keys = provider.keys[:1]  # key-1 retired from the JWKS
    provider.restart()
    clock.advance(ISSUER_ACCESS_TTL + 5)
    browsers.append(browser(app))
    done = code_flow(browsers[2], provider, redirect=OIDC_REDIRECT, prefix="/auth/oidc")
    assert done.status_code == 303, done.text
    for tc in browsers:  # each refreshed past the issuer's access-token expiry, or new
        me = tc.get("/me")
        assert me.status_code == 200, me.text
        assert me.json() == {"name": "Alice", "via": "oidc"}
    assert accounts.links == {(provider.issuer, "alice"): "user-1"}


def test_userinfo_refusing_an_access_token_for_another_api_says_what_to_do(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A provider that issues the access token for an API (a default resource): its userinfo
    # endpoint refuses it, and its ID token carries the scopes' claims instead.
    provider = OIDCProviderServer(tmp_path, redirect_uris=[OIDC_REDIRECT], access_ttl=60)
    provider.start()
    try:
        clock = SharedTime(provider)
        accounts = Accounts()
        app, _ = social_app(
            clock, lambda issuer: [(oidc_social(provider, clock, issuer, accounts), "/auth/oidc")]
        )
        with caplog.at_level(logging.WARNING, logger="fastapi_authkit"):
            done = code_flow(browser(app), provider, redirect=OIDC_REDIRECT, prefix="/auth/oidc")
        assert done.status_code == 502
        assert "retry-after" not in done.headers
        assert accounts.seen == []
        (record,) = [r for r in caplog.records if r.name == "fastapi_authkit"]
        assert record.levelno == logging.ERROR
        assert record.exc_info is None
        assert "userinfo endpoint refused the access token" in record.getMessage()
        assert "'invalid_token'" in record.getMessage()
        assert "pass fetch_userinfo=False" in record.getMessage()

        app, _ = social_app(
            clock,
            lambda issuer: [
                (
                    oidc_social(provider, clock, issuer, accounts, fetch_userinfo=False),
                    "/auth/oidc",
                )
            ],
        )
        tc = browser(app)
        done = code_flow(tc, provider, redirect=OIDC_REDIRECT, prefix="/auth/oidc")
        assert done.status_code == 303, done.text
        (identity,) = accounts.seen
        assert identity.userinfo is None
        assert identity.claims == identity.id_claims
        assert identity.id_claims["email"] == "alice@example.test"
        assert tc.get("/me").json() == {"name": "Alice", "via": "oidc"}
    finally:
        provider.stop()


# -- Plain OAuth 2.0, GitHub-style: Authlib's authorization server -------------------------


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[OAuth2Server]:
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    with OAuth2Server([GITHUB_REDIRECT], access_ttl=60).running() as running:
        yield running


def github_social(
    server: OAuth2Server, issuer: Issuer, accounts: Accounts, **credentials: str
) -> OIDCClient:
    # No discovery, no ID token: the endpoints are given, the user API says who signed in.
    return OIDCClient(
        issuer=server.url,
        **{**server.client_options, **credentials},
        authorization_endpoint=f"{server.url}/authorize",
        token_endpoint=f"{server.url}/token",
        userinfo_endpoint=f"{server.url}/user",
        subject_claim="id",
        scope="user",
        redirect_uri=GITHUB_REDIRECT,
        allow_insecure_http=True,
        name="github",
        session=issuer,
        on_identity=accounts.on_identity,
    )


def _github_flow(tc: TestClient, *, login: str = "alice") -> tuple[Any, str]:
    start = tc.get("/auth/github/login", params={"next": "/me"}, follow_redirects=False)
    assert start.status_code == 302, start.text
    assert "offline_access" not in start.headers["location"]
    assert "prompt=consent" not in start.headers["location"]
    answer = httpx2.get(start.headers["location"] + f"&login_hint={login}", timeout=10.0)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(GITHUB_REDIRECT)
    query = urlsplit(location).query
    return tc.get(f"/auth/github/callback?{query}", follow_redirects=False), query


def test_github_style_sign_in_lands_an_issuer_session(github: OAuth2Server) -> None:
    accounts = Accounts()
    app, _ = social_app(
        github.now, lambda issuer: [(github_social(github, issuer, accounts), "/auth/github")]
    )
    tc = browser(app)
    done, _ = _github_flow(tc)
    assert done.status_code == 303, done.text
    _assert_issuer_session(tc, "Alice", "github")
    (identity,) = accounts.seen
    assert identity.subject == "1001"  # GitHub's numeric id, as a string
    assert identity.id_claims == {}
    assert identity.userinfo is not None
    assert identity.userinfo["login"] == "alice"

    def advance(seconds: float) -> None:
        github.offset += seconds

    _refreshes_then_sign_out(tc, advance)
    # One token from the provider, at sign-in: the issuer's sessions refresh here.
    assert len(github.tokens) == 1


def test_github_style_refusal_is_403_and_transaction_single_use(github: OAuth2Server) -> None:
    accounts = Accounts()
    app, _ = social_app(
        github.now, lambda issuer: [(github_social(github, issuer, accounts), "/auth/github")]
    )
    tc = browser(app)
    done, _ = _github_flow(tc, login="bob")  # the hook answers None for bob
    assert done.status_code == 403
    assert done.json() == {"detail": "this account cannot sign in here"}
    assert "_auth" not in tc.cookies
    # A mismatched state never reaches the token endpoint; a used one neither.
    start = tc.get("/auth/github/login", follow_redirects=False)
    answer = httpx2.get(start.headers["location"], timeout=10.0)
    query = urlsplit(answer.headers["location"]).query
    cookie_name = "__Host-_auth_auth_github_oidc"
    transaction = tc.cookies[cookie_name]
    assert tc.get(f"/auth/github/callback?{query.replace('state=', 'state=x')}").status_code == 400
    tokens_before = len(github.tokens)
    tc.cookies.set(cookie_name, transaction)
    assert tc.get(f"/auth/github/callback?{query}", follow_redirects=False).status_code == 303
    tc.cookies.set(cookie_name, transaction)
    assert tc.get(f"/auth/github/callback?{query}", follow_redirects=False).status_code == 400
    assert len(github.tokens) == tokens_before + 1


def test_github_refusing_a_code_with_200_and_an_error_is_start_again(
    github: OAuth2Server, caplog: pytest.LogCaptureFixture
) -> None:
    github.github_errors = True  # 200 and {"error": "bad_verification_code"}, as GitHub does
    accounts = Accounts()
    app, _ = social_app(
        github.now, lambda issuer: [(github_social(github, issuer, accounts), "/auth/github")]
    )
    tc = browser(app)
    done, used = _github_flow(tc)
    assert done.status_code == 303, done.text
    # A second sign-in whose callback carries the code already exchanged (its own state):
    # the provider refuses the code with HTTP 200, which is a refusal, not an outage.
    start = tc.get("/auth/github/login", follow_redirects=False)
    answer = httpx2.get(start.headers["location"], timeout=10.0)
    state = parse_qs(urlsplit(answer.headers["location"]).query)["state"][0]
    code = parse_qs(used)["code"][0]
    tokens_before = len(github.tokens)
    with caplog.at_level(logging.INFO, logger="fastapi_authkit"):
        refused = tc.get(
            "/auth/github/callback", params={"code": code, "state": state}, follow_redirects=False
        )
    assert refused.status_code == 400
    assert refused.json() == {"detail": "the identity provider refused the code; start again"}
    assert "retry-after" not in refused.headers
    assert len(github.tokens) == tokens_before
    (record,) = [r for r in caplog.records if r.name == "fastapi_authkit"]
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert "HTTP 200 'bad_verification_code'" in record.getMessage()

    # A wrong client secret, answered 200 + incorrect_client_credentials: the operator's.
    caplog.clear()
    app, _ = social_app(
        github.now,
        lambda issuer: [
            (
                github_social(github, issuer, accounts, client_secret="not-the-secret-0123"),
                "/auth/github",
            )
        ],
    )
    with caplog.at_level(logging.INFO, logger="fastapi_authkit"):
        misconfigured, _ = _github_flow(browser(app))
    assert misconfigured.status_code == 502
    assert "retry-after" not in misconfigured.headers
    assert "misconfigured" in misconfigured.json()["detail"]
    (record,) = [r for r in caplog.records if r.name == "fastapi_authkit"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is None
    assert "'incorrect_client_credentials'" in record.getMessage()
    assert "check client_id, client_secret" in record.getMessage()


def test_two_providers_in_one_app(provider: OIDCProviderServer, github: OAuth2Server) -> None:
    clock = SharedTime(provider)
    accounts = Accounts()
    app, _ = social_app(
        clock,
        lambda issuer: [
            (oidc_social(provider, clock, issuer, accounts), "/auth/oidc"),
            (github_social(github, issuer, accounts), "/auth/github"),
        ],
    )
    tc = browser(app)
    # Both sign-ins started in the same browser: each has its own transaction cookie.
    query = authorize(tc, provider, redirect=OIDC_REDIRECT, prefix="/auth/oidc")
    done, _ = _github_flow(tc)
    assert done.status_code == 303, done.text
    assert tc.get("/me").json() == {"name": "Alice", "via": "github"}
    done = tc.get(f"/auth/oidc/callback?{query}", follow_redirects=False)
    assert done.status_code == 303, done.text
    assert tc.get("/me").json() == {"name": "Alice", "via": "oidc"}
    # Two provider accounts, two app users (the hook links by (issuer, subject)).
    assert set(accounts.links) == {(github.url, "1001"), (provider.issuer, "alice")}


def test_hook_answering_something_else_is_a_type_error(github: OAuth2Server) -> None:
    def confused(identity: ProviderIdentity) -> Any:
        return identity.subject  # not an AppUser

    def clients(issuer: Issuer) -> list[tuple[OIDCClient, str]]:
        client = github_social(github, issuer, Accounts())
        client.on_identity = confused
        return [(client, "/auth/github")]

    app, _ = social_app(github.now, clients)
    with pytest.raises(TypeError, match=r"on_identity must return AppUser\(subject"):
        _github_flow(browser(app))


# -- Configuration mistakes -----------------------------------------------------------------


def test_configuration_mistakes_say_what_to_do() -> None:
    issuer = create_issuer(backend=MemoryStore(), signing_key=SIGNING_KEY)
    base: dict[str, Any] = {"issuer": "https://idp.example", "client_id": "app"}

    def hook(identity: ProviderIdentity) -> AppUser:
        return AppUser(identity.subject)

    cases: list[tuple[dict[str, Any], str]] = [
        ({"session": issuer}, "session= needs on_identity="),
        ({"on_identity": hook, "audience": "api"}, "pass session=issuer"),
        ({"session": object(), "on_identity": hook}, "from create_issuer"),
        ({"session": issuer, "on_identity": hook, "audience": "api"}, "drop them"),
        (
            {"session": issuer, "on_identity": hook, "access_tokens": "introspect"},
            "access_tokens configure the provider's tokens",
        ),
        ({"session": issuer, "on_identity": hook, "scope": "user"}, "userinfo_endpoint="),
        (
            {
                "session": issuer,
                "on_identity": hook,
                "authorization_endpoint": "https://idp.example/authorize",
            },
            "both authorization_endpoint and token_endpoint",
        ),
        (
            {
                "session": issuer,
                "on_identity": hook,
                "scope": "user",
                "authorization_endpoint": "https://idp.example/authorize",
                "token_endpoint": "https://idp.example/token",
            },
            "pass userinfo_endpoint=",
        ),
        (
            {
                "session": issuer,
                "on_identity": hook,
                "authorization_endpoint": "https://idp.example/authorize",
                "token_endpoint": "https://idp.example/token",
                "userinfo_endpoint": "https://idp.example/user",
            },
            "found by discovery",
        ),
        (
            {"audience": "api", "userinfo_endpoint": "https://idp.example/user"},
            "only says who signed in",
        ),
        ({"audience": "api", "fetch_userinfo": False}, "fetch_userinfo are for a provider"),
        ({"session": issuer, "on_identity": hook, "fetch_userinfo": 0}, "must be a bool"),
        (
            {
                "session": issuer,
                "on_identity": hook,
                "fetch_userinfo": False,
                "userinfo_endpoint": "https://idp.example/user",
            },
            "drop one of them",
        ),
        (
            {
                "session": issuer,
                "on_identity": hook,
                "fetch_userinfo": False,
                "scope": "user",
                "authorization_endpoint": "https://idp.example/authorize",
                "token_endpoint": "https://idp.example/token",
                "userinfo_endpoint": "https://idp.example/user",
            },
            "says who signed in only there",
        ),
        ({}, "audience is required"),
    ]
    for options, message in cases:
        with pytest.raises(ConfigurationError, match=message):
            OIDCClient(**base, **options)
    social = OIDCClient(**base, session=issuer, on_identity=hook)
    with pytest.raises(ConfigurationError, match="token_issuer=issuer"):
        social.store_options()


def test_store_of_another_issuer_is_a_configuration_error() -> None:
    issuer = create_issuer(backend=MemoryStore(), signing_key=SIGNING_KEY)
    client = OIDCClient(
        issuer="https://idp.example",
        client_id="app",
        session=issuer,
        on_identity=lambda identity: AppUser(identity.subject),
    )
    other = create_issuer(backend=MemoryStore(), signing_key=SIGNING_KEY)
    store = create_store(secret_key=SECRET_KEY, token_issuer=other)  # not the client's issuer
    app = FastAPI()
    app.add_middleware(AuthKitMiddleware, store=store)
    app.include_router(client.router())
    with (
        TestClient(app, base_url="https://testserver") as tc,
        pytest.raises(ConfigurationError, match="create_store\\(token_issuer=issuer\\)"),
    ):
        tc.get("/auth/login")
