"""SECURITY.md, "JWT validation": what authenticates through the real app, and what never does.

Every case sends the hostile token to the real FastAPI app through raw ASGI messages, in the
access cookie (with a refresh cookie beside it, so a token wrongly taken for "expired" would
show up as a refresh-callback call) and, where the transport matters, as a Bearer header
(``auth_type="header"``). Every reply is checked for "no 500" by the drivers in helpers.py.

Where a case cannot reach a request: a public key (PEM, reformatted PEM, JWK) configured as
an HS256 secret, and a configuration mixing HS with RS/ES, are refused by ``create_store``
itself, so they are tested as a ``ConfigurationError``; the attack they enable (an HMAC
forged with the public key) is then sent to a correctly configured RS256 app. "Fast" is
shown as bounded work (oversized input never reaches the JWT parser), not with timings.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import re
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi import FastAPI
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from fastapi_authkit import ConfigurationError, RefreshParam, RefreshResult
from fastapi_authkit.dependencies import AuthStateDep

from .helpers import (
    LONG_KEY,
    OTHER_KEY,
    Reply,
    b64url,
    call,
    claims_at,
    forge,
    security_app,
    segment,
    unsigned,
)
from tests.support.apps import Recorder, build_store, state_cookie
from tests.support.clock import Clock
from tests.support.tokens import TOKEN_KEY, make_token

REFRESH = "refresh-0"


@pytest.fixture
def cookie_app(clock: Clock, recorder: Recorder) -> FastAPI:
    return security_app(build_store(clock, recorder))


@pytest.fixture
def bearer_app(clock: Clock) -> FastAPI:
    return security_app(build_store(clock, None, auth_type="header"))


def session_cookies(app: FastAPI, token: str | bytes, *, refresh: bool = True) -> bytes:
    """A Cookie header with the token in the access cookie and the state cookie of its
    session (an identity needs both); with ``refresh``, beside the refresh cookie, so that a
    refresh wrongly attempted for it would happen, else as a session without a refresh
    token (the state cookie bound to the access token)."""
    raw = token if isinstance(token, bytes) else token.encode("utf-8", "surrogatepass")
    store = app.user_middleware[0].kwargs["store"]
    access = raw.decode("latin-1")
    cookie = b"_auth=" + raw
    if refresh:
        state = state_cookie(store, REFRESH, access)
        return cookie + f"; _auth_refresh={REFRESH}; _auth_state={state}".encode()
    return cookie + f"; _auth_state={state_cookie(store, access, access)}".encode()


def via_cookie(app: FastAPI, token: str | bytes, *, refresh: bool = True) -> Reply:
    """The token in the access cookie, with its session's cookies (see session_cookies)."""
    cookie = session_cookies(app, token, refresh=refresh)
    return call(app, "GET", "/whoami", [(b"cookie", cookie)])


def via_bearer(app: FastAPI, token: str | bytes) -> Reply:
    raw = token if isinstance(token, bytes) else token.encode("utf-8", "surrogatepass")
    return call(app, "GET", "/whoami", [(b"authorization", b"Bearer " + raw)])


def assert_anonymous(reply: Reply) -> None:
    assert reply.status == 200, reply
    assert reply.json()["auth"] is False, reply.json()
    assert reply.json()["token"] is None


def assert_rejected_everywhere(
    token: str | bytes, cookie_app: FastAPI, bearer_app: FastAPI, recorder: Recorder
) -> None:
    """Anonymous in the cookie (no refresh attempted for it) and as a Bearer token, and the
    protected route answers 401."""
    assert_anonymous(via_cookie(cookie_app, token))
    assert recorder.calls == [], "the refresh callback was called for a token that never verified"
    raw = token if isinstance(token, bytes) else token.encode("utf-8", "surrogatepass")
    me = call(cookie_app, "GET", "/me", [(b"cookie", session_cookies(cookie_app, raw))])
    assert me.status == 401
    assert me.header_values(b"www-authenticate") == [b"Bearer"]
    assert_anonymous(via_bearer(bearer_app, token))
    assert call(bearer_app, "GET", "/me", [(b"authorization", b"Bearer " + raw)]).status == 401
    assert recorder.calls == []


def test_control_a_correctly_signed_token_authenticates(
    clock: Clock, cookie_app: FastAPI, bearer_app: FastAPI, recorder: Recorder
) -> None:
    # The control for every rejection below: the same path accepts a good token.
    for token in (make_token(clock), forge({"alg": "HS256", "typ": "JWT"}, claims_at(clock()))):
        assert via_cookie(cookie_app, token).json() == {
            "auth": True,
            "token": token,
            "sub": "alice",
            "unavailable": False,
        }
        assert via_bearer(bearer_app, token).json()["token"] == token
    assert recorder.calls == []


