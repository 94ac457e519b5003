"""fastapi_authkit.oidc without a provider process: key-set parsing and reload limits, the
token endpoint's answers and client authentication, discovery validation, the HTTP bounds,
and the sign-in routes' refusals. Small loopback HTTP servers stand in for the network
(tests/integration/identity_provider/test_oidc_provider.py runs the real provider)."""

from __future__ import annotations

import base64
import json
import logging
from functools import partial
from typing import Any
from urllib.parse import parse_qs

import anyio
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from jwt.algorithms import RSAAlgorithm
from starlette.testclient import TestClient

from fastapi_authkit import (
    AuthKitMiddleware,
    ConfigurationError,
    RefreshParam,
    create_issuer,
    create_refresh,
    create_store,
    errors,
)
from fastapi_authkit.dependencies import CurrentUser
from fastapi_authkit.errors import ProviderError
from fastapi_authkit.oidc import (
    AppUser,
    ClientRefusedError,
    GrantRefusedError,
    JWKSKeySet,
    OIDCClient,
    ProviderMetadata,
    default_user_state,
    parse_jwks,
    refresh_token_grant,
    token_result,
)
from fastapi_authkit.oidc.http import Answer, ProviderHTTP, check_url
from fastapi_authkit.oidc.signin import _local_path
from fastapi_authkit.oidc.transaction import Transaction, TransactionCodec, UsedStates
from fastapi_authkit.stores import MemoryStore
from fastapi_authkit.tokens import EXTERNAL_LEEWAY, TokenVerifier

from tests.support.clock import Clock
from tests.support.oidc_flow import StaticJSON, browser
from tests.support.oidc_server import ec_jwk, public_jwks, rsa_jwk
from tests.support.processes import free_port
from tests.support.tokens import SECRET_KEY, TOKEN_KEY

RS256 = frozenset({"RS256"})


def _private(kid: str) -> tuple[Any, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key, {**json.loads(RSAAlgorithm.to_jwk(key.public_key())), "kid": kid}


# --- parse_jwks ----------------------------------------------------------------------------


@pytest.mark.parametrize("document", [None, [], {"keys": "x"}, {"nokeys": []}, "text"])
def test_a_document_that_is_not_a_jwks_is_refused(document: Any) -> None:
    with pytest.raises(ProviderError, match="not a JSON object"):
        parse_jwks(document, RS256, 16)


def test_only_usable_signing_keys_are_held() -> None:
    good = public_jwks([rsa_jwk("good")])["keys"][0]
    no_alg = {k: v for k, v in good.items() if k not in ("alg", "key_ops")}
    document = {
        "keys": [
            "not-an-object",
            {**good, "kid": "enc", "use": "enc"},
            {**good, "kid": "wrap", "key_ops": ["wrapKey"]},
            {**good, "kid": "ops-odd", "key_ops": "verify"},
            {**good, "kid": 7},
            {**good, "kid": "hs", "alg": "HS256"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "oct"},
            {**good, "kid": "broken", "n": "!!"},
            public_jwks([ec_jwk("ec")])["keys"][0],  # ES256 is not configured
            good,
            {**good, "kid": "good", "n": "different"},  # a duplicate kid: the first wins
            {**no_alg, "kid": "inferred"},
            {**good, "kid": "verify-op", "key_ops": ["verify"]},
        ]
    }
    keys = parse_jwks(document, RS256, 16)
    assert list(keys) == ["good", "inferred", "verify-op"]
    assert all(alg == "RS256" for _, alg in keys.values())


def test_a_key_without_alg_that_fits_several_algorithms_is_ambiguous_and_skipped() -> None:
    key = public_jwks([rsa_jwk("k")])["keys"][0]
    del key["alg"]
    with pytest.raises(ProviderError, match="no usable signing key"):
        parse_jwks({"keys": [key]}, frozenset({"RS256", "PS256"}), 16)


def test_ec_and_okp_keys_take_their_curve_s_algorithm() -> None:
    ec_key = public_jwks([ec_jwk("ec")])["keys"][0]
    del ec_key["alg"]
    okp = {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(b"x" * 32).decode()[:43]}
    keys = parse_jwks({"keys": [ec_key, {**okp, "kid": "ed"}]}, frozenset({"ES256", "EdDSA"}), 16)
    assert {kid: alg for kid, (_, alg) in keys.items()} == {"ec": "ES256", "ed": "EdDSA"}


def test_the_key_set_is_bounded_in_size_in_the_provider_s_order() -> None:
    document = public_jwks([rsa_jwk(f"k{i}") for i in range(4)])
    assert list(parse_jwks(document, RS256, 2)) == ["k0", "k1"]


def test_a_kid_less_key_is_held_only_alone_and_private_halves_are_dropped() -> None:
    private = rsa_jwk("x")
    del private["kid"]
    keys = parse_jwks({"keys": [private]}, RS256, 16)
    ((key, _),) = keys.values()
    assert list(keys) == [None]
    assert not hasattr(key, "private_numbers")  # the public half only
    both = parse_jwks({"keys": [private, rsa_jwk("named")]}, RS256, 16)
    assert list(both) == ["named"]


# --- JWKSKeySet ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"algorithms": ["HS256"]}, "not an asymmetric"),
        ({"algorithms": []}, "non-empty list"),
        ({"algorithms": "RS256"}, "non-empty list"),
        ({"algorithms": ["none"]}, "not accepted"),
        ({"max_keys": 0}, "max_keys"),
        ({"jwks": {"keys": []}}, "jwks: "),
    ],
)
def test_key_set_configuration_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        JWKSKeySet("https://id.example/jwks", **options)


def test_key_set_needs_a_uri_and_only_a_key_set_carries_algorithms() -> None:
    with pytest.raises(ConfigurationError, match="jwks_uri"):
        JWKSKeySet(42)  # type: ignore[arg-type]
    keys = JWKSKeySet("https://id.example/jwks", jwks=public_jwks([rsa_jwk("a")]))
    assert "https://id.example/jwks" in repr(keys)
    assert "keys=1" in repr(keys)
    with pytest.raises(ConfigurationError, match="carries its own algorithms"):
        create_store(secret_key=SECRET_KEY, token_key=keys, algorithms=["RS256"])


