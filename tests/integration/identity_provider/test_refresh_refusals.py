"""Issue 24.5: what a refresh does when the provider refuses it, against real servers
(Authlib's authorization server answering as GitHub does, or by RFC 6749; panva's
oidc-provider): a refused refresh token ends the session; a refusal of the app's own client
(the operator's mistake) keeps it, answers 503 and is said once per run at ERROR."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from starlette.testclient import TestClient

from tests.support.oauth2_server import CLIENT_SECRET, OAuth2Server
from tests.support.oidc_flow import browser, code_flow, oidc_app, oidc_client, opaque_sign_in
from tests.support.oidc_server import OIDCProviderServer, SharedTime

pytestmark = pytest.mark.realserver

ACCESS_TTL = 60
REDIRECT = "https://testserver/auth/callback"
SESSION_COOKIES = {"_auth", "_auth_refresh", "_auth_state", "_auth_csrf"}


def _serve(monkeypatch: pytest.MonkeyPatch, *, github_errors: bool) -> Iterator[OAuth2Server]:
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    server = OAuth2Server([REDIRECT], access_ttl=ACCESS_TTL, github_errors=github_errors)
    with server.running() as running:
        yield running


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[OAuth2Server]:
    """Refusals as GitHub answers them: HTTP 200 and its own error names."""
    yield from _serve(monkeypatch, github_errors=True)


@pytest.fixture(params=[True, False], ids=["github", "rfc6749"])
def oauth2(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[OAuth2Server]:
    """Refusals as GitHub answers them (HTTP 200), and as RFC 6749 §5.2 has them (400/401)."""
    yield from _serve(monkeypatch, github_errors=request.param)


def _kit_log(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "fastapi_authkit"]


def _refused_while_misconfigured(
    tc: TestClient, times: int, caplog: pytest.LogCaptureFixture
) -> list[tuple[int, str]]:
    """``times`` requests to a protected route while the provider refuses the client: each
    is a 503 that changes no cookie. Returns what the kit logged meanwhile."""
    cookies = dict(tc.cookies)
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="fastapi_authkit"):
        for _ in range(times):
            me = tc.get("/me")
            assert me.status_code == 503, me.text
            assert me.headers["retry-after"] == "5"
            assert "set-cookie" not in me.headers
    assert dict(tc.cookies) == cookies  # the session survives the operator's mistake
    log = _kit_log(caplog)
    assert not any("transiently" in message for _, message in log), log
    return [(level, message) for level, message in log if level > logging.DEBUG]


def test_github_bad_refresh_token_ends_the_session(
    github: OAuth2Server, caplog: pytest.LogCaptureFixture
) -> None:
    tc, _ = opaque_sign_in(github, REDIRECT)
    assert tc.get("/me").status_code == 200
    refresh_token = tc.cookies["_auth_refresh"]
    token = github.by_refresh(refresh_token)
    assert token is not None
    token.revoked = True  # expired, or revoked by the user in their GitHub settings
    # What GitHub answers for it: HTTP 200 and an error, never invalid_grant.
    answer = httpx2.post(
        f"{github.url}/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(github.client.client_id, CLIENT_SECRET),
    )
    assert answer.status_code == 200
    assert answer.json()["error"] == "bad_refresh_token"

    github.offset += ACCESS_TTL + 20  # the access token expired: a refresh is due
    with caplog.at_level(logging.INFO, logger="fastapi_authkit"):
        me = tc.get("/me")
    assert me.status_code == 401, me.text  # signed out, as for invalid_grant
    assert "retry-after" not in me.headers
    cleared = {c.split("=", 1)[0] for c in me.headers.get_list("set-cookie")}
    assert cleared >= SESSION_COOKIES
    assert not SESSION_COOKIES & set(tc.cookies.keys())
    assert _kit_log(caplog) == [
        (logging.INFO, "the identity provider ended the grant (bad_refresh_token)")
    ]
    # Nothing left to refresh with: the provider is not asked again.
    asked = github.token_requests
    assert tc.get("/me").status_code == 401
    assert github.token_requests == asked


def test_client_not_allowed_the_refresh_grant_is_one_error_per_run_and_keeps_the_session(
    oauth2: OAuth2Server, caplog: pytest.LogCaptureFixture
) -> None:
    tc, _ = opaque_sign_in(oauth2, REDIRECT)
    assert tc.get("/me").status_code == 200
    # The client's registration at the provider lost the refresh_token grant type.
    oauth2.client.grant_types = ("authorization_code",)
    oauth2.offset += ACCESS_TTL + 20
    asked = oauth2.token_requests
    log = _refused_while_misconfigured(tc, 4, caplog)
    assert oauth2.token_requests == asked + 4  # every request tries: a fix takes at once
    ((level, message),) = log
    assert level == logging.ERROR
    assert "refuses this app's client" in message
    status = 200 if oauth2.github_errors else 400
    assert f"HTTP {status} 'unauthorized_client'" in message
    assert "the grant types the provider allows the client" in message
    assert "refresh_token to refresh" in message

    # Fixed at the provider, no restart: the next request refreshes, the run ends.
    oauth2.client.grant_types = ("authorization_code", "refresh_token")
    refresh_token = tc.cookies["_auth_refresh"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fastapi_authkit"):
        me = tc.get("/me")
    assert me.status_code == 200, me.text
    assert tc.cookies["_auth_refresh"] != refresh_token
    assert _kit_log(caplog) == [
        (
            logging.WARNING,
            "the auth server accepts this app's client again after 4 refused refresh(es)",
        )
    ]
    # Broken again later: a new run, a new ERROR line.
    oauth2.client.grant_types = ("authorization_code",)
    oauth2.offset += ACCESS_TTL + 20
    log = _refused_while_misconfigured(tc, 3, caplog)
    assert [level for level, _ in log] == [logging.ERROR]


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[OIDCProviderServer]:
    server = OIDCProviderServer(
        tmp_path, redirect_uris=["https://app.test/auth/callback"], access_ttl=ACCESS_TTL
    )
    server.start()
    yield server
    server.stop()


def test_oidc_provider_wrong_client_secret_is_one_error_and_keeps_the_session(
    provider: OIDCProviderServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = SharedTime(provider)
    signed_in = browser(oidc_app(oidc_client(provider, clock), clock)[0])
    assert code_flow(signed_in, provider).status_code == 303
    # A deploy with a mistyped client secret (the same secret_key: the sessions carry over).
    mistyped = oidc_client(provider, clock, client_secret="kit-secret-mistyped-0123456789")
    tc = browser(oidc_app(mistyped, clock)[0])
    for name, value in signed_in.cookies.items():
        tc.cookies.set(name, value)
    assert tc.get("/me").status_code == 200
    clock.advance(ACCESS_TTL + 20)
    ((level, message),) = _refused_while_misconfigured(tc, 3, caplog)
    assert level == logging.ERROR
    assert "HTTP 401 'invalid_client'" in message
    assert "check client_id, client_secret and auth_method" in message
    # The refresh token was never consumed: the deploy rolled back (the browser's cookies,
    # unchanged, go to the app with the right secret), the session goes on.
    assert dict(signed_in.cookies) == dict(tc.cookies)
    me = signed_in.get("/me")
    assert me.status_code == 200, me.text
    assert me.json()["sub"] == "alice"
