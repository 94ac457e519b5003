"""Keys and the one algorithm each is bound to: checked, described and prepared for PyJWT,
and the protocols of keys and tokens vouched for elsewhere (a key set, introspection)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Protocol, runtime_checkable

import jwt
from jwt.algorithms import get_default_algorithms

from ..errors import ConfigurationError
from ..jsoncopy import Remembered

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "HMAC_ALGORITHMS",
    "KeySource",
    "OpaqueTokenSource",
    "check_algorithm",
    "describe_key",
    "prepare_key",
    "single_algorithm",
]

HMAC_ALGORITHMS: Final = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS: Final = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES256K",
        "ES384",
        "ES512",
        "EdDSA",
    }
)
# RFC 7518 §3.2: an HMAC key at least as long as the hash output.
_HMAC_MIN_KEY_BYTES: Final = {"HS256": 32, "HS384": 48, "HS512": 64}
# What each asymmetric algorithm needs, to say so when a key does not fit (PyJWT's own
# messages name its internals: "Expected one of <generator object ...>").
_EC_CURVES: Final = {
    "ES256": "P-256 (secp256r1)",
    "ES256K": "secp256k1",
    "ES384": "P-384 (secp384r1)",
    "ES512": "P-521 (secp521r1)",
}


def _needed_key(algorithm: str, kind: str) -> str:
    if algorithm in HMAC_ALGORITHMS:
        return f"a secret (str or bytes) of at least {_HMAC_MIN_KEY_BYTES[algorithm]} bytes"
    if algorithm in _EC_CURVES:
        return f"an EC {kind} key on the curve {_EC_CURVES[algorithm]}"
    if algorithm == "EdDSA":
        return f"an Ed25519 or Ed448 {kind} key"
    return f"an RSA {kind} key"


def describe_key(key: object) -> str:
    """What ``key`` is, in words, for an error message: "an RSA public key (PEM)", "an EC
    private key on secp384r1", "a str that is not a PEM key". Never the key itself."""
    if isinstance(key, str | bytes):
        raw = key.encode() if isinstance(key, str) else key
        if b"-----BEGIN" not in raw and not raw.startswith(b"ssh-"):
            return f"a {type(key).__name__} that is not a PEM key"
        from cryptography.hazmat.primitives import serialization

        loaders: tuple[Any, ...] = (
            serialization.load_pem_public_key,
            lambda data: serialization.load_pem_private_key(data, password=None),
            serialization.load_ssh_public_key,
        )
        for load in loaders:
            try:
                return f"{describe_key(load(raw))} (PEM)"
            except Exception:  # noqa: S112 - try the next format
                continue
        return "a PEM text that cannot be read (or is password-protected)"
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    kinds: tuple[tuple[type, str], ...] = (
        (rsa.RSAPublicKey, "an RSA public key"),
        (rsa.RSAPrivateKey, "an RSA private key"),
        (ec.EllipticCurvePublicKey, "an EC public key"),
        (ec.EllipticCurvePrivateKey, "an EC private key"),
        (ed25519.Ed25519PublicKey, "an Ed25519 public key"),
        (ed25519.Ed25519PrivateKey, "an Ed25519 private key"),
        (ed448.Ed448PublicKey, "an Ed448 public key"),
        (ed448.Ed448PrivateKey, "an Ed448 private key"),
    )
    for cls, words in kinds:
        if isinstance(key, cls):
            curve = getattr(key, "curve", None)
            return f"{words} on {curve.name}" if curve is not None else words
    return f"a value of type {type(key).__name__}"


def _is_url(key: object) -> bool:
    if isinstance(key, bytes):
        key = key.decode("latin-1")
    return isinstance(key, str) and key.strip().lower().startswith(("http://", "https://"))