def test_tokens_signed_by_held_keys_verify_and_unknown_kids_reload_with_a_rate_limit(
    clock: Clock,
) -> None:
    private, public = _private("k1")
    other, other_public = _private("k2")
    with StaticJSON({"keys": [public]}).running() as server:
        keys = JWKSKeySet(server.url, min_reload_interval=30, clock=clock)
        verifier = TokenVerifier(key=keys, leeway=0)
        token = jwt.encode(
            {"sub": "a", "exp": int(clock()) + 60}, private, "RS256", headers={"kid": "k1"}
        )
        assert anyio.run(partial(verifier.reload_keys_for, token, trusted=False))
        assert verifier.verify(token, clock())["sub"] == "a"
        assert len(server.requests) == 1
        # A kid held needs no reload; a forged kid reloads once, then not for 30 s.
        assert not anyio.run(partial(verifier.reload_keys_for, token, trusted=False))
        clock.advance(31)
        forged = jwt.encode({"sub": "a", "exp": 1}, other, "RS256", headers={"kid": "zz"})
        for _ in range(5):
            assert not anyio.run(partial(verifier.reload_keys_for, forged, trusted=False))
        assert len(server.requests) == 2
        # The provider publishes a new key: a token from the token endpoint reloads at once
        # (after the one-second floor), a client's token waits for the interval.
        server.body = {"keys": [other_public, public]}
        clock.advance(2)
        new = jwt.encode(
            {"sub": "b", "exp": int(clock()) + 60}, other, "RS256", headers={"kid": "k2"}
        )
        assert anyio.run(partial(verifier.reload_keys_for, new, trusted=True))
        assert keys.key_ids == ("k2", "k1")
        # Hostile headers never reach the network.
        int_kid = ".".join(
            base64.urlsafe_b64encode(part).decode().rstrip("=")
            for part in (b'{"alg":"RS256","kid":5}', b"{}", b"sig")
        )
        for junk in ("x" * 9000, "not.a.jwt", int_kid):
            assert not anyio.run(partial(verifier.reload_keys_for, junk, trusted=True))
        assert len(server.requests) == 3


def test_a_token_endpoint_kid_reloads_at_once_however_recent_the_last_reload(
    clock: Clock,
) -> None:
    """The provider rotates its key in the second after our last JWKS fetch: the sign-in
    or refresh that brings the new kid reloads at once (it used to wait out a one-second
    floor, and a sign-in just after a rotation failed). A kid still missing after that
    reload is not fetched again within the second."""
    first, second = rsa_jwk("k1"), rsa_jwk("k2")
    with StaticJSON(public_jwks([first])).running() as server:
        keys = JWKSKeySet(server.url, clock=clock)
        anyio.run(keys.load)
        server.body = public_jwks([second, first])  # rotated, no time passes
        assert anyio.run(partial(keys.reload, "k2", trusted=True))
        assert keys.key_ids == ("k2", "k1")
        for _ in range(3):  # a kid the provider has not published yet: one fetch
            assert not anyio.run(partial(keys.reload, "k3", trusted=True))
        assert len(server.requests) == 3
        clock.advance(1.5)
        assert not anyio.run(partial(keys.reload, "k3", trusted=True))
        assert len(server.requests) == 4


def test_a_provider_that_is_down_keeps_the_keys_held(clock: Clock) -> None:
    keys = JWKSKeySet(
        f"http://127.0.0.1:{free_port()}/jwks", jwks=public_jwks([rsa_jwk("a")]), clock=clock
    )
    assert not anyio.run(partial(keys.reload, "b", trusted=True))
    assert keys.key_ids == ("a",)
    with pytest.raises(ProviderError):
        anyio.run(keys.load)
    with StaticJSON({"error": "x"}, status=500).running() as server:
        keys = JWKSKeySet(server.url, clock=clock)
        with pytest.raises(ProviderError, match="HTTP 500"):
            anyio.run(keys.load)


def test_cookie_token_with_a_new_kid_reloads_the_key_set_in_the_middleware(clock: Clock) -> None:
    """Another worker verified a token with a key this one does not hold yet: the request
    reloads the key set and is signed in, not anonymous."""
    private, public = _private("k1")
    with StaticJSON({"keys": []}).running() as server:
        keys = JWKSKeySet(server.url, clock=clock)
        store = create_store(secret_key=SECRET_KEY, token_key=keys, clock=clock)
        app = FastAPI()
        app.add_middleware(AuthKitMiddleware, store=store)

        @app.get("/me")
        async def me(user: CurrentUser) -> Any:
            return user

        token = jwt.encode(
            {"sub": "alice", "exp": int(clock()) + 60}, private, "RS256", headers={"kid": "k1"}
        )
        tc = browser(app)
        tc.cookies.set("_auth", token)
        # The state cookie of that session (an identity needs it): only the key is missing.
        tc.cookies.set("_auth_state", store.state_codec.dumps("sid-0", None, token, (token,)))
        assert tc.get("/me").status_code == 401  # the JWKS holds nothing usable yet
        server.body = {"keys": [public]}
        assert tc.get("/me").status_code == 401  # a client's kid: rate-limited
        clock.advance(11)
        response = tc.get("/me")
        assert response.status_code == 200
        assert response.json() == {"sub": "alice", "exp": int(clock()) - 11 + 60}


def test_default_leeway_is_ten_seconds_for_external_tokens_and_zero_for_the_issuer() -> None:
    assert create_store(secret_key=SECRET_KEY, token_key=TOKEN_KEY).verifier.leeway == 10
    assert EXTERNAL_LEEWAY == 10
    issuer = create_issuer(backend=MemoryStore(), signing_key=TOKEN_KEY)
    assert create_store(secret_key=SECRET_KEY, token_issuer=issuer).verifier.leeway == 0


# --- the token endpoint ------------------------------------------------------------------------