def test_claims_a_route_sees_are_exactly_what_the_key_signed(clock: Clock) -> None:
    # Promise 1 from the other side: whatever one request does to its copy of the claims,
    # the next request carrying the same token sees what the key signed, nothing else.
    app = security_app(build_store(clock, None))

    @app.get("/escalate")
    async def escalate(state: AuthStateDep) -> dict[str, bool]:
        assert state.claims is not None
        state.claims["roles"].append("admin")
        state.claims["org"]["id"] = "other-org"
        state.claims["sub"] = "mallory"
        return {"ok": True}

    @app.get("/claims")
    async def claims(state: AuthStateDep) -> dict[str, Any]:
        return state.claims or {}

    token = make_token(clock, roles=["user"], org={"id": "acme"})
    cookie = [(b"cookie", session_cookies(app, token, refresh=False))]
    signed = call(app, "GET", "/claims", cookie).json()
    assert call(app, "GET", "/escalate", cookie).json() == {"ok": True}
    assert call(app, "GET", "/claims", cookie).json() == signed


# --- alg: none, never taken from the token -------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "nOnE", "NONE"])
@pytest.mark.parametrize("signature", ["empty", "hmac-of-configured-key", "garbage"])
@pytest.mark.parametrize("expired", [False, True], ids=["fresh", "expired"])
def test_alg_none_is_unauthenticated_and_never_refreshed(
    clock: Clock,
    cookie_app: FastAPI,
    bearer_app: FastAPI,
    recorder: Recorder,
    alg: str,
    signature: str,
    expired: bool,
) -> None:
    # Expired variants matter most: were "alg: none" taken for an authentic but expired
    # token, the refresh callback would mint a real session out of it.
    payload = claims_at(clock() - 1000 if expired else clock())
    header = {"alg": alg, "typ": "JWT"}
    if signature == "empty":
        token = unsigned(header, payload)
    elif signature == "garbage":
        token = unsigned(header, payload, b64url(b"not a signature"))
    else:
        token = forge(header, payload)
    assert_rejected_everywhere(token, cookie_app, bearer_app, recorder)


@pytest.mark.parametrize(
    "header",
    [{"typ": "JWT"}, {"alg": None}, {"alg": ""}, {"alg": "hs256"}, {"alg": ["HS256"]}],
    ids=["no-alg", "alg-null", "alg-empty", "alg-lowercase", "alg-list"],
)
def test_missing_or_odd_alg_is_unauthenticated(
    clock: Clock,
    cookie_app: FastAPI,
    bearer_app: FastAPI,
    recorder: Recorder,
    header: dict[str, Any],
) -> None:
    token = forge(header, claims_at(clock() - 1000))
    assert_rejected_everywhere(token, cookie_app, bearer_app, recorder)


# --- algorithms PyJWT allows but the configuration does not --------------------------------------


@pytest.mark.parametrize(
    ("alg", "digest"),
    [("HS512", hashlib.sha512), ("HS384", hashlib.sha384), ("RS256", hashlib.sha256)],
)
@pytest.mark.parametrize("key", [TOKEN_KEY, LONG_KEY], ids=["configured-key", "long-key"])
def test_unconfigured_algorithm_is_rejected(
    clock: Clock,
    cookie_app: FastAPI,
    bearer_app: FastAPI,
    recorder: Recorder,
    alg: str,
    digest: Callable[..., Any],
    key: str,
) -> None:
    # HS256 is configured. The HS512 token is HMAC'd with the very key the app holds.
    for payload in (claims_at(clock()), claims_at(clock() - 1000)):
        token = forge({"alg": alg}, payload, key=key, digest=digest)
        assert_rejected_everywhere(token, cookie_app, bearer_app, recorder)


def test_hs512_configured_app_accepts_hs512_and_rejects_hs256(clock: Clock) -> None:
    # The mirror image: the one configured algorithm is the only one accepted.
    app = security_app(build_store(clock, None, token_key=LONG_KEY, algorithms=["HS512"]))
    good = forge({"alg": "HS512"}, claims_at(clock()), key=LONG_KEY, digest=hashlib.sha512)
    assert via_cookie(app, good, refresh=False).json()["auth"] is True
    bad = forge({"alg": "HS256"}, claims_at(clock()), key=LONG_KEY)
    assert_anonymous(via_cookie(app, bad, refresh=False))