def prepare_key(algorithm: str, key: object, label: str, *, kind: str = "public") -> Any:
    """Validate ``key`` for ``algorithm`` and return it in PyJWT's prepared form; raise a
    :class:`ConfigurationError` that names ``label``, what the key is and what
    ``algorithm`` needs. ``kind`` is "public" to verify, "private" to sign."""
    if _is_url(key):
        # A key-set URL is never a key: as an HMAC secret it would be a public one (anyone
        # could sign tokens with it), as a public key it is unreadable PEM.
        raise ConfigurationError(
            f"{label} is a URL, not a key: for an identity provider's key set (JWKS) pass "
            f"{label}=JWKSKeySet(url, algorithms=[...]) (from fastapi_authkit.oidc), or use "
            "OIDCClient(...).store_options(), which discovers it"
        )
    if algorithm in HMAC_ALGORITHMS:
        raw = key.encode() if isinstance(key, str) else key
        if not isinstance(raw, bytes):
            raise ConfigurationError(
                f"{label} is {describe_key(key)}, but {algorithm} needs "
                f"{_needed_key(algorithm, kind)}"
            )
        if len(raw) < _HMAC_MIN_KEY_BYTES[algorithm]:
            raise ConfigurationError(
                f"{label}: {algorithm} needs a key of at least "
                f"{_HMAC_MIN_KEY_BYTES[algorithm]} bytes, got {len(raw)} "
                "(generate one with: python -c 'import secrets; "
                "print(secrets.token_urlsafe(64))')"
            )
    try:
        return get_default_algorithms()[algorithm].prepare_key(key)
    except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
        if algorithm in HMAC_ALGORITHMS:
            # PyJWT refuses PEM/JWK public keys as HMAC secrets (algorithm confusion).
            raise ConfigurationError(f"{label} is not a valid key for {algorithm}: {exc}") from exc
        raise ConfigurationError(
            f"{label} is {describe_key(key)}, but {algorithm} needs "
            f"{_needed_key(algorithm, kind)} (PEM text or a cryptography key object)"
        ) from exc


def check_algorithm(name: object) -> str:
    """``name`` when it is an algorithm the kit accepts and PyJWT can run here; else a
    :class:`ConfigurationError` that says which would do."""
    if not isinstance(name, str) or name not in HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS:
        raise ConfigurationError(
            f"algorithm {name!r} is not accepted; use one of "
            f"{sorted(HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS)}"
        )
    if name not in get_default_algorithms():
        raise ConfigurationError(
            f"algorithm {name!r} needs the 'cryptography' package: "
            "pip install 'fastapi-authkit[crypto]'"
        )
    return name


def single_algorithm(algorithms: Sequence[str] | str) -> str:
    """The one algorithm of ``algorithms`` (a key is bound to exactly one), checked."""
    algs = (algorithms,) if isinstance(algorithms, str) else tuple(algorithms)
    if not algs:
        raise ConfigurationError("algorithms must name one algorithm")
    if len(algs) > 1:
        raise ConfigurationError(
            "one key, one algorithm: give a single algorithm, or a token_key mapping "
            "{kid: (key, algorithm)} to accept several keys with their own algorithms"
        )
    return check_algorithm(algs[0])


@runtime_checkable
class KeySource(Protocol):
    """Verification keys that live elsewhere and change while the app runs (an identity
    provider's JWKS: ``fastapi_authkit.oidc.JWKSKeySet``), accepted as ``token_key``.

    Lookups are synchronous and never do I/O, so verification stays pure; the middleware
    and the refresh path call :meth:`reload` (which does) when a token names a key id the
    source does not hold yet.
    """

    @property
    def algorithms(self) -> frozenset[str]:
        """Every algorithm a key of this source may be bound to (asymmetric only)."""
        ...

    def signing_key(self, kid: str | None) -> tuple[Any, str] | None:
        """``(prepared key, its one algorithm)`` for ``kid``, or None when not held."""
        ...

    async def reload(self, kid: str | None, *, trusted: bool) -> bool:
        """Fetch the keys again when allowed, and say whether ``kid`` is now held.

        ``trusted`` is True for a token the provider itself just handed us (a token
        endpoint answer); False for one a client presented, whose reloads are rate-limited so
        that forged key ids cannot make us hammer the provider. Never raises for a provider
        that is down: the keys already held stay in use.
        """
        ...


@runtime_checkable
class OpaqueTokenSource(Protocol):
    """Access tokens that are not JWTs, vouched for by their auth server (RFC 7662 token
    introspection: ``fastapi_authkit.oidc.TokenIntrospection``), accepted as ``token_key``.

    Like a :class:`KeySource`: :meth:`lookup` answers from memory, never doing I/O, and the
    middleware and the refresh path call :meth:`introspect` (which does) for a token it does
    not know yet, then look again.
    """

    def lookup(self, token: str, now: float) -> tuple[float, float, Remembered] | None:
        """``(valid from, valid until, claims)`` of a token known active at ``now`` (or at
        any time, for ``now=-inf``), or None when it is not known (never asked, or its
        answer expired). Raises :class:`TokenExpiredError`
        for a token known inactive (expired, revoked: its session may still refresh) and
        :class:`~fastapi_authkit.errors.VerificationUnavailableError` while the auth server
        could not be asked about it."""
        ...

    async def introspect(self, token: str, *, trusted: bool) -> None:
        """Ask the auth server about ``token`` and remember the answer. ``trusted``: a token
        the auth server itself just handed us. Never raises for an auth server that is down:
        :meth:`lookup` says so."""
        ...