def test_token_answers_map_to_refresh_results() -> None:
    ok = token_result(
        Answer(
            200,
            {
                "access_token": "at",
                "token_type": "Bearer",
                "refresh_token": "rt",
                "expires_in": 300,
                "refresh_expires_in": 0,  # Keycloak's "does not expire"
            },
        )
    )
    assert (ok.is_success, ok.new_auth_token, ok.new_refresh_token) == (True, "at", "rt")
    assert (ok.new_auth_token_expire_in, ok.new_refresh_token_expires_in) == (300, None)
    plain = token_result(Answer(200, {"access_token": "at", "expires_in": "soon"}))
    assert (plain.new_refresh_token, plain.new_auth_token_expire_in) == (None, None)
    assert plain.new_auth_token_type == "Bearer"
    # A rotated refresh token without an access token is kept by the kit (issue 16).
    rotated_only = token_result(Answer(200, {"refresh_token": "rt2"}))
    assert (rotated_only.new_auth_token, rotated_only.new_refresh_token) == (None, "rt2")
    for status in (400, 401):
        assert not token_result(Answer(status, {"error": "invalid_grant"})).is_success


@pytest.mark.parametrize(
    ("body", "lifetime"),
    [
        ({"refresh_token_expires_in": 15897600}, 15897600),  # GitHub's: six months
        ({"refresh_expires_in": 1800}, 1800),  # Keycloak's
        ({"refresh_expires_in": 1800, "refresh_token_expires_in": 900}, 900),  # the shorter
        ({"refresh_expires_in": 0, "refresh_token_expires_in": 900}, 900),
        ({"refresh_token_expires_in": "soon"}, None),
        ({}, None),
    ],
)
def test_the_refresh_tokens_stated_lifetime_is_taken_from_either_name(
    body: dict[str, Any], lifetime: int | None
) -> None:
    answer = Answer(200, {"access_token": "at", "refresh_token": "rt", **body})
    assert token_result(answer).new_refresh_token_expires_in == lifetime


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (Answer(200, {"token_type": "Bearer"}), "without an access_token"),
        (Answer(200, None), "without an OAuth error"),
        (Answer(401, {"error": "invalid_client", "error_description": "bad"}), "invalid_client"),
        (Answer(400, {"error": "invalid_scope"}), "invalid_scope"),
        (Answer(503, None), "HTTP 503"),
        (Answer(500, {"error": "server_error"}), "server_error"),
    ],
)
def test_token_answers_that_say_nothing_about_the_grant_raise(answer: Answer, message: str) -> None:
    with pytest.raises(ProviderError, match=message):
        token_result(answer)


def test_an_oauth_error_is_a_refusal_whatever_the_status() -> None:
    # GitHub answers a bad or used code, and a wrong client secret, with HTTP 200.
    assert not token_result(Answer(200, {"error": "invalid_grant"})).is_success
    assert not token_result(Answer(403, {"error": "invalid_grant"})).is_success
    for status in (200, 400):
        with pytest.raises(GrantRefusedError, match="'bad_verification_code' \\(expired\\)") as got:
            token_result(
                Answer(status, {"error": "bad_verification_code", "error_description": "expired"})
            )
        assert got.value.error == "bad_verification_code"
    for error in ("incorrect_client_credentials", "redirect_uri_mismatch", "unauthorized_client"):
        with pytest.raises(ClientRefusedError, match="check client_id"):
            token_result(Answer(200, {"error": error, "access_token": "at"}))
    # An error that says "not now" stays transient, whatever its status.
    for answer in (
        Answer(200, {"error": "temporarily_unavailable"}),
        Answer(400, {"error": "server_error"}),
        Answer(503, {"error": "invalid_grant"}),
        Answer(502, {"error": "bad_verification_code"}),
    ):
        with pytest.raises(ProviderError) as transient:
            token_result(answer)
        assert type(transient.value) is ProviderError


def test_a_refused_refresh_token_ends_the_grant_and_client_errors_say_what_to_check() -> None:
    # GitHub answers a bad or expired refresh token with HTTP 200 and bad_refresh_token.
    for status in (200, 400):
        assert not token_result(Answer(status, {"error": "bad_refresh_token"})).is_success
    assert type(_raised(Answer(502, {"error": "bad_refresh_token"}))) is ProviderError
    checks = {
        "invalid_client": "check client_id, client_secret and auth_method",
        "incorrect_client_credentials": "check client_id, client_secret and auth_method",
        "unauthorized_client": "allows the client (authorization_code; refresh_token",
        "unsupported_grant_type": "allows the client (authorization_code; refresh_token",
        "invalid_scope": "check client_id and scope=",
        "invalid_target": "check client_id and resource=",
        "redirect_uri_mismatch": "the redirect URI registered",
    }
    for error, check in checks.items():
        refused = _raised(Answer(400, {"error": error}))
        assert isinstance(refused, ClientRefusedError), error
        assert refused.error == error
        assert check in str(refused)
    # Public from the errors module too, for a hand-written refresh callback to raise.
    assert ClientRefusedError is errors.ClientRefusedError


def _raised(answer: Answer) -> ProviderError:
    with pytest.raises(ProviderError) as raised:
        token_result(answer)
    return raised.value


