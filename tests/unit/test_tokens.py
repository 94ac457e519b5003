"""TokenVerifier and unverified_expiry: what authenticates, and what never does.

Hostile tokens are crafted by hand (base64url + HMAC) so that nothing in PyJWT's encoder
can refuse or normalise them: the verifier is the only thing under test.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import RSAAlgorithm

from fastapi_authkit import ConfigurationError, TokenError, create_store
from fastapi_authkit.errors import TokenExpiredError
from fastapi_authkit.tokens import MAX_TOKEN_BYTES, TokenVerifier, unverified_expiry

from tests.support.clock import T0, Clock
from tests.support.tokens import SECRET_KEY, TOKEN_KEY, make_token

Json = dict[str, Any]

OTHER_KEY = "another-token-key-0123456789abcdef01234567"
LONG_KEY = TOKEN_KEY * 2  # long enough for HS384/HS512 too (82 bytes)
EXP = int(T0) + 300


# --- hand-crafting ------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segment(part: Json | bytes) -> str:
    raw = part if isinstance(part, bytes) else json.dumps(part).encode()
    return b64url(raw)


def forge(
    header: Json | bytes,
    payload: Json | bytes,
    *,
    key: str | bytes = TOKEN_KEY,
    digest: Callable[..., Any] = hashlib.sha256,
) -> str:
    """A JWS with exactly this header and payload, HMAC-signed by hand."""
    signing_input = f"{_segment(header)}.{_segment(payload)}"
    raw_key = key.encode() if isinstance(key, str) else key
    signature = hmac.new(raw_key, signing_input.encode("ascii"), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def unsigned(header: Json, payload: Json, signature: str = "") -> str:
    return f"{_segment(header)}.{_segment(payload)}.{signature}"


def claims(**extra: Any) -> Json:
    return {"sub": "alice", "iat": int(T0), "exp": EXP, **extra}


def hs256(**options: Any) -> TokenVerifier:
    return TokenVerifier(key=options.pop("key", TOKEN_KEY), algorithms=["HS256"], **options)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(private_key: Any) -> bytes:
    return bytes(
        private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


# --- the good path --------------------------------------------------------------------------


def test_valid_hs256_token_returns_its_claims(clock: Clock) -> None:
    verifier = create_store(secret_key=SECRET_KEY, token_key=TOKEN_KEY, clock=clock).verifier
    token = make_token(clock, role="admin")

    got = verifier.verify(token, clock())

    assert got == {"sub": "alice", "iat": int(T0), "exp": int(T0) + 300, "role": "admin"}


def test_hand_forged_hs256_token_is_accepted() -> None:
    # The control for every forged rejection below: the forging helper itself is sound.
    assert hs256().verify(forge({"alg": "HS256", "typ": "JWT"}, claims()), T0) == claims()


def test_algorithms_may_be_given_as_a_single_string() -> None:
    verifier = TokenVerifier(key=TOKEN_KEY, algorithms="HS256")
    assert verifier.verify(make_token(T0), T0)["sub"] == "alice"


# --- algorithm: never taken from the token ----------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "nOnE", "NONE"])
@pytest.mark.parametrize("signature", ["empty", "hmac"])
def test_alg_none_is_rejected(alg: str, signature: str) -> None:
    header = {"alg": alg, "typ": "JWT"}
    # Either no signature at all, or a real HMAC under the configured key.
    token = unsigned(header, claims()) if signature == "empty" else forge(header, claims())

    with pytest.raises(TokenError):
        hs256().verify(token, T0)


def test_token_without_alg_header_is_rejected() -> None:
    with pytest.raises(TokenError):
        hs256().verify(forge({"typ": "JWT"}, claims()), T0)


@pytest.mark.parametrize(("alg", "digest"), [("HS384", hashlib.sha384), ("HS512", hashlib.sha512)])
def test_hmac_algorithm_allowed_by_pyjwt_but_not_configured_is_rejected(
    alg: str, digest: Callable[..., Any]
) -> None:
    token = forge({"alg": alg}, claims(), key=LONG_KEY, digest=digest)
    # Same key, the right algorithm configured: accepted, so only the allowlist differs.
    assert TokenVerifier(key=LONG_KEY, algorithms=[alg]).verify(token, T0)["sub"] == "alice"

    with pytest.raises(TokenError):
        TokenVerifier(key=LONG_KEY, algorithms=["HS256"]).verify(token, T0)


def test_token_signed_with_another_key_is_rejected() -> None:
    token = make_token(T0, key=OTHER_KEY)
    with pytest.raises(TokenError) as excinfo:
        hs256().verify(token, T0)
    assert not isinstance(excinfo.value, TokenExpiredError)


def test_expired_token_signed_with_another_key_is_not_reported_as_expired() -> None:
    # The signature is checked first: an unauthenticated token never carries claims out.
    token = make_token(T0 - 1000, key=OTHER_KEY)
    with pytest.raises(TokenError) as excinfo:
        hs256().verify(token, T0)
    assert not isinstance(excinfo.value, TokenExpiredError)


def test_tampered_payload_is_rejected() -> None:
    token = make_token(T0)
    header, _, signature = token.split(".")
    tampered = f"{header}.{_segment(claims(sub='mallory'))}.{signature}"
    with pytest.raises(TokenError):
        hs256().verify(tampered, T0)


# --- exp, nbf, iat ------------------------------------------------------------------------------


def test_exp_is_required() -> None:
    token = jwt.encode({"sub": "alice", "iat": int(T0)}, TOKEN_KEY, algorithm="HS256")
    with pytest.raises(TokenError):
        hs256().verify(token, T0)


@pytest.mark.parametrize(
    "exp_json",
    [
        b"true",
        b"false",
        b'"1900000000"',
        b"1e999",
        b"-1e999",
        b"NaN",
        b"Infinity",
        b"null",
        b"[1900000000]",
        b'{"value": 1900000000}',
    ],
)
def test_exp_that_is_not_a_finite_number_is_rejected(exp_json: bytes) -> None:
    payload = b'{"sub": "alice", "exp": ' + exp_json + b"}"
    with pytest.raises(TokenError) as excinfo:
        hs256().verify(forge({"alg": "HS256"}, payload), T0)
    assert not isinstance(excinfo.value, TokenExpiredError)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
@pytest.mark.parametrize("value_json", [b"true", b'"0"', b"NaN", b"1e999", b"-1e999", b"null"])
def test_nbf_and_iat_that_are_not_finite_numbers_are_rejected(
    claim: str, value_json: bytes
) -> None:
    payload = b'{"sub": "alice", "exp": %d, "%s": %s}' % (EXP, claim.encode(), value_json)
    with pytest.raises(TokenError):
        hs256().verify(forge({"alg": "HS256"}, payload), T0)


def test_expired_token_raises_token_expired_error_carrying_the_claims(clock: Clock) -> None:
    token = make_token(clock, ttl=300, role="admin")
    verifier = hs256()

    assert verifier.verify(token, T0 + 299)["role"] == "admin"
    with pytest.raises(TokenExpiredError) as excinfo:
        verifier.verify(token, T0 + 300)  # exp itself is already past

    assert excinfo.value.claims["sub"] == "alice"
    assert excinfo.value.claims["role"] == "admin"
    assert excinfo.value.claims["exp"] == int(T0) + 300


def test_expired_within_leeway_is_accepted_and_beyond_it_is_expired() -> None:
    token = make_token(T0, ttl=300)
    verifier = hs256(leeway=30)

    assert verifier.leeway == 30
    assert verifier.verify(token, T0 + 300 + 29)["sub"] == "alice"
    with pytest.raises(TokenExpiredError):
        verifier.verify(token, T0 + 300 + 30)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_future_nbf_or_iat_beyond_leeway_is_rejected_within_it_accepted(claim: str) -> None:
    verifier = hs256(leeway=60)
    within = forge({"alg": "HS256"}, {"sub": "alice", "exp": EXP, claim: int(T0) + 60})
    beyond = forge({"alg": "HS256"}, {"sub": "alice", "exp": EXP, claim: int(T0) + 61})

    assert verifier.verify(within, T0)["sub"] == "alice"
    with pytest.raises(TokenError) as excinfo:
        verifier.verify(beyond, T0)
    assert not isinstance(excinfo.value, TokenExpiredError)


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_future_nbf_or_iat_without_leeway(claim: str) -> None:
    verifier = hs256()
    assert verifier.verify(forge({"alg": "HS256"}, claims(**{claim: int(T0)})), T0)
    with pytest.raises(TokenError):
        verifier.verify(forge({"alg": "HS256"}, claims(**{claim: int(T0) + 1})), T0)


def test_time_claims_are_checked_against_the_given_now_not_the_wall_clock() -> None:
    # Issued and valid in 2027 (T0): the wall clock plays no part.
    token = make_token(T0, ttl=60)
    assert hs256().verify(token, T0 + 59)["sub"] == "alice"
    with pytest.raises(TokenExpiredError):
        hs256().verify(token, T0 + 60)


# --- aud and iss ---------------------------------------------------------------------------------


AUD = "https://api.example"


@pytest.mark.parametrize("aud", [AUD, ["https://other.example", AUD]])
def test_configured_audience_accepts_a_matching_aud(aud: str | list[str]) -> None:
    assert hs256(audience=AUD).verify(make_token(T0, aud=aud), T0)["aud"] == aud


@pytest.mark.parametrize(
    "aud", ["https://api", "https://api.example.evil", "HTTPS://API.EXAMPLE", "", ["other"]]
)
def test_configured_audience_rejects_any_other_aud(aud: str | list[str]) -> None:
    with pytest.raises(TokenError):
        hs256(audience=AUD).verify(make_token(T0, aud=aud), T0)


def test_configured_audience_requires_aud() -> None:
    with pytest.raises(TokenError):
        hs256(audience=AUD).verify(make_token(T0), T0)


def test_audience_list_accepts_any_configured_value() -> None:
    verifier = hs256(audience=["a", "b"])
    assert verifier.verify(make_token(T0, aud="b"), T0)["aud"] == "b"
    with pytest.raises(TokenError):
        verifier.verify(make_token(T0, aud="c"), T0)


def test_configured_issuer_accepts_the_exact_iss() -> None:
    iss = "https://a.example"
    assert hs256(issuer=iss).verify(make_token(T0, iss=iss), T0)["iss"] == iss


def test_configured_issuer_requires_iss() -> None:
    with pytest.raises(TokenError):
        hs256(issuer="https://a.example").verify(make_token(T0), T0)


@pytest.mark.parametrize(
    ("configured", "presented"),
    [
        ("https://a.example", "https://a"),  # a prefix of the issuer
        ("https://a", "https://a.example"),  # the issuer is a prefix of it
        ("https://a", "http"),  # a substring (the PyJWT partial-iss advisory)
        ("https://a.example", "https://a.example/"),
        ("https://a.example", "HTTPS://A.EXAMPLE"),
        ("https://a.example", ""),
        ("https://a.example", ["https://a.example"]),
    ],
)
def test_configured_issuer_is_compared_exactly(configured: str, presented: Any) -> None:
    with pytest.raises(TokenError):
        hs256(issuer=configured).verify(forge({"alg": "HS256"}, claims(iss=presented)), T0)


# --- key ids -------------------------------------------------------------------------------------

RETIRED = "retired-token-key-0123456789abcdef01234567"
OVERLAP = "overlap-token-key-0123456789abcdef012345678"
CURRENT = "current-token-key-0123456789abcdef012345678"


def rotating() -> TokenVerifier:
    return TokenVerifier(key={"2024-02": OVERLAP, "2024-03": CURRENT}, algorithms=["HS256"])


@pytest.mark.parametrize(("kid", "key"), [("2024-03", CURRENT), ("2024-02", OVERLAP)])
def test_current_and_overlap_keys_are_accepted_by_kid(kid: str, key: str) -> None:
    token = forge({"alg": "HS256", "kid": kid}, claims(), key=key)
    assert rotating().verify(token, T0) == claims()


def test_retired_key_is_rejected() -> None:
    token = forge({"alg": "HS256", "kid": "2024-01"}, claims(), key=RETIRED)
    with pytest.raises(TokenError):
        rotating().verify(token, T0)


def test_kid_selects_the_key_a_token_signed_with_another_configured_key_fails() -> None:
    token = forge({"alg": "HS256", "kid": "2024-03"}, claims(), key=OVERLAP)
    with pytest.raises(TokenError):
        rotating().verify(token, T0)


def test_missing_kid_is_rejected_when_keys_are_mapped() -> None:
    with pytest.raises(TokenError):
        rotating().verify(forge({"alg": "HS256"}, claims(), key=CURRENT), T0)


@pytest.mark.parametrize(
    "kid", ["../../dev/null", "/dev/null", "' OR 1=1 --", "", "\x00", "http://127.0.0.1/k"]
)
@pytest.mark.parametrize("key", [b"", CURRENT], ids=["empty-key", "current-key"])
def test_hostile_kid_is_rejected(kid: str, key: str | bytes) -> None:
    # An empty HMAC key is what "/dev/null" would yield if the kid ever reached a file.
    token = forge({"alg": "HS256", "kid": kid}, claims(), key=key)
    with pytest.raises(TokenError):
        rotating().verify(token, T0)


@pytest.mark.parametrize("kid", [1, 2024.03, True, None, ["2024-03"], {"2024-03": 1}])
def test_non_string_kid_is_rejected(kid: object) -> None:
    token = forge({"alg": "HS256", "kid": kid}, claims(), key=CURRENT)
    with pytest.raises(TokenError):
        rotating().verify(token, T0)


def test_single_key_configuration_does_not_depend_on_kid() -> None:
    token = forge({"alg": "HS256", "kid": "whatever"}, claims())
    assert hs256().verify(token, T0) == claims()


@pytest.mark.parametrize("mapping", [{}, {"": CURRENT}, {1: CURRENT}])
def test_bad_key_id_mapping_is_a_configuration_error(mapping: dict[Any, str]) -> None:
    with pytest.raises(ConfigurationError):
        TokenVerifier(key=mapping, algorithms=["HS256"])


# --- headers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"crit": ["urn:example:unknown"], "urn:example:unknown": True},
        {"crit": ["exp"]},
        {"crit": ["b64"], "b64": False},
        {"crit": []},
        {"crit": "urn:example:unknown"},
    ],
)
def test_unknown_or_malformed_crit_header_is_rejected(extra: Json) -> None:
    verifier = hs256()
    assert verifier.verify(forge({"alg": "HS256"}, claims()), T0)  # the control
    with pytest.raises(TokenError):
        verifier.verify(forge({"alg": "HS256", **extra}, claims()), T0)


def test_jku_x5u_jwk_x5c_headers_are_ignored_and_never_fetched(
    no_network: list[str], rsa_key: rsa.RSAPrivateKey
) -> None:
    attacker_jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    remote = {
        "jku": "https://attacker.example/jwks.json",
        "x5u": "https://attacker.example/cert.pem",
        "jwk": attacker_jwk,
        "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"],
    }
    verifier = hs256()
    plain = verifier.verify(forge({"alg": "HS256"}, claims()), T0)

    with_urls = verifier.verify(forge({"alg": "HS256", **remote}, claims()), T0)
    with pytest.raises(TokenError):
        verifier.verify(forge({"alg": "HS256", **remote}, claims(), key=OTHER_KEY), T0)

    assert with_urls == plain
    assert no_network == []


def test_embedded_jwk_does_not_supply_the_verification_key(
    no_network: list[str], rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    verifier = TokenVerifier(key=public_pem(rsa_key), algorithms=["RS256"])
    attacker_jwk = json.loads(RSAAlgorithm.to_jwk(other_rsa_key.public_key()))
    token = jwt.encode(
        claims(),
        other_rsa_key,
        algorithm="RS256",
        headers={"jwk": attacker_jwk, "jku": "https://attacker.example/jwks.json"},
    )
    with pytest.raises(TokenError):
        verifier.verify(token, T0)
    assert no_network == []


# --- malformed input: always TokenError, never anything else ------------------------------------


def _sized_token(length: int) -> str:
    """A correctly signed HS256 token of exactly ``length`` characters."""
    start = max(0, (length - len(make_token(T0, pad=""))) * 3 // 4 - 8)
    for pad in range(start, start + 16):
        token = make_token(T0, pad="x" * pad)
        if len(token) == length:
            return token
    raise AssertionError(f"no token of exactly {length} characters")


def _malformed_tokens() -> dict[str, str]:
    good = make_token(T0)
    header, payload, signature = good.split(".")
    hs = {"alg": "HS256"}
    nested_payload = b'{"exp": %d, "x": ' % EXP + b"[" * 2500 + b"]" * 2500 + b"}"
    nested_header = b'{"alg": "HS256", "x": ' + b"[" * 2500 + b"]" * 2500 + b"}"
    return {
        "empty": "",
        "one segment": "abc",
        "two segments": f"{header}.{payload}",
        "four segments": f"{good}.{signature}",
        "five segments": f"{good}.{payload}.{signature}",
        "only dots": "...",
        "bad base64 header": f"!!!.{payload}.{signature}",
        "bad base64 payload": f"{header}.%%%.{signature}",
        "bad base64 signature": f"{header}.{payload}.***",
        "base64 padding chars": f"{header}==.{payload}.{signature}",
        "header not json": forge(b"not json", claims()),
        "header is an array": forge(b'["HS256"]', claims()),
        "header is a string": forge(b'"HS256"', claims()),
        "payload is an array": forge(hs, b'[{"sub": "alice", "exp": %d}]' % EXP),
        "payload is a string": forge(hs, b'"alice"'),
        "payload is a number": forge(hs, b"1900000000"),
        "payload is null": forge(hs, b"null"),
        "payload not json": forge(hs, b"{sub: alice}"),
        "payload non-utf8 bytes": forge(hs, b'{"sub": "\xff\xfe", "exp": %d}' % EXP),
        "header non-utf8 bytes": forge(b'{"alg": "HS256", "x": "\xc3\x28"}', claims()),
        "non-ascii characters": f"{header}.{payload}é.{signature}",
        "lone surrogate": f"{header}.{payload}\udcff.{signature}",
        "control characters": f"{header}\x00.{payload}\n.{signature}",
        "deeply nested payload": forge(hs, nested_payload),
        "deeply nested header": forge(nested_header, claims()),
        "over 8 KiB, correctly signed": _sized_token(MAX_TOKEN_BYTES + 1),
        "64 KiB of dots and letters": ("a" * 1000 + ".") * 64,
    }


MALFORMED = _malformed_tokens()


@pytest.mark.parametrize("verifier_kind", ["single key", "key ids"])
@pytest.mark.parametrize("token", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_token_raises_token_error_only(token: str, verifier_kind: str) -> None:
    if verifier_kind == "single key":
        verifier = hs256()
    else:
        verifier = TokenVerifier(key={"k": TOKEN_KEY}, algorithms=["HS256"])

    with pytest.raises(TokenError) as excinfo:
        verifier.verify(token, T0)

    assert excinfo.type is TokenError  # not "expired", and not a foreign error


def test_size_limit_boundary() -> None:
    at_limit = _sized_token(MAX_TOKEN_BYTES)
    assert hs256().verify(at_limit, T0)["sub"] == "alice"
    with pytest.raises(TokenError):
        hs256().verify(_sized_token(MAX_TOKEN_BYTES + 1), T0)


# --- unverified_expiry ---------------------------------------------------------------------------


def test_unverified_expiry_reads_exp_without_checking_the_signature() -> None:
    token = make_token(T0, ttl=600, key=OTHER_KEY)
    exp = unverified_expiry(token)
    assert exp == T0 + 600
    assert isinstance(exp, float)


def test_unverified_expiry_of_an_expired_token_is_still_its_exp() -> None:
    assert unverified_expiry(make_token(T0 - 10_000, ttl=60)) == T0 - 10_000 + 60


def test_unverified_expiry_accepts_a_float_exp() -> None:
    assert unverified_expiry(forge({"alg": "HS256"}, {"exp": 1900000000.5})) == 1900000000.5


@pytest.mark.parametrize(
    "token",
    [
        "opaque-refresh-token-value",
        "",
        "a.b",
        "a.b.c.d",
        "!!!.@@@.###",
        forge({"alg": "HS256"}, {"sub": "alice"}),
        forge({"alg": "HS256"}, b'{"exp": true}'),
        forge({"alg": "HS256"}, b'{"exp": "1900000000"}'),
        forge({"alg": "HS256"}, b'{"exp": 1e999}'),
        forge({"alg": "HS256"}, b'{"exp": NaN}'),
        forge({"alg": "HS256"}, b"[1900000000]"),
        forge({"alg": "HS256"}, b"\xff\xfe"),
        _sized_token(MAX_TOKEN_BYTES + 1),
    ],
    ids=[
        "opaque",
        "empty",
        "two segments",
        "four segments",
        "bad base64",
        "no exp",
        "bool exp",
        "string exp",
        "infinite exp",
        "nan exp",
        "array payload",
        "non-utf8 payload",
        "oversized",
    ],
)
def test_unverified_expiry_is_none_for_opaque_or_odd_tokens(token: str) -> None:
    assert unverified_expiry(token) is None


# --- configuration of keys and algorithms --------------------------------------------------------


def _asymmetric_public_keys() -> dict[str, str | bytes]:
    rsa_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_public = rsa_private.public_key()
    spki = rsa_public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ec_public = ec.generate_private_key(ec.SECP256R1()).public_key()
    ed_public = ed25519.Ed25519PrivateKey.generate().public_key()
    return {
        "rsa spki pem": spki,
        "rsa spki pem as str": spki.decode(),
        "rsa pkcs1 pem": rsa_public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
        ),
        "pem with crlf": spki.replace(b"\n", b"\r\n"),
        "pem with surrounding whitespace": b"  \n\t" + spki + b"\n\n  ",
        "pem with trailing spaces on lines": spki.replace(b"\n", b"   \n"),
        "pem without final newline": spki.rstrip(b"\n"),
        "rsa openssh": rsa_public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
        "rsa der": rsa_public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "rsa jwk json": RSAAlgorithm.to_jwk(rsa_public),
        "ec pem": ec_public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "ed25519 pem": ed_public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "rsa private pem": rsa_private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    }


PUBLIC_KEYS = _asymmetric_public_keys()


@pytest.mark.parametrize("key", list(PUBLIC_KEYS.values()), ids=list(PUBLIC_KEYS))
def test_asymmetric_key_as_hmac_secret_is_a_configuration_error(key: str | bytes) -> None:
    with pytest.raises(ConfigurationError):
        create_store(secret_key=SECRET_KEY, token_key=key, algorithms=["HS256"])
    with pytest.raises(ConfigurationError):
        TokenVerifier(key={"k1": key}, algorithms=["HS256"])


@pytest.mark.parametrize(
    "algorithms",
    [["HS256", "RS256"], ["RS256", "HS256"], ["HS512", "ES256"], ["HS256", "EdDSA"]],
)
def test_mixing_hmac_with_asymmetric_algorithms_is_a_configuration_error(
    algorithms: list[str], rsa_key: rsa.RSAPrivateKey
) -> None:
    for key in (LONG_KEY, public_pem(rsa_key)):
        with pytest.raises(ConfigurationError):
            create_store(secret_key=SECRET_KEY, token_key=key, algorithms=algorithms)


@pytest.mark.parametrize(
    "algorithms",
    [
        [],
        ["none"],
        ["None"],
        ["NONE"],
        ["hs256"],
        ["HS1"],
        ["XS256"],
        ["RS1"],
        [""],
        ["HS256", "none"],
    ],
)
def test_unknown_or_none_algorithm_is_a_configuration_error(algorithms: list[str]) -> None:
    with pytest.raises(ConfigurationError):
        TokenVerifier(key=LONG_KEY, algorithms=algorithms)


@pytest.mark.parametrize(("algorithm", "minimum"), [("HS256", 32), ("HS384", 48), ("HS512", 64)])
def test_hmac_key_shorter_than_the_hash_is_a_configuration_error(
    algorithm: str, minimum: int
) -> None:
    assert TokenVerifier(key="k" * minimum, algorithms=[algorithm])
    assert TokenVerifier(key=b"k" * minimum, algorithms=[algorithm])
    with pytest.raises(ConfigurationError):
        TokenVerifier(key="k" * (minimum - 1), algorithms=[algorithm])
    with pytest.raises(ConfigurationError):
        TokenVerifier(key={"kid": b"k" * (minimum - 1)}, algorithms=[algorithm])


def test_hmac_key_length_counts_bytes_and_every_configured_algorithm() -> None:
    assert TokenVerifier(key="é" * 16, algorithms=["HS256"])  # 32 bytes in UTF-8
    with pytest.raises(ConfigurationError):
        TokenVerifier(key="k" * 40, algorithms=["HS256", "HS512"])


@pytest.mark.parametrize("key", [None, "", b"", 12345, ["k" * 40]])
def test_missing_or_non_text_hmac_key_is_a_configuration_error(key: object) -> None:
    with pytest.raises(ConfigurationError):
        TokenVerifier(key=key, algorithms=["HS256"])


@pytest.mark.parametrize("leeway", [-1, float("nan"), float("inf"), True, "5", None])
def test_bad_leeway_is_a_configuration_error(leeway: Any) -> None:
    with pytest.raises(ConfigurationError):
        TokenVerifier(key=TOKEN_KEY, algorithms=["HS256"], leeway=leeway)


def test_issuer_must_be_a_single_string() -> None:
    issuer: Any = ["https://a.example"]
    with pytest.raises(ConfigurationError):
        TokenVerifier(key=TOKEN_KEY, algorithms=["HS256"], issuer=issuer)


def test_hmac_secret_as_rs256_key_is_a_configuration_error(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ConfigurationError):
        TokenVerifier(key=TOKEN_KEY, algorithms=["RS256"])
    ec_pem = PUBLIC_KEYS["ec pem"]
    with pytest.raises(ConfigurationError):
        TokenVerifier(key=ec_pem, algorithms=["RS256"])
    with pytest.raises(ConfigurationError):
        TokenVerifier(key=public_pem(rsa_key), algorithms=["RS256", "ES256"])


def _private_key(algorithm: str) -> Any:
    if algorithm.startswith(("RS", "PS")):
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


@pytest.mark.parametrize("algorithm", ["RS256", "PS256", "ES256", "EdDSA"])
def test_asymmetric_keypair_verifies_and_rejects_another_keypair(algorithm: str) -> None:
    private_key, stranger = _private_key(algorithm), _private_key(algorithm)
    verifier = create_store(
        secret_key=SECRET_KEY, token_key=public_pem(private_key), algorithms=[algorithm]
    ).verifier

    assert verifier.verify(make_token(T0, key=private_key, algorithm=algorithm), T0) == {
        "sub": "alice",
        "iat": int(T0),
        "exp": int(T0) + 300,
    }
    with pytest.raises(TokenError):
        verifier.verify(make_token(T0, key=stranger, algorithm=algorithm), T0)


@pytest.mark.parametrize("header_alg", ["HS256", "HS512", "RS256"])
def test_hmac_signed_with_the_public_pem_is_rejected(
    header_alg: str, rsa_key: rsa.RSAPrivateKey
) -> None:
    # The classic algorithm confusion: the attacker knows the public key and uses it as an
    # HMAC secret, announcing HS256 (or keeping RS256) in the header.
    pem = public_pem(rsa_key)
    verifier = TokenVerifier(key=pem, algorithms=["RS256"])
    rotating_rsa = TokenVerifier(key={"k1": pem}, algorithms=["RS256"])
    genuine = make_token(T0, key=rsa_key, algorithm="RS256", headers={"kid": "k1"})
    assert verifier.verify(genuine, T0)["sub"] == "alice"

    for digest in (hashlib.sha256, hashlib.sha512):
        forged = forge({"alg": header_alg, "kid": "k1"}, claims(), key=pem, digest=digest)
        with pytest.raises(TokenError):
            verifier.verify(forged, T0)
        with pytest.raises(TokenError):
            rotating_rsa.verify(forged, T0)


# --- explicit typing (typ) -----------------------------------------------------------------------


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt"])
def test_configured_typ_accepts_the_matching_header(typ: str) -> None:
    verifier = TokenVerifier(key=TOKEN_KEY, algorithms=["HS256"], typ="at+jwt")
    assert verifier.verify(forge({"alg": "HS256", "typ": typ}, claims()), T0) == claims()


@pytest.mark.parametrize(
    "typ", ["JWT", "jwt", "", "at+jwt ", "application/jwt", 1, None, ["at+jwt"]]
)
def test_configured_typ_rejects_any_other_or_missing_typ(typ: object) -> None:
    verifier = TokenVerifier(key=TOKEN_KEY, algorithms=["HS256"], typ="at+jwt")
    with pytest.raises(TokenError):
        verifier.verify(forge({"alg": "HS256", "typ": typ}, claims()), T0)
    with pytest.raises(TokenError):
        verifier.verify(forge({"alg": "HS256"}, claims()), T0)


def test_typ_is_not_checked_unless_configured() -> None:
    assert hs256().verify(forge({"alg": "HS256", "typ": "id+jwt"}, claims()), T0) == claims()


# --- one key, one algorithm -----------------------------------------------------------------


def test_one_key_is_bound_to_one_algorithm() -> None:
    with pytest.raises(ConfigurationError):
        TokenVerifier(key=LONG_KEY, algorithms=["HS256", "HS512"])


def test_key_ids_may_carry_their_own_algorithm_and_only_that_one() -> None:
    verifier = TokenVerifier(
        key={"new": (LONG_KEY, "HS512"), "old": TOKEN_KEY}, algorithms=["HS256"]
    )
    hs512 = forge({"alg": "HS512", "kid": "new"}, claims(), key=LONG_KEY, digest=hashlib.sha512)
    assert verifier.verify(hs512, T0) == claims()
    assert verifier.verify(forge({"alg": "HS256", "kid": "old"}, claims()), T0) == claims()

    with pytest.raises(TokenError):  # the right key, but not the algorithm bound to its kid
        verifier.verify(forge({"alg": "HS256", "kid": "new"}, claims(), key=LONG_KEY), T0)


def test_key_ids_must_not_mix_hmac_and_asymmetric_keys(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ConfigurationError):
        TokenVerifier(
            key={"h": (TOKEN_KEY, "HS256"), "r": (public_pem(rsa_key), "RS256")},
            algorithms=["HS256"],
        )