# --- public keys as HMAC secrets, mixed configurations --------------------------------------------


# Generated once at import: the parametrized cases below are named after them.
RSA_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ATTACKER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_PRIVATE = ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def rsa_private() -> rsa.RSAPrivateKey:
    return RSA_PRIVATE


@pytest.fixture
def attacker_rsa() -> rsa.RSAPrivateKey:
    return ATTACKER_RSA


def spki_pem(private_key: Any) -> bytes:
    return bytes(
        private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def public_key_variants(rsa_key: rsa.RSAPrivateKey, ec_key: Any) -> dict[str, str | bytes]:
    pem = spki_pem(rsa_key)
    return {
        "rsa-pem": pem,
        "rsa-pem-str": pem.decode(),
        "rsa-pem-crlf": pem.replace(b"\n", b"\r\n"),
        "rsa-pem-indented": b"\n".join(b"    " + line for line in pem.splitlines()),
        "rsa-pem-leading-trailing-whitespace": b" \t\n" + pem + b"\n\n \t",
        "rsa-pem-no-final-newline": pem.rstrip(b"\n"),
        "rsa-pkcs1-pem": rsa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
        ),
        "rsa-openssh": rsa_key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
        "rsa-jwk-json": RSAAlgorithm.to_jwk(rsa_key.public_key()),
        "rsa-jwk-json-reindented": json.dumps(
            json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key())), indent=4
        ),
        "ec-pem": spki_pem(ec_key),
        "ec-pem-crlf": spki_pem(ec_key).replace(b"\n", b"\r\n"),
        "ec-jwk-json": ECAlgorithm.to_jwk(ec_key.public_key()),
    }


PUBLIC_KEYS = public_key_variants(RSA_PRIVATE, EC_PRIVATE)


@pytest.mark.parametrize("form", ["single-key", "kid-mapping"])
@pytest.mark.parametrize("key", list(PUBLIC_KEYS.values()), ids=list(PUBLIC_KEYS))
def test_public_key_as_hs256_secret_is_a_configuration_error(
    clock: Clock, key: str | bytes, form: str
) -> None:
    token_key: Any = key if form == "single-key" else {"k1": key}
    with pytest.raises(ConfigurationError):
        build_store(clock, None, token_key=token_key, algorithms=["HS256"])


def test_hmac_forged_with_the_public_key_is_rejected_by_an_rs256_app(
    clock: Clock, rsa_private: rsa.RSAPrivateKey
) -> None:
    pem = spki_pem(rsa_private)
    app = security_app(build_store(clock, None, token_key=pem, algorithms=["RS256"]))
    genuine = make_token(clock, key=rsa_private, algorithm="RS256")
    assert via_cookie(app, genuine, refresh=False).json()["auth"] is True  # the control
    for variant in PUBLIC_KEYS.values():
        secret = variant.encode() if isinstance(variant, str) else variant
        for alg, digest in (("HS256", hashlib.sha256), ("RS256", hashlib.sha256)):
            token = forge({"alg": alg}, claims_at(clock()), key=secret, digest=digest)
            assert_anonymous(via_cookie(app, token, refresh=False))


@pytest.mark.parametrize(
    "algorithms", [["HS256", "RS256"], ["RS256", "HS256"], ["HS512", "ES256"], ["ES256", "HS256"]]
)
def test_mixing_hmac_and_asymmetric_algorithms_is_a_configuration_error(
    clock: Clock, rsa_private: rsa.RSAPrivateKey, algorithms: list[str]
) -> None:
    for key in (LONG_KEY, spki_pem(rsa_private)):
        with pytest.raises(ConfigurationError):
            build_store(clock, None, token_key=key, algorithms=algorithms)
    mixed = {"h": (LONG_KEY, "HS256"), "r": (spki_pem(rsa_private), "RS256")}
    with pytest.raises(ConfigurationError):
        build_store(clock, None, token_key=mixed)


# --- kid: a plain dictionary lookup; jku/jwk/x5u/x5c ignored -------------------------------------

RETIRED = "retired-token-key-0123456789abcdef01234567"
OVERLAP = "overlap-token-key-0123456789abcdef012345678"
CURRENT = "current-token-key-0123456789abcdef012345678"


@pytest.fixture
def rotating_app(clock: Clock, recorder: Recorder) -> FastAPI:
    return security_app(
        build_store(clock, recorder, token_key={"2024-02": OVERLAP, "2024-03": CURRENT})
    )