def test_refresh_grant_ends_the_grant_on_a_refusal_it_does_not_know(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Any other OAuth error below 500 refuses this refresh token: the grant is over (the
    session would otherwise answer 503 for ever); a WARNING the first time per code."""
    refused = {"error": "invalid_request", "error_description": "Value passed was invalid"}
    with StaticJSON(refused, status=400).running() as server:
        grant = refresh_token_grant(f"{server.url}/token", client_id="app")
        param = RefreshParam(auth_token=None, refresh_token="rt1")
        with caplog.at_level(logging.INFO, logger="fastapi_authkit"):
            for _ in range(3):
                assert not anyio.run(grant, param).is_success
            server.body = {"error": "bad_refresh_token"}
            server.status = 200
            assert not anyio.run(grant, param).is_success
    levels = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in levels] == [logging.WARNING] + [logging.INFO] * 3
    assert "HTTP 400 'invalid_request' (Value passed was invalid)" in levels[0][1]
    assert "taken as the end of the grant" in levels[0][1]
    assert "check client_id, client_secret, scope= and resource=" in levels[0][1]
    assert levels[3][1] == "the identity provider ended the grant (bad_refresh_token)"


def test_refresh_grant_raises_a_client_refusal_for_the_kit_to_report() -> None:
    with StaticJSON({"error": "invalid_client"}, status=401).running() as server:
        grant = refresh_token_grant(f"{server.url}/token", client_id="app", client_secret="x")
        with pytest.raises(ClientRefusedError, match="HTTP 401 'invalid_client'"):
            anyio.run(grant, RefreshParam(auth_token=None, refresh_token="rt1"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"client_id": ""}, "client_id"),
        ({"client_id": "c", "auth_method": "private_key_jwt"}, "auth_method"),
        ({"client_id": "c", "auth_method": "none", "client_secret": "s"}, "public client"),
        ({"client_id": "c", "auth_method": "client_secret_post"}, "public client"),
    ],
)
def test_grant_configuration_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        refresh_token_grant("https://id.example/token", **options)


def test_grant_refuses_a_plain_http_token_endpoint_off_loopback() -> None:
    with pytest.raises(ConfigurationError, match="plain http"):
        refresh_token_grant("http://id.example/token", client_id="c")


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post", "none"])
def test_refresh_grant_sends_the_standard_request(method: str) -> None:
    secret = None if method == "none" else "s3cr:t é"
    with StaticJSON({"access_token": "at", "refresh_token": "rt2"}).running() as server:
        grant = refresh_token_grant(
            f"{server.url}/token",
            client_id="my app",
            client_secret=secret,
            auth_method=method,  # type: ignore[arg-type]
            scope="openid api",
            resource="https://api.test",
        )
        result = anyio.run(grant, RefreshParam(auth_token=None, refresh_token="rt1"))
        assert result.new_refresh_token == "rt2"
        ((verb, path, headers, body),) = server.requests
    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
    assert (verb, path) == ("POST", "/token")
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    expected = {
        "grant_type": "refresh_token",
        "refresh_token": "rt1",
        "scope": "openid api",
        "resource": "https://api.test",
    }
    if method == "client_secret_basic":
        # RFC 6749 2.3.1: id and secret form-urlencoded, then Basic.
        decoded = base64.b64decode(headers["authorization"].removeprefix("Basic ")).decode()
        assert decoded == "my+app:s3cr%3At+%C3%A9"
        assert form == expected
    elif method == "client_secret_post":
        assert "authorization" not in headers
        assert form == {**expected, "client_id": "my app", "client_secret": "s3cr:t é"}
    else:
        assert "authorization" not in headers
        assert form == {**expected, "client_id": "my app"}


def test_refresh_grant_revokes_with_the_standard_request() -> None:
    """RFC 7009 §2.1: token and token_type_hint, with the token endpoint's client
    authentication, to the revocation endpoint; 200 is revoked."""
    with StaticJSON(None).running() as server:
        grant = refresh_token_grant(
            f"{server.url}/token",
            client_id="app",
            client_secret="secret",
            revocation_endpoint=f"{server.url}/revoke",
        )
        assert create_refresh(interval=60, refresh_api_callback=grant).revoke == grant.revoke
        anyio.run(grant.revoke, "rt1")
        ((verb, path, headers, body),) = server.requests
    assert (verb, path) == ("POST", "/revoke")
    assert base64.b64decode(headers["authorization"].removeprefix("Basic ")) == b"app:secret"
    assert parse_qs(body.decode()) == {"token": ["rt1"], "token_type_hint": ["refresh_token"]}


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (503, {"error": "temporarily_unavailable"}, "HTTP 503 'temporarily_unavailable'"),
        (400, {"error": "unsupported_token_type"}, "HTTP 400 'unsupported_token_type'"),
        (500, None, "HTTP 500 without an OAuth error"),
    ],
)
def test_revocation_refusals_raise_provider_errors(status: int, body: Any, message: str) -> None:
    with StaticJSON(body, status=status).running() as server:
        grant = refresh_token_grant(
            f"{server.url}/token", client_id="app", revocation_endpoint=f"{server.url}/revoke"
        )
        with pytest.raises(ProviderError, match=message):
            anyio.run(grant.revoke, "rt1")


def test_a_grant_without_a_revocation_endpoint_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    grant = refresh_token_grant("https://id.example/token", client_id="app")
    with caplog.at_level(logging.WARNING, logger="fastapi_authkit"):
        anyio.run(grant.revoke, "rt1")  # no request: nowhere to send it
        anyio.run(grant.revoke, "rt2")
    (record,) = caplog.records
    assert "has no revocation_endpoint (RFC 7009)" in record.getMessage()
    with pytest.raises(ConfigurationError, match="plain http"):
        refresh_token_grant(
            "https://id.example/token", client_id="app", revocation_endpoint="http://id.example/r"
        )


# --- HTTP bounds and discovery -----------------------------------------------------------------


def test_provider_http_failures_are_provider_errors() -> None:
    http = ProviderHTTP(None, timeout=2.0)
    with pytest.raises(ProviderError, match="ConnectError"):
        anyio.run(http.get, f"http://127.0.0.1:{free_port()}/x")
    with StaticJSON(None, raw=b"x" * 300_000).running() as server:
        with pytest.raises(ProviderError, match="larger than"):
            anyio.run(http.get, server.url)
        server.raw = b"<html>not json</html>"
        assert anyio.run(http.get, server.url) == Answer(200, None)
        server.raw = b"[" * 100_000  # deeply nested: not JSON we can read, not a crash
        assert anyio.run(http.get, server.url) == Answer(200, None)
    with pytest.raises(ConfigurationError, match=r"httpx2\.AsyncClient"):
        ProviderHTTP(object(), timeout=1.0)  # type: ignore[arg-type]


def test_provider_http_times_out() -> None:
    import socket

    with socket.socket() as listener:  # accepts, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(ProviderError, match="timed out"):
            anyio.run(ProviderHTTP(None, timeout=0.3).get, f"http://127.0.0.1:{port}/")


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://id.example", True),
        ("http://127.0.0.1:8080", True),
        ("http://localhost", True),
        ("http://[::1]:9000", True),
        ("http://id.example", False),
        ("ftp://id.example", False),
        ("/relative", False),
        (None, False),
    ],
)
def test_provider_urls_must_be_https_off_loopback(url: Any, allowed: bool) -> None:
    if allowed:
        assert check_url("issuer", url, allow_http=False) == url
    else:
        with pytest.raises(ConfigurationError):
            check_url("issuer", url, allow_http=False)
    if isinstance(url, str) and url.startswith("http://"):
        assert check_url("issuer", url, allow_http=True) == url


ISSUER = "https://id.example"
DOCUMENT = {
    "issuer": ISSUER,
    "jwks_uri": f"{ISSUER}/jwks",
    "token_endpoint": f"{ISSUER}/token",
    "authorization_endpoint": f"{ISSUER}/auth",
}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "not a JSON object"),
        ({**DOCUMENT, "issuer": "https://id.example/"}, "identical"),
        ({**DOCUMENT, "issuer": "https://evil.example"}, "identical"),
        ({k: v for k, v in DOCUMENT.items() if k != "jwks_uri"}, "no jwks_uri"),
        ({k: v for k, v in DOCUMENT.items() if k != "token_endpoint"}, "no token_endpoint"),
        ({**DOCUMENT, "jwks_uri": "http://evil.example/jwks"}, "plain http"),
        ({**DOCUMENT, "token_endpoint": 5}, "URL string"),
    ],
)
def test_discovery_documents_that_cannot_be_trusted_are_refused(
    document: Any, message: str
) -> None:
    with pytest.raises(ProviderError, match=message):
        ProviderMetadata.from_document(document, issuer=ISSUER)


def test_discovery_takes_the_endpoints() -> None:
    metadata = ProviderMetadata.from_document(
        {**DOCUMENT, "revocation_endpoint": None}, issuer=ISSUER
    )
    assert metadata.jwks_uri == f"{ISSUER}/jwks"
    assert metadata.revocation_endpoint is None


# --- OIDCClient and the sign-in routes -----------------------------------------------------------


def _client(issuer: str, **options: Any) -> OIDCClient:
    return OIDCClient(issuer=issuer, client_id="kit", client_secret="s", audience="api", **options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scope": " "}, "scope"),
        ({"user_state": "name"}, "user_state"),
        ({"redirect_uri": "http://app.example/cb"}, "plain http"),
    ],
)
def test_oidc_client_configuration_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        _client("https://id.example", **options)


def test_default_user_state_keeps_who_it_is() -> None:
    claims = {"sub": "a", "name": "A", "email": "a@x", "nonce": "n", "aud": "kit"}
    assert default_user_state(claims) == {"sub": "a", "name": "A", "email": "a@x"}
    assert repr(_client("https://id.example")) == (
        "OIDCClient(issuer='https://id.example', client_id='kit')"
    )


def _sign_in_app(oidc: OIDCClient, clock: Clock) -> Any:
    store = create_store(secret_key=SECRET_KEY, clock=clock, **oidc.store_options())
    app = FastAPI()
    app.add_middleware(AuthKitMiddleware, store=store)
    app.include_router(oidc.router())
    return browser(app)


def test_sign_in_routes_answer_clearly_when_the_provider_is_down(clock: Clock) -> None:
    tc = _sign_in_app(_client(f"http://127.0.0.1:{free_port()}"), clock)
    response = tc.get("/auth/login", follow_redirects=False)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"


def test_sign_in_without_an_authorization_endpoint_is_a_502(clock: Clock) -> None:
    with StaticJSON(None).running() as server:
        server.body = {k: v.replace(ISSUER, server.url) for k, v in DOCUMENT.items()}
        del server.body["authorization_endpoint"]
        tc = _sign_in_app(_client(server.url), clock)
        assert tc.get("/auth/login", follow_redirects=False).status_code == 502


def _start(tc: Any, next_path: str = "/me") -> str:
    """Our /auth/login: the state of the new transaction (its cookie is in ``tc``)."""
    start = tc.get("/auth/login", params={"next": next_path}, follow_redirects=False)
    assert start.status_code == 302, start.text
    return parse_qs(start.headers["location"].split("?", 1)[1])["state"][0]


def _token_posts(server: StaticJSON) -> int:
    return sum(1 for verb, path, _, _ in server.requests if (verb, path) == ("POST", "/token"))


def test_callback_refusals_are_clear_400s(clock: Clock) -> None:
    with StaticJSON(None).running() as server:
        server.body = {k: v.replace(ISSUER, server.url) for k, v in DOCUMENT.items()}
        tc = _sign_in_app(_client(server.url), clock)
        start = tc.get("/auth/login", params={"next": "//evil.example"}, follow_redirects=False)
        assert start.status_code == 302
        assert start.headers["location"].startswith(f"{server.url}/auth?")
        query = parse_qs(start.headers["location"].split("?", 1)[1])
        assert query["code_challenge_method"] == ["S256"]
        assert query["redirect_uri"] == ["https://testserver/auth/callback"]
        # No scopes_supported in discovery: offline_access is asked for, with consent.
        assert query["scope"] == ["openid offline_access"]
        assert query["prompt"] == ["consent"]
        state = query["state"][0]
        refused = tc.get("/auth/callback", params={"error": "access_denied"})
        assert refused.status_code == 400
        assert "access_denied" in refused.json()["detail"]
        for params in ({"code": "c", "state": "other"}, {"state": _start(tc)}):
            assert tc.get("/auth/callback", params=params).status_code == 400
        # The token endpoint refuses the code (reused, expired): start again.
        server.body = {"error": "invalid_grant"}
        server.status = 400
        response = tc.get("/auth/callback", params={"code": "c", "state": _start(tc)})
        assert response.status_code == 400
        assert "start again" in response.json()["detail"]
        # It answers garbage: 503; a token that does not verify here: 502.
        server.status, server.raw = 502, b"<html>bad gateway</html>"
        response = tc.get("/auth/callback", params={"code": "c", "state": _start(tc)})
        assert response.status_code == 503
        server.status, server.raw, server.body = 200, None, {"access_token": "not-a-jwt"}
        assert (
            tc.get("/auth/callback", params={"code": "c", "state": _start(tc)}).status_code == 502
        )
        server.body = {"access_token": "not-a-jwt", "id_token": 5}
        assert (
            tc.get("/auth/callback", params={"code": "c", "state": _start(tc)}).status_code == 502
        )
        state = _start(tc)
        tc.cookies.clear()
        assert tc.get("/auth/callback", params={"code": "c", "state": state}).status_code == 400


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/me", "/me"),
        ("/a?b=c", "/a?b=c"),
        (None, "/"),
        ("", "/"),
        ("https://evil.example", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("/a b", "/"),
        ("/\x7f", "/"),
    ],
)
def test_next_is_a_local_path_or_home(value: Any, expected: str) -> None:
    assert _local_path(value) == expected


@pytest.mark.parametrize("value", [None, "", "a.b.c", "a..c.d", "a.b.c.gA", "!!", "A" * 30])
def test_a_malformed_transaction_cookie_is_no_transaction(value: Any) -> None:
    assert TransactionCodec([SECRET_KEY.encode()]).open(value, "_auth_oidc", 1000.0) is None


# --- issue 24: a sign-in that cannot be planted, refresh tokens, clear errors ----------------


class FakeProvider:
    """A loopback provider with routes: discovery, a JWKS, and a token endpoint answering
    ``token_answer(form)`` (``gate`` holds it back); counts token-endpoint calls."""

    def __init__(self, **discovery: Any) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.private, public = _private("k1")
        self.token_posts: list[dict[str, str]] = []
        self.status = 200
        self.token_answer: Any = lambda form: {"error": "invalid_grant"}
        self.gate = threading.Event()
        self.gate.set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/jwks":
                    self._send(200, {"keys": [public]})
                else:
                    self._send(200, {**outer.document, **discovery})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                outer.token_posts.append(form)
                outer.gate.wait(10)
                answer = outer.token_answer(form)
                self._send(outer.status if "error" in answer else 200, answer)

            def _send(self, status: int, body: Any) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.document = {
            "issuer": self.url,
            "jwks_uri": f"{self.url}/jwks",
            "token_endpoint": f"{self.url}/token",
            "authorization_endpoint": f"{self.url}/auth",
        }
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeProvider:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private, "RS256", headers={"kid": "k1"})

    def tokens(self, clock: Clock, nonce: str, **id_claims: Any) -> dict[str, Any]:
        """A token answer for ``nonce``: an access token for alice, an ID token (alice
        unless ``id_claims`` say otherwise; ``id_token=None`` leaves it out)."""
        now = int(clock())
        access = self.sign({"sub": "alice", "aud": "api", "iss": self.url, "exp": now + 300})
        answer: dict[str, Any] = {"access_token": access, "refresh_token": "rt1"}
        claims = {"sub": "alice", "aud": "kit", "iss": self.url, "exp": now + 300, "iat": now}
        claims.update(nonce=nonce, **id_claims)
        if "id_token" not in id_claims:
            answer["id_token"] = self.sign({k: v for k, v in claims.items() if v is not None})
        return answer


def _begin(tc: Any) -> tuple[str, str, str]:
    """Our /auth/login: the new transaction's state, nonce and sealed cookie value."""
    start = tc.get("/auth/login", params={"next": "/me"}, follow_redirects=False)
    assert start.status_code == 302, start.text
    query = parse_qs(start.headers["location"].split("?", 1)[1])
    return query["state"][0], query["nonce"][0], tc.cookies["__Host-_auth_oidc"]


def test_the_transaction_cookie_is_sealed_host_only_and_read_by_the_strict_parser(
    clock: Clock,
) -> None:
    with FakeProvider() as provider:
        oidc = _client(provider.url)
        store = create_store(
            secret_key=SECRET_KEY, clock=clock, cookie_domain="app.test", **oidc.store_options()
        )
        app = FastAPI()
        app.add_middleware(AuthKitMiddleware, store=store)
        app.include_router(oidc.router())
        tc = TestClient(app, base_url="https://app.test")
        start = tc.get("/auth/login", params={"next": "/me"}, follow_redirects=False)
        (set_cookie,) = start.headers.get_list("set-cookie")
        assert set_cookie.startswith("__Host-_auth_oidc=")
        assert "Domain" not in set_cookie  # host-only even with a cookie_domain
        for attribute in ("; Secure", "; HttpOnly", "Max-Age=600", "Path=/;"):
            assert attribute in set_cookie
        query = parse_qs(start.headers["location"].split("?", 1)[1])
        value = tc.cookies["__Host-_auth_oidc"]
        for secret in (query["state"][0], query["nonce"][0], "/me"):
            assert secret not in value  # the browser cannot read it
        codec = TransactionCodec([SECRET_KEY.encode()])
        opened = codec.open(value, "__Host-_auth_oidc", clock())
        assert opened is not None
        assert opened.state == query["state"][0]
        assert codec.open(value, "_auth_oidc", clock()) is None  # bound to its name
        assert codec.open(value, "__Host-_auth_oidc", clock() + 601) is None  # expired


def _forged_cookie_headers(state: str, real: str) -> list[str]:
    """Transaction cookies the server never issued, or issued to someone else and tossed."""
    foreign = Transaction.start("/me", 0).__class__(state, "n", "v" * 43, "/me", 0.0)
    other_key = TransactionCodec([b"another-secret-key-0123456789abcdef0123"])
    return [
        "__Host-_auth_oidc=" + ".".join((state, "nonce", "v" * 43, "L21l")),  # the old format
        "__Host-_auth_oidc=" + other_key.seal(foreign, "__Host-_auth_oidc"),
        "_auth_oidc=" + real,  # not the __Host- cookie (set over http, or by a sibling)
        f"__Host-_auth_oidc={real}; __Host-_auth_oidc={real}",  # a second copy tossed in
    ]


def test_a_forged_or_tossed_transaction_cookie_never_reaches_the_token_endpoint(
    clock: Clock,
) -> None:
    with FakeProvider() as provider:
        tc = _sign_in_app(_client(provider.url), clock)
        state, nonce, real = _begin(tc)
        provider.token_answer = lambda form: provider.tokens(clock, nonce)
        tc.cookies.clear()
        for cookie in _forged_cookie_headers(state, real):
            response = tc.get(
                "/auth/callback", params={"code": "c", "state": state}, headers={"cookie": cookie}
            )
            assert response.status_code == 400, cookie
            assert "_auth" not in tc.cookies
        assert provider.token_posts == []
        # Control: the real cookie, once, signs in.
        response = tc.get(
            "/auth/callback",
            params={"code": "c", "state": state},
            headers={"cookie": f"__Host-_auth_oidc={real}"},
            follow_redirects=False,
        )
        assert response.status_code == 303, response.text
        assert len(provider.token_posts) == 1


def test_a_replayed_transaction_never_reaches_the_token_endpoint_twice(clock: Clock) -> None:
    with FakeProvider() as provider:
        tc = _sign_in_app(_client(provider.url), clock)
        state, _, real = _begin(tc)
        provider.status = 400  # the code is refused (the provider's own single use)
        first = tc.get("/auth/callback", params={"code": "c", "state": state})
        assert first.status_code == 400
        # The cookie is deleted on every outcome...
        assert any(
            c.startswith("__Host-_auth_oidc=;") for c in first.headers.get_list("set-cookie")
        )
        for _ in range(3):  # ...and a copy kept and replayed is refused before the provider
            replay = tc.get(
                "/auth/callback",
                params={"code": "c", "state": state},
                headers={"cookie": f"__Host-_auth_oidc={real}"},
            )
            assert replay.status_code == 400
            assert "already used" in replay.json()["detail"]
        assert len(provider.token_posts) == 1


def test_used_states_are_remembered_until_they_expire_and_bounded() -> None:
    used = UsedStates(max_entries=3)
    assert used.claim("a", 100.0, 0.0)
    assert not used.claim("a", 100.0, 50.0)
    for name in "bcd":
        assert used.claim(name, 100.0, 1.0)
    assert len(used) == 3  # "a", the oldest, was forgotten to stay bounded
    assert used.claim("e", 300.0, 150.0)  # the others expired meanwhile
    assert len(used) == 1


@pytest.mark.parametrize(
    ("id_claims", "message"),
    [
        ({"id_token": None}, "without an id_token"),
        ({"aud": ["kit", "other"]}, "several audiences and no azp"),
        ({"aud": ["kit", "other"], "azp": "other"}, "issued to another client"),
        ({"azp": "other"}, "issued to another client"),
        ({"sub": "bob", "name": "Bob"}, "sub is not the access token's"),
    ],
    ids=["no-id-token", "several-aud-no-azp", "azp-other", "azp-other-one-aud", "sub-bob"],
)
def test_id_tokens_that_do_not_bind_the_sign_in_are_refused(
    clock: Clock, caplog: pytest.LogCaptureFixture, id_claims: dict[str, Any], message: str
) -> None:
    with FakeProvider() as provider:
        tc = _sign_in_app(_client(provider.url), clock)
        state, nonce, _ = _begin(tc)
        provider.token_answer = lambda form: provider.tokens(clock, nonce, **id_claims)
        with caplog.at_level(logging.ERROR, logger="fastapi_authkit"):
            response = tc.get("/auth/callback", params={"code": "c", "state": state})
        assert response.status_code == 502
        assert "_auth" not in tc.cookies
        assert message in caplog.text
        # Control: several audiences with azp = our client id signs in.
        state, nonce, _ = _begin(tc)
        provider.token_answer = lambda form: provider.tokens(
            clock, nonce, aud=["kit", "other"], azp="kit"
        )
        signed_in = tc.get(
            "/auth/callback", params={"code": "c", "state": state}, follow_redirects=False
        )
        assert signed_in.status_code == 303
        assert "_auth" in tc.cookies


def test_a_sign_in_without_a_refresh_token_is_refused_unless_none_is_expected(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeProvider() as provider:

        def no_refresh(nonce: str) -> Any:
            return lambda form: {
                k: v for k, v in provider.tokens(clock, nonce).items() if k != "refresh_token"
            }

        tc = _sign_in_app(_client(provider.url), clock)
        state, nonce, _ = _begin(tc)
        provider.token_answer = no_refresh(nonce)
        with caplog.at_level(logging.ERROR, logger="fastapi_authkit"):
            response = tc.get("/auth/callback", params={"code": "c", "state": state})
        assert response.status_code == 502
        assert "no refresh token" in response.json()["detail"]
        assert "refresh_tokens=False" in caplog.text
        tc = _sign_in_app(_client(provider.url, refresh_tokens=False), clock)
        start = tc.get("/auth/login", follow_redirects=False)
        query = parse_qs(start.headers["location"].split("?", 1)[1])
        assert query["scope"] == ["openid"]
        assert "prompt" not in query
        provider.token_answer = no_refresh(query["nonce"][0])
        response = tc.get(
            "/auth/callback",
            params={"code": "c", "state": query["state"][0]},
            follow_redirects=False,
        )
        assert response.status_code == 303


@pytest.mark.parametrize(
    ("discovery", "options", "scope", "prompt"),
    [
        (
            {"scopes_supported": ["openid", "offline_access"]},
            {},
            "openid offline_access",
            "consent",
        ),
        ({"scopes_supported": ["openid", "email"]}, {}, "openid", None),
        ({"prompt_values_supported": ["none", "login"]}, {}, "openid offline_access", None),
        (
            {},
            {"authorization_params": {"prompt": None, "access_type": "offline"}},
            "openid offline_access",
            None,
        ),
        (
            {},
            {"authorization_params": {"prompt": "login consent"}},
            "openid offline_access",
            "login consent",
        ),
        ({}, {"scope": "openid offline_access email"}, "openid offline_access email", "consent"),
    ],
)
def test_the_authorization_request_asks_for_offline_access_as_discovery_allows(
    clock: Clock, discovery: dict[str, Any], options: dict[str, Any], scope: str, prompt: Any
) -> None:
    with FakeProvider(**discovery) as provider:
        tc = _sign_in_app(_client(provider.url, **options), clock)
        start = tc.get("/auth/login", follow_redirects=False)
        query = parse_qs(start.headers["location"].split("?", 1)[1])
        assert query["scope"] == [scope]
        assert query.get("prompt") == ([prompt] if prompt else None)
        extra = options.get("authorization_params", {})
        if "access_type" in extra:
            assert query["access_type"] == ["offline"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"authorization_params": {"state": "x"}}, "cannot set 'state'"),
        ({"authorization_params": {"scope": "x"}}, "pass scope="),
        ({"authorization_params": {"prompt": 1}}, "strings"),
        ({"refresh_tokens": "yes"}, "refresh_tokens"),
        ({"max_concurrent_signins": 0}, "max_concurrent_signins"),
    ],
)
def test_sign_in_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        _client("https://id.example", **options)


@pytest.mark.parametrize(
    ("status", "userinfo", "message"),
    [
        (200, {"sub": "bob", "email": "bob@example.test"}, "userinfo answer's sub is not the"),
        (
            200,
            {"error": "invalid_token", "error_description": "expired"},
            "refused the access token it was just given: HTTP 200 'invalid_token' (expired)",
        ),
        (401, {"error": "invalid_token"}, "pass fetch_userinfo=False"),
    ],
    ids=["sub-bob", "error-200", "error-401"],
)
def test_social_sign_in_refuses_a_userinfo_answer_from_discovery_that_is_not_the_users(
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
    status: int,
    userinfo: dict[str, Any],
    message: str,
) -> None:
    seen: list[Any] = []

    def on_identity(identity: Any) -> AppUser:
        seen.append(identity)
        return AppUser(identity.subject)

    api = StaticJSON(userinfo, status=status)
    with api.running(), FakeProvider(userinfo_endpoint=f"{api.url}/userinfo") as provider:
        issuer = create_issuer(backend=MemoryStore(), signing_key=SECRET_KEY, clock=clock)
        oidc = OIDCClient(
            issuer=provider.url,
            client_id="kit",
            client_secret="s",
            session=issuer,
            on_identity=on_identity,
        )
        app = FastAPI()
        app.add_middleware(
            AuthKitMiddleware,
            store=create_store(secret_key=SECRET_KEY, token_issuer=issuer, clock=clock),
        )
        app.include_router(oidc.router())
        tc = browser(app)
        state, nonce, _ = _begin(tc)
        answer = provider.tokens(clock, nonce)
        provider.token_answer = lambda form: answer
        with caplog.at_level(logging.ERROR, logger="fastapi_authkit"):
            response = tc.get("/auth/callback", params={"code": "c", "state": state})
        assert response.status_code == 502
        assert "retry-after" not in response.headers
        assert "_auth" not in tc.cookies
        assert seen == []
        assert message in caplog.text
        # Asked at discovery's endpoint, with the access token just issued.
        ((method, path, headers, _),) = api.requests
        assert (method, path) == ("GET", "/userinfo")
        assert headers["authorization"] == f"Bearer {answer['access_token']}"