@pytest.fixture
def file_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every file the process opens while the test runs."""
    opened: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def spy_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def spy_os_open(path: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(path))
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    return opened


HOSTILE_KIDS = [
    "../../dev/null",
    "/dev/null",
    "../../../../../../etc/passwd",
    "' OR '1'='1",
    "2024-03'; DROP TABLE keys; --",
    "2024-03 ",
    "2024-03\x00",
    "http://attacker.example/key",
    "__class__",
    "",
]


@pytest.mark.parametrize("kid", HOSTILE_KIDS)
@pytest.mark.parametrize("key", [b"", CURRENT, RETIRED], ids=["empty-key", "current", "retired"])
def test_hostile_kid_is_rejected_by_a_plain_lookup(
    clock: Clock,
    rotating_app: FastAPI,
    recorder: Recorder,
    file_opens: list[str],
    kid: str,
    key: str | bytes,
) -> None:
    # An empty HMAC key is what "/dev/null" would give if the kid ever reached a file.
    for payload in (claims_at(clock()), claims_at(clock() - 1000)):
        token = forge({"alg": "HS256", "kid": kid}, payload, key=key)
        assert_anonymous(via_cookie(rotating_app, token))
    assert recorder.calls == []
    assert file_opens == [], "a kid reached the file system"


@pytest.mark.parametrize("kid", [1, 2024.03, True, None, ["2024-03"], {"2024-03": CURRENT}])
def test_non_string_kid_is_rejected(
    clock: Clock, rotating_app: FastAPI, recorder: Recorder, kid: object
) -> None:
    token = forge({"alg": "HS256", "kid": kid}, claims_at(clock()), key=CURRENT)
    assert_anonymous(via_cookie(rotating_app, token))
    assert recorder.calls == []


def test_retired_key_is_rejected_current_and_overlap_keys_are_accepted(
    clock: Clock, rotating_app: FastAPI, recorder: Recorder
) -> None:
    current = forge({"alg": "HS256", "kid": "2024-03"}, claims_at(clock()), key=CURRENT)
    overlap = forge({"alg": "HS256", "kid": "2024-02"}, claims_at(clock()), key=OVERLAP)
    assert via_cookie(rotating_app, current).json()["auth"] is True
    assert via_cookie(rotating_app, overlap).json()["auth"] is True
    retired = forge({"alg": "HS256", "kid": "2024-01"}, claims_at(clock()), key=RETIRED)
    assert_anonymous(via_cookie(rotating_app, retired))
    # A configured kid whose token was signed by another configured key: the kid decides.
    swapped = forge({"alg": "HS256", "kid": "2024-03"}, claims_at(clock()), key=OVERLAP)
    assert_anonymous(via_cookie(rotating_app, swapped))
    no_kid = forge({"alg": "HS256"}, claims_at(clock()), key=CURRENT)
    assert_anonymous(via_cookie(rotating_app, no_kid))
    assert recorder.calls == []


def test_jku_jwk_x5u_x5c_are_ignored_and_nothing_calls_out(
    clock: Clock,
    cookie_app: FastAPI,
    bearer_app: FastAPI,
    recorder: Recorder,
    no_network: list[str],
    attacker_rsa: rsa.RSAPrivateKey,
) -> None:
    attacker_jwk = json.loads(RSAAlgorithm.to_jwk(attacker_rsa.public_key()))
    remote = {
        "jku": "https://attacker.example/jwks.json",
        "x5u": "https://attacker.example/cert.pem",
        "jwk": attacker_jwk,
        "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"],
    }
    # Signed by the configured key: the extra headers change nothing.
    good = forge({"alg": "HS256", **remote}, claims_at(clock()))
    assert via_cookie(cookie_app, good).json()["auth"] is True
    # Signed by the attacker, who points at their own key in every possible way.
    for token in (
        forge({"alg": "HS256", **remote}, claims_at(clock()), key=OTHER_KEY),
        jwt.encode(claims_at(clock()), attacker_rsa, algorithm="RS256", headers=remote),
        jwt.encode(claims_at(clock() - 1000), attacker_rsa, algorithm="RS256", headers=remote),
    ):
        assert_rejected_everywhere(token, cookie_app, bearer_app, recorder)
    assert no_network == []


def test_embedded_jwk_never_verifies_for_an_rs256_app(
    clock: Clock,
    no_network: list[str],
    rsa_private: rsa.RSAPrivateKey,
    attacker_rsa: rsa.RSAPrivateKey,
) -> None:
    app = security_app(
        build_store(clock, None, token_key=spki_pem(rsa_private), algorithms=["RS256"])
    )
    headers = {
        "jwk": json.loads(RSAAlgorithm.to_jwk(attacker_rsa.public_key())),
        "jku": "https://attacker.example/jwks.json",
        "x5u": "https://attacker.example/cert.pem",
    }
    forged = jwt.encode(claims_at(clock()), attacker_rsa, algorithm="RS256", headers=headers)
    assert_anonymous(via_cookie(app, forged, refresh=False))
    genuine = jwt.encode(claims_at(clock()), rsa_private, algorithm="RS256", headers=headers)
    assert via_cookie(app, genuine, refresh=False).json()["auth"] is True
    assert no_network == []


# --- crit, aud, iss -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"crit": ["urn:example:unknown"], "urn:example:unknown": True},
        {"crit": ["b64"], "b64": False},
        {"crit": ["exp"]},
        {"crit": []},
        {"crit": "urn:example:unknown"},
    ],
)
def test_unknown_crit_header_is_rejected(
    clock: Clock,
    cookie_app: FastAPI,
    bearer_app: FastAPI,
    recorder: Recorder,
    extra: dict[str, Any],
) -> None:
    for payload in (claims_at(clock()), claims_at(clock() - 1000)):
        token = forge({"alg": "HS256", **extra}, payload)
        assert_rejected_everywhere(token, cookie_app, bearer_app, recorder)


AUD = "https://api.example"
ISS = "https://a.example"


@pytest.fixture
def aud_iss_app(clock: Clock, recorder: Recorder) -> FastAPI:
    return security_app(build_store(clock, recorder, audience=AUD, issuer=ISS))


def test_exact_aud_and_iss_are_accepted(
    clock: Clock, aud_iss_app: FastAPI, recorder: Recorder
) -> None:
    for aud in (AUD, ["https://other.example", AUD]):
        token = forge({"alg": "HS256"}, claims_at(clock(), aud=aud, iss=ISS))
        assert via_cookie(aud_iss_app, token).json()["auth"] is True
    assert recorder.calls == []


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": ISS},
        {"iss": ISS, "aud": "https://api"},
        {"iss": ISS, "aud": "https://api.example.evil"},
        {"iss": ISS, "aud": "HTTPS://API.EXAMPLE"},
        {"iss": ISS, "aud": ""},
        {"iss": ISS, "aud": ["https://other.example"]},
        {"iss": ISS, "aud": 1},
        {"aud": AUD},
        {"aud": AUD, "iss": "https://a"},
        {"aud": AUD, "iss": "http"},
        {"aud": AUD, "iss": "https://a.example/"},
        {"aud": AUD, "iss": "HTTPS://A.EXAMPLE"},
        {"aud": AUD, "iss": "https://a.example.evil"},
        {"aud": AUD, "iss": ""},
        {"aud": AUD, "iss": [ISS]},
        {"aud": AUD, "iss": None},
    ],
    ids=lambda c: json.dumps(c),
)
def test_wrong_or_missing_aud_or_iss_is_rejected(
    clock: Clock, aud_iss_app: FastAPI, recorder: Recorder, claims: dict[str, Any]
) -> None:
    for when in (clock(), clock() - 1000):
        token = forge({"alg": "HS256"}, claims_at(when, **claims))
        assert_anonymous(via_cookie(aud_iss_app, token))
    assert recorder.calls == []


@pytest.mark.parametrize("presented", ["http", "https", "https:/", "s://a", "a", ""])
def test_partial_iss_never_matches(clock: Clock, presented: str) -> None:
    # The PyJWT partial-iss advisory: "http" is a substring of the issuer "https://a".
    app = security_app(build_store(clock, None, issuer="https://a"))
    assert via_cookie(app, make_token(clock, iss="https://a"), refresh=False).json()["auth"]
    assert_anonymous(via_cookie(app, make_token(clock, iss=presented), refresh=False))


# --- time claims ----------------------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_future_nbf_or_iat_beyond_leeway_is_rejected_within_it_accepted(
    clock: Clock, recorder: Recorder, claim: str
) -> None:
    app = security_app(build_store(clock, recorder, leeway=30))
    within = forge({"alg": "HS256"}, claims_at(clock(), **{claim: int(clock()) + 30}))
    beyond = forge({"alg": "HS256"}, claims_at(clock(), **{claim: int(clock()) + 31}))
    far = forge({"alg": "HS256"}, claims_at(clock(), **{claim: int(clock()) + 10**6}))
    assert via_cookie(app, within).json()["auth"] is True
    assert_anonymous(via_cookie(app, beyond))
    assert_anonymous(via_cookie(app, far))
    assert recorder.calls == []  # a future token is not an expired one: never refreshed


def test_expired_within_leeway_is_accepted_beyond_it_is_not(clock: Clock) -> None:
    app = security_app(build_store(clock, None, leeway=30))
    token = make_token(clock, ttl=60)
    clock.advance(60 + 29)
    assert via_cookie(app, token, refresh=False).json()["auth"] is True
    me = call(app, "GET", "/me", [(b"cookie", session_cookies(app, token, refresh=False))])
    assert me.status == 200
    clock.advance(1)
    assert_anonymous(via_cookie(app, token, refresh=False))


def test_expired_within_leeway_keeps_working_while_refresh_fails(
    clock: Clock, recorder: Recorder
) -> None:
    # Within leeway the token is still accepted, so a failing refresh changes nothing.
    async def down(param: RefreshParam) -> RefreshResult:
        raise ConnectionError("auth server down")

    recorder.behaviour = down
    app = security_app(build_store(clock, recorder, leeway=30))
    token = make_token(clock, ttl=60)
    clock.advance(75)
    reply = via_cookie(app, token)
    assert reply.json()["auth"] is True
    assert reply.json()["sub"] == "alice"
    assert reply.set_cookies() == {}
    assert len(recorder.calls) == 1


@pytest.mark.parametrize("ahead", [86_400 + 1, 10 * 365 * 86_400, 2**40])
def test_exp_beyond_max_token_lifetime_is_rejected(
    clock: Clock,
    cookie_app: FastAPI,
    bearer_app: FastAPI,
    recorder: Recorder,
    ahead: int,
) -> None:
    token = forge({"alg": "HS256"}, {"sub": "alice", "exp": int(clock()) + ahead})
    assert_rejected_everywhere(token, cookie_app, bearer_app, recorder)
    # Just inside the default one day: accepted.
    inside = forge({"alg": "HS256"}, {"sub": "alice", "exp": int(clock()) + 86_400})
    assert via_cookie(cookie_app, inside).json()["auth"] is True


def test_configured_max_token_lifetime(clock: Clock) -> None:
    app = security_app(build_store(clock, None, max_token_lifetime=600))
    assert via_cookie(app, make_token(clock, ttl=600), refresh=False).json()["auth"] is True
    assert_anonymous(via_cookie(app, make_token(clock, ttl=601), refresh=False))


@pytest.mark.parametrize(
    "payload",
    [
        b'{"sub": "alice"}',
        b'{"sub": "alice", "exp": null}',
        b'{"sub": "alice", "exp": true}',
        b'{"sub": "alice", "exp": "1800000300"}',
        b'{"sub": "alice", "exp": [1800000300]}',
    ],
    ids=["no-exp", "null", "bool", "string", "list"],
)
def test_exp_is_required_and_must_be_a_number(
    cookie_app: FastAPI, bearer_app: FastAPI, recorder: Recorder, payload: bytes
) -> None:
    # PyJWT accepts a token without exp unless told otherwise; the kit must not.
    token = forge({"alg": "HS256"}, payload)
    assert_rejected_everywhere(token, cookie_app, bearer_app, recorder)


def test_typ_is_enforced_when_configured(clock: Clock) -> None:
    # PyJWT does not check typ; token_typ makes the kit do it (RFC 8725 explicit typing).
    app = security_app(build_store(clock, None, token_typ="at+jwt"))
    typed = forge({"alg": "HS256", "typ": "at+jwt"}, claims_at(clock()))
    assert via_cookie(app, typed, refresh=False).json()["auth"] is True
    for header in ({"alg": "HS256"}, {"alg": "HS256", "typ": "JWT"}, {"alg": "HS256", "typ": 1}):
        assert_anonymous(via_cookie(app, forge(header, claims_at(clock())), refresh=False))


# --- malformed tokens: unauthenticated, and bounded work ------------------------------------------


def _malformed(now: float) -> dict[str, str | bytes]:
    good = make_token(now)
    header, payload, signature = good.split(".")
    hs = {"alg": "HS256"}
    exp = int(now) + 300
    # Nesting deep enough to exhaust a recursive JSON parser, small enough for one cookie.
    nested = b'{"exp": %d, "x": ' % exp + b"[" * 1200 + b"]" * 1200 + b"}"
    return {
        "empty": "",
        "one-segment": "abc",
        "two-segments": f"{header}.{payload}",
        "four-segments": f"{good}.{signature}",
        "five-segments": f"{good}.{payload}.{signature}",
        "only-dots": "...",
        "bad-base64-header": f"!!!.{payload}.{signature}",
        "bad-base64-payload": f"{header}.%%%.{signature}",
        "bad-base64-signature": f"{header}.{payload}.***",
        "base64-with-padding": f"{header}==.{payload}.{signature}",
        "header-8KiB": forge({"alg": "HS256", "x": "a" * 8192}, claims_at(now)),
        "payload-8KiB": forge(hs, claims_at(now, x="a" * 8192)),
        "header-not-json": forge(b"not json", claims_at(now)),
        "header-array": forge(b'["HS256"]', claims_at(now)),
        "payload-array": forge(hs, b'[{"sub": "alice", "exp": %d}]' % exp),
        "payload-string": forge(hs, b'"alice"'),
        "payload-number": forge(hs, b"1900000000"),
        "payload-null": forge(hs, b"null"),
        "payload-nested-json": forge(hs, nested),
        "header-nested-json": forge(
            b'{"alg": "HS256", "x": ' + b"[" * 1200 + b"]" * 1200 + b"}", claims_at(now)
        ),
        "exp-NaN": forge(hs, b'{"sub": "alice", "exp": NaN}'),
        "exp-Infinity": forge(hs, b'{"sub": "alice", "exp": Infinity}'),
        "exp-1e999": forge(hs, b'{"sub": "alice", "exp": 1e999}'),
        "exp--1e999": forge(hs, b'{"sub": "alice", "exp": -1e999}'),
        "iat-1e999": forge(hs, b'{"sub": "alice", "exp": %d, "iat": 1e999}' % exp),
        "nbf-NaN": forge(hs, b'{"sub": "alice", "exp": %d, "nbf": NaN}' % exp),
        "iat--1e999": forge(hs, b'{"sub": "alice", "exp": %d, "iat": -1e999}' % exp),
        "payload-non-utf8": forge(hs, b'{"sub": "\xff\xfe", "exp": %d}' % exp),
        "header-non-utf8": forge(b'{"alg": "HS256", "x": "\xc3\x28"}', claims_at(now)),
        "raw-latin1-bytes": good.encode() + b"\xe9",
        "raw-invalid-utf8": b"\xc3\x28." + good.encode(),
        "raw-control-chars": header.encode()
        + b"\x00."
        + payload.encode()
        + b"\x7f."
        + signature.encode(),
        "signature-of-other-key": make_token(now, key=OTHER_KEY),
        "tampered-payload": f"{header}.{segment(claims_at(now, sub='mallory'))}.{signature}",
    }


MALFORMED = _malformed(1_800_000_000.0)


@pytest.mark.parametrize("token", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_token_is_unauthenticated(
    cookie_app: FastAPI, bearer_app: FastAPI, recorder: Recorder, token: str | bytes
) -> None:
    assert_anonymous(via_cookie(cookie_app, token, refresh=False))
    raw = token if isinstance(token, bytes) else token.encode()
    cookie = session_cookies(cookie_app, raw, refresh=False)
    me = call(cookie_app, "GET", "/me", [(b"cookie", cookie)])
    assert me.status == 401
    assert_anonymous(via_bearer(bearer_app, token))
    assert recorder.calls == []


COOKIE_OCTETS = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]+")
COOKIE_SAFE = [
    name
    for name, token in MALFORMED.items()
    if isinstance(token, str) and len(token) < 4000 and COOKIE_OCTETS.fullmatch(token)
]


@pytest.mark.parametrize("name", COOKIE_SAFE)
def test_malformed_cookie_safe_token_beside_a_refresh_cookie_is_never_refreshed(
    cookie_app: FastAPI, recorder: Recorder, name: str
) -> None:
    # A value the cookie reader accepts but the verifier refuses is a forgery, not an
    # expired session: no refresh is attempted for it. (A value that is not made of RFC 6265
    # cookie-octets counts as an absent cookie, and an absent access token with a refresh
    # cookie is refreshed by design; those are covered in test_cookies.py.)
    assert_anonymous(via_cookie(cookie_app, MALFORMED[name]))
    assert recorder.calls == []


def _not_utf8_but_json(now: float) -> dict[str, str]:
    """Correctly signed tokens whose JSON is UTF-16/32 (with or without a BOM), which
    Python's json.loads(bytes) silently auto-detects."""
    hs = {"alg": "HS256"}
    text = json.dumps(claims_at(now))
    return {
        "payload-utf16": forge(hs, text.encode("utf-16")),
        "payload-utf16-le-no-bom": forge(hs, text.encode("utf-16-le")),
        "payload-utf32": forge(hs, text.encode("utf-32")),
        "header-utf16": forge(json.dumps(hs).encode("utf-16"), claims_at(now)),
    }