@pytest.mark.parametrize(
    ("error", "check"),
    [
        ("invalid_client", "check client_id, client_secret and auth_method"),
        ("unauthorized_client", "check client_id and the grant types"),
        ("unauthorized", "check client_id, client_secret and auth_method"),
    ],
)
def test_a_client_refused_by_the_provider_is_an_operator_error_not_a_retry(
    clock: Clock, caplog: pytest.LogCaptureFixture, error: str, check: str
) -> None:
    with FakeProvider() as provider:
        provider.status = 401 if error == "invalid_client" else 400
        provider.token_answer = lambda form: {"error": error}
        tc = _sign_in_app(_client(provider.url), clock)
        state, _, _ = _begin(tc)
        with caplog.at_level(logging.WARNING, logger="fastapi_authkit"):
            response = tc.get("/auth/callback", params={"code": "c", "state": state})
        assert response.status_code == 502
        assert "retry-after" not in response.headers
        assert "misconfigured" in response.json()["detail"]
        (record,) = [r for r in caplog.records if r.name == "fastapi_authkit"]
        assert record.levelno == logging.ERROR
        assert check in record.getMessage()
        # The refresh grant raises it (the session is kept); the kit's refresh reports it,
        # once per run of refusals, not the grant on every call.
        grant = refresh_token_grant(f"{provider.url}/token", client_id="kit", client_secret="s")
        caplog.clear()
        with (
            caplog.at_level(logging.INFO, logger="fastapi_authkit"),
            pytest.raises(ClientRefusedError, match=check),
        ):
            anyio.run(grant, RefreshParam(auth_token=None, refresh_token="rt"))
        assert caplog.records == []


def test_code_exchanges_in_flight_are_capped(clock: Clock) -> None:
    import httpx2

    with FakeProvider() as provider:
        oidc = _client(provider.url, max_concurrent_signins=2)
        store = create_store(secret_key=SECRET_KEY, clock=clock, **oidc.store_options())
        app = FastAPI()
        app.add_middleware(AuthKitMiddleware, store=store)
        app.include_router(oidc.router())
        tc = browser(app)
        transactions = [_begin(tc) for _ in range(3)]
        provider.status = 400  # invalid_grant, once they are let through
        provider.gate.clear()  # the token endpoint holds every answer back
        statuses: list[int] = []

        async def callback(state: str, cookie: str) -> None:
            async with httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=app), base_url="https://testserver"
            ) as client:
                response = await client.get(
                    "/auth/callback",
                    params={"code": "c", "state": state},
                    headers={"cookie": f"__Host-_auth_oidc={cookie}"},
                )
                statuses.append(response.status_code)
                if response.status_code == 503:
                    provider.gate.set()  # the capped one answered at once: let the others go

        async def main() -> None:
            async with anyio.create_task_group() as tg:
                for state, _, cookie in transactions:
                    tg.start_soon(callback, state, cookie)

        anyio.run(main)
        assert sorted(statuses) == [400, 400, 503]
        assert len(provider.token_posts) == 2


def test_a_key_set_url_as_token_key_points_at_jwks_key_set() -> None:
    for algorithms in (["RS256"], ["HS256"]):
        with pytest.raises(ConfigurationError, match=r"JWKSKeySet\(url"):
            create_store(
                secret_key=SECRET_KEY,
                token_key="https://id.example/.well-known/jwks.json",
                algorithms=algorithms,
            )


def test_tokens_issued_during_the_code_exchange_are_checked_against_the_time_after_it(
    clock: Clock,
) -> None:
    """The provider issues its tokens while the exchange runs; checked against the time the
    callback began, a token issued in a later second was "issued in the future" (a 502 for
    an honest sign-in, seen under load with a provider on the same machine)."""
    with FakeProvider() as provider:
        tc = _sign_in_app(_client(provider.url), clock)
        state, nonce, _ = _begin(tc)

        def slow(form: dict[str, str]) -> dict[str, Any]:
            clock.advance(60)  # the exchange took time: issued after the callback began
            return provider.tokens(clock, nonce)

        provider.token_answer = slow
        response = tc.get(
            "/auth/callback", params={"code": "c", "state": state}, follow_redirects=False
        )
        assert response.status_code == 303, response.text
        assert "_auth" in tc.cookies