NOT_UTF8 = _not_utf8_but_json(1_800_000_000.0)


@pytest.mark.parametrize("name", list(NOT_UTF8))
def test_json_that_is_not_utf8_is_unauthenticated(
    cookie_app: FastAPI, bearer_app: FastAPI, name: str
) -> None:
    token = NOT_UTF8[name]
    assert_anonymous(via_cookie(cookie_app, token, refresh=False))
    assert_anonymous(via_bearer(bearer_app, token))


def test_malformed_work_is_bounded(
    clock: Clock,
    cookie_app: FastAPI,
    bearer_app: FastAPI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No timing assertions: oversized input is refused before PyJWT parses a byte of it,
    # and the deeply nested inputs end in a TokenError, not a crash.
    parsed: list[int] = []
    real = jwt.api_jws.PyJWS._load

    def spy(self: Any, jwt_value: Any) -> Any:
        parsed.append(len(jwt_value))
        return real(self, jwt_value)

    monkeypatch.setattr(jwt.api_jws.PyJWS, "_load", spy)
    huge = "a" * 4000 + "." + "b" * 60_000 + "." + "c" * 4000
    assert_anonymous(via_cookie(cookie_app, huge, refresh=False))
    assert_anonymous(via_bearer(bearer_app, huge))
    assert_anonymous(via_cookie(cookie_app, MALFORMED["header-8KiB"], refresh=False))
    assert_anonymous(via_bearer(bearer_app, MALFORMED["header-8KiB"]))
    assert parsed == [], "an oversized token reached the JWT parser"
    for name in ("payload-nested-json", "header-nested-json"):
        assert_anonymous(via_bearer(bearer_app, MALFORMED[name]))
    assert max(parsed) <= 8192


# --- numbers beyond a float's range, text that is not Unicode (issue 17, item 8) -----------------


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", [10**400, -(10**400)], ids=["1e400", "-1e400"])
def test_time_claim_beyond_a_floats_range_is_unauthenticated(
    clock: Clock,
    cookie_app: FastAPI,
    bearer_app: FastAPI,
    recorder: Recorder,
    claim: str,
    value: int,
) -> None:
    # JSON integers have no size limit and PyJWT passes them through: a correctly signed
    # token with exp = 10**400 must be an anonymous request, not an OverflowError (a 500)
    # from comparing it with the clock.
    claims: dict[str, Any] = claims_at(clock())
    claims[claim] = value
    token = forge({"alg": "HS256", "typ": "JWT"}, json.dumps(claims).encode())
    assert_rejected_everywhere(token, cookie_app, bearer_app, recorder)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"sub": "\\ud800", "iat": %d, "exp": %d}',
        b'{"sub": "alice", "name": "x\\udfffy", "iat": %d, "exp": %d}',
        b'{"sub": "alice", "org": {"names": ["\\udc00"]}, "iat": %d, "exp": %d}',
    ],
    ids=["sub", "other-claim", "nested"],
)
def test_lone_surrogate_in_a_claim_is_unauthenticated(
    clock: Clock, cookie_app: FastAPI, bearer_app: FastAPI, recorder: Recorder, payload: bytes
) -> None:
    # A JSON \u escape can spell half a surrogate pair, which no UTF-8 response can carry:
    # returned as the user (the claims), it made every response of the session a 500.
    now = int(clock())
    token = forge({"alg": "HS256", "typ": "JWT"}, payload % (now, now + 300))
    assert_rejected_everywhere(token, cookie_app, bearer_app, recorder)


def test_escaped_surrogate_pair_is_ordinary_text(clock: Clock, cookie_app: FastAPI) -> None:
    # The control: a complete pair escaped in JSON is one character and verifies.
    now = int(clock())
    payload = b'{"sub": "\\ud83d\\ude00", "iat": %d, "exp": %d}' % (now, now + 300)
    token = forge({"alg": "HS256", "typ": "JWT"}, payload)
    reply = via_cookie(cookie_app, token, refresh=False)
    assert reply.json()["auth"] is True
    assert reply.json()["sub"] == "\U0001f600"
