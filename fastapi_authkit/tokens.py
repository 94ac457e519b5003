"""Verify access tokens (JWTs) against the configured keys; pure, with the clock passed in.

PyJWT checks the signature, the algorithm allowlist, ``crit``, ``aud`` and ``iss``. The
time claims are checked here instead, against the injected ``now``, because PyJWT reads the
wall clock itself; doing it here also closes what PyJWT leaves open: ``exp`` is required and
must be a finite number (PyJWT accepts ``1e999``, which JSON turns into infinity, and
booleans, which are ints in Python).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple, Protocol, runtime_checkable

import jwt
from jwt.algorithms import get_default_algorithms
from jwt.utils import base64url_decode

from .errors import ConfigurationError, TokenError, TokenExpiredError, UnknownKeyError
from .fifo import Fifo
from .jsoncopy import Remembered, remember

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "EXTERNAL_LEEWAY",
    "HMAC_ALGORITHMS",
    "MAX_TOKEN_BYTES",
    "KeySource",
    "OpaqueTokenSource",
    "TokenVerifier",
    "check_algorithm",
    "describe_key",
    "is_number",
    "prepare_key",
    "unverified_expiry",
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
# create_store's leeway when the tokens come from an external auth server, whose clock is not
# ours: a provider a few seconds ahead must not make every fresh token "not yet valid" (its
# iat/nbf in the future). oidc-provider allows 15 s for what it receives; ten seconds covers
# the drift of hosts that run NTP, and an access token living ten seconds past its exp is
# of no consequence next to its minutes-long lifetime.
EXTERNAL_LEEWAY: Final = 10.0
# A token bigger than this is refused before any base64 or JSON work: no legitimate access
# token comes close, and it bounds the cost of hostile input.
MAX_TOKEN_BYTES: Final = 8192


_FLOAT_MAX: Final = sys.float_info.max
# TokenVerifier's own key slot when an opaque-token source decides: never used to verify.
_OPAQUE_PLACEHOLDER_KEY: Final = b"opaque tokens are verified by introspection, not by key"


def is_number(value: object) -> bool:
    """A finite int or float (a usable number of seconds or a timestamp)."""
    if isinstance(value, float):
        return math.isfinite(value)
    # bool is an int subclass; a JSON true must not pass as a timestamp. JSON integers have
    # no size limit: one beyond a float's range (10**400) overflows math.isfinite and any
    # arithmetic with the clock, so it is no number of seconds either.
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= _FLOAT_MAX


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


def _single_algorithm(algorithms: Sequence[str] | str) -> str:
    algs = (algorithms,) if isinstance(algorithms, str) else tuple(algorithms)
    if not algs:
        raise ConfigurationError("algorithms must name one algorithm")
    if len(algs) > 1:
        raise ConfigurationError(
            "one key, one algorithm: give a single algorithm, or a token_key mapping "
            "{kid: (key, algorithm)} to accept several keys with their own algorithms"
        )
    return check_algorithm(algs[0])


def _check_audience(audience: object) -> str | list[str] | None:
    if audience is None or (isinstance(audience, str) and audience):
        return audience
    if (
        isinstance(audience, Sequence)
        and not isinstance(audience, str)
        and audience
        and all(isinstance(a, str) and a for a in audience)
    ):
        return list(audience)
    raise ConfigurationError("audience must be a non-empty string or list of strings, or None")


def _require_utf8_json_objects(token: str) -> None:
    """RFC 7519 §7.2: the header and claims are UTF-8 JSON objects. Python's json module
    would also accept UTF-16/32 and a byte-order mark; refuse them before PyJWT parses."""
    for segment in token.split(".", 2)[:2]:
        raw = base64url_decode(segment)
        raw.decode("utf-8")  # strict: raises on anything else
        # UTF-16/32 text without a BOM is valid UTF-8 byte-wise but full of NULs, which JSON
        # never has outside an escape; json.loads would sniff it and decode it anyway.
        if b"\x00" in raw or raw.lstrip(b" \t\r\n")[:1] != b"{":
            raise TokenError("JWT header and payload must be UTF-8 JSON objects")
        # A \u escape can spell half of a surrogate pair, which is no Unicode text: no UTF-8
        # response could carry it (a `sub` returned as the user would make every response of
        # the session a 500). Only text with escapes can hold one, so only that is checked.
        if b"\\u" in raw and not _is_unicode(json.loads(raw)):
            raise TokenError("JWT header and payload must not hold lone surrogates")


def _is_unicode(value: Any) -> bool:
    """Whether every string in the JSON value ``value`` encodes to UTF-8."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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


class _Key(NamedTuple):
    key: Any
    algorithms: list[str]  # exactly one: the algorithm this key is used with


class TokenVerifier:
    """Verifies access tokens for one configuration. Immutable after construction.

    Every key is bound to exactly one algorithm, so the token's ``alg`` header can only
    ever select that algorithm or be refused; HMAC and asymmetric keys never coexist.
    """

    __slots__ = (
        "_audience",
        "_cache",
        "_issuer",
        "_jwt",
        "_key",
        "_keys_by_id",
        "_leeway",
        "_max_lifetime",
        "_opaque",
        "_options",
        "_source",
        "_typ",
    )

    def __init__(
        self,
        *,
        key: object | Mapping[str, object],
        algorithms: Sequence[str] | str | None = None,
        audience: str | Sequence[str] | None = None,
        issuer: str | None = None,
        leeway: float = 0,
        typ: str | None = None,
        max_lifetime: float = 24 * 3600,
        cache_size: int = 100_000,
    ) -> None:
        self._source: KeySource | None = None
        self._opaque: OpaqueTokenSource | None = None
        if isinstance(key, OpaqueTokenSource):
            # Opaque tokens: the auth server decides; audience, issuer and typ are its to
            # check (the introspection answer), and its answers are remembered by the source.
            if algorithms is not None or typ is not None:
                raise ConfigurationError(
                    "opaque access tokens (introspection) have no algorithm or typ: do not "
                    "pass algorithms=... or token_typ=... with them"
                )
            self._opaque = key
            key = _OPAQUE_PLACEHOLDER_KEY
            algorithms = ("HS256",)
        if isinstance(key, KeySource):
            if algorithms is not None:
                raise ConfigurationError(
                    "a key set carries its own algorithms; do not pass algorithms=... with it"
                )
            if not key.algorithms or key.algorithms & HMAC_ALGORITHMS:
                raise ConfigurationError("a key set must name asymmetric algorithms only")
            self._source = key
            default = ""
        else:
            default = _single_algorithm(algorithms if algorithms is not None else ("HS256",))
        # RFC 8725 §3.11: explicit typing keeps other JWTs (ID tokens, another service's
        # tokens signed with a shared key) from passing as access tokens.
        if typ is not None and (not isinstance(typ, str) or not typ):
            raise ConfigurationError("token_typ must be a non-empty string such as 'at+jwt'")
        self._typ = typ.lower().removeprefix("application/") if typ else None
        if self._source is not None:
            self._keys_by_id: dict[str, _Key] | None = None
            self._key: _Key | None = None
        elif isinstance(key, Mapping):
            if not key:
                raise ConfigurationError("token_key mapping must hold at least one key id")
            keys: dict[str, _Key] = {}
            for kid, value in key.items():
                if not isinstance(kid, str) or not kid:
                    raise ConfigurationError("token_key ids must be non-empty strings")
                if isinstance(value, tuple):
                    if len(value) != 2:
                        raise ConfigurationError(f"token_key[{kid!r}] must be (key, algorithm)")
                    raw, alg = value[0], check_algorithm(value[1])
                else:
                    raw, alg = value, default
                label = f"token_key[{kid!r}]"
                keys[kid] = _Key(prepare_key(alg, raw, label), [alg])
            kinds = {k.algorithms[0] in HMAC_ALGORITHMS for k in keys.values()}
            if len(kinds) > 1:
                # One secret read two ways is the classic algorithm-confusion attack.
                raise ConfigurationError("token_key must not mix HMAC and asymmetric keys")
            self._keys_by_id = keys
            self._key = None
        else:
            if key is None or key == "" or key == b"":
                raise ConfigurationError("token_key is required to verify access tokens")
            self._keys_by_id = None
            self._key = _Key(prepare_key(default, key, "token_key"), [default])
        if not is_number(leeway) or leeway < 0:
            raise ConfigurationError("leeway must be a non-negative number of seconds")
        if not is_number(max_lifetime) or max_lifetime <= 0:
            raise ConfigurationError("max_token_lifetime must be a positive number of seconds")
        if issuer is not None and not isinstance(issuer, str):
            raise ConfigurationError("issuer must be a single string (compared for equality)")
        self._leeway = float(leeway)
        self._max_lifetime = float(max_lifetime)
        self._issuer = issuer
        self._audience = _check_audience(audience)
        require = ["exp"]
        if audience is not None:
            require.append("aud")
        if issuer is not None:
            require.append("iss")
        # Time claims are checked below against the injected clock.
        self._options: dict[str, Any] = {
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "verify_iss": issuer is not None,
            "require": require,
        }
        self._jwt = jwt.PyJWT()
        if not isinstance(cache_size, int) or isinstance(cache_size, bool) or cache_size < 0:
            raise ConfigurationError("verified_token_cache must be a non-negative int")
        # Per verifier, so per configuration: another key set never sees these entries.
        # token -> (valid from, valid until, claims): the window in which _check_times
        # passes, so a hit costs two comparisons.
        self._cache: Fifo[str, tuple[float, float, Remembered]] = Fifo(cache_size)

    @property
    def leeway(self) -> float:
        return self._leeway

    @property
    def key_source(self) -> KeySource | None:
        """The key set behind ``token_key``, when it is one that can reload."""
        return self._source

    @property
    def reloads(self) -> bool:
        """Whether :meth:`reload_keys_for` can make an unknown token known (a key set that
        fetches keys, or an introspecting source of opaque tokens)."""
        return self._source is not None or self._opaque is not None

    async def reload_keys_for(self, token: str, *, trusted: bool) -> bool:
        """When ``token`` names a key id the key set does not hold, ask the key set to
        reload (the I/O is the key set's); True when it now holds it. False at once for
        static keys, for a kid already held and for a token whose header cannot be read.
        With opaque tokens: introspect ``token`` unless its answer is remembered."""
        opaque = self._opaque
        if opaque is not None:
            if len(token) > MAX_TOKEN_BYTES or not token:
                return False
            await opaque.introspect(token, trusted=trusted)
            return True
        source = self._source
        if source is None or len(token) > MAX_TOKEN_BYTES:
            return False
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except Exception:
            return False
        if (kid is not None and not isinstance(kid, str)) or source.signing_key(kid) is not None:
            return False
        return await source.reload(kid, trusted=trusted)

    def _select_key(self, token: str) -> _Key:
        if self._key is not None:
            return self._key
        kid = jwt.get_unverified_header(token).get("kid")
        if self._source is not None:
            if kid is not None and not isinstance(kid, str):
                raise TokenError("kid must be a string")
            found = self._source.signing_key(kid)
            if found is None:
                raise UnknownKeyError("no key held for this key id", kid)
            return _Key(found[0], [found[1]])
        # A plain dict lookup: the kid never reaches a file system, a URL or a query.
        if not isinstance(kid, str) or self._keys_by_id is None or kid not in self._keys_by_id:
            raise TokenError("unknown or missing key id")
        return self._keys_by_id[kid]

    def mint(self, claims: Mapping[str, Any], *, signing_key: Any = None) -> str:
        """A token this verifier accepts: ``claims`` plus the configured ``iss``, ``aud``
        and ``typ``, signed with the configured key (an HMAC secret signs with itself; with
        several key ids, the last one, named in ``kid``) or with ``signing_key``, the
        private half of an asymmetric key. For the test kit (``fastapi_authkit.testing``):
        real tokens come from the auth server. Raises :class:`ConfigurationError` when
        nothing here can sign."""
        kid: str | None = None
        if self._key is not None:
            chosen = self._key
        elif self._keys_by_id:
            kid, chosen = list(self._keys_by_id.items())[-1]
        else:
            raise ConfigurationError(
                "tokens from a key set (JWKS) cannot be minted here: the provider signs them"
            )
        algorithm = chosen.algorithms[0]
        key = chosen.key if algorithm in HMAC_ALGORITHMS else signing_key
        if key is None:
            raise ConfigurationError(
                f"token_key is a public {algorithm} key: pass signing_key=<its private key> "
                "to mint a token it verifies"
            )
        payload = dict(claims)
        if self._issuer is not None:
            payload.setdefault("iss", self._issuer)
        if self._audience is not None:
            payload.setdefault("aud", self._audience)
        headers: dict[str, Any] = {}
        if kid is not None:
            headers["kid"] = kid
        if self._typ is not None:
            headers["typ"] = self._typ
        return jwt.encode(payload, key, algorithm=algorithm, headers=headers or None)

    def verify(self, token: str, now: float) -> dict[str, Any]:
        """Return the verified claims, or raise :class:`TokenError`.

        :class:`TokenExpiredError` (a ``TokenError``) means the signature is good and only
        ``exp`` has passed; it carries the claims.

        Tokens that verified are remembered by their exact string (bounded, first in first
        out), so the signature and claim shapes are checked once per token rather than once
        per request; the time claims are checked against ``now`` on every call, and an entry
        is dropped as soon as its token fails them. Nothing that failed is remembered.
        """
        if self._opaque is not None:
            return self._verify_opaque(self._opaque, token, now)
        cached = self._cache.get(token)
        if cached is not None:
            lower, upper, remembered = cached
            if lower <= now < upper:  # the time checks below, precomputed as a window
                return remembered.copy()  # type: ignore[no-any-return]
            del self._cache[token]
            self._check_times(remembered.value, now)  # raises the precise error
        claims = self._verify_uncached(token)
        self._check_times(claims, now)
        if not self._cache.size:
            return claims
        leeway, exp = self._leeway, claims["exp"]
        lower = max(
            exp - self._max_lifetime - leeway,
            claims.get("nbf", -math.inf) - leeway,
            claims.get("iat", -math.inf) - leeway,
        )
        # remember() keeps its own copy: these claims are the caller's.
        self._cache.put(token, (lower, exp + leeway, remember(claims)))
        return claims

    def _verify_opaque(self, source: OpaqueTokenSource, token: str, now: float) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenError("token too large")
        found = source.lookup(token, now)
        if found is None:
            # Not asked yet (or its answer expired): the middleware introspects, then reads
            # once more, as it reloads a key set for an unknown key id.
            raise UnknownKeyError("the auth server has not been asked about this token", None)
        claims: dict[str, Any] = found[2].copy()
        return claims

    @property
    def cache_size(self) -> int:
        return self._cache.size

    def remembered(self, token: str) -> tuple[float, float, Remembered] | None:
        """``(from, until, claims)``: when a remembered token passes its time checks, and
        its claims (copy them out, never change them), or None."""
        if self._opaque is not None:
            try:
                return self._opaque.lookup(token, -math.inf)
            except TokenError:
                return None
        return self._cache.get(token)

    def _verify_uncached(self, token: str) -> dict[str, Any]:
        """Everything that does not depend on the time: signature, algorithm, typ, aud,
        iss, and the shape of the time claims."""
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenError("token too large")
        try:
            _require_utf8_json_objects(token)
            key = self._select_key(token)
            decoded = self._jwt.decode_complete(
                token,
                key.key,
                algorithms=key.algorithms,
                options=self._options,  # type: ignore[arg-type]
                audience=self._audience,
                issuer=self._issuer,
            )
        except TokenError:
            raise
        except jwt.InvalidAlgorithmError as exc:
            # Say which algorithm the token has and which one is configured: the usual cause
            # is an auth server signing with another algorithm than create_store expects.
            alg = jwt.get_unverified_header(token).get("alg")
            raise TokenError(
                f"token is signed with {str(alg)[:20]!r}, but its key accepts only "
                f"{key.algorithms[0]!r} (create_store(algorithms=...))"
            ) from exc
        except Exception as exc:
            # Hostile input must end as "not authenticated", never as a 500, whatever
            # corner of base64/JSON/crypto it reaches.
            # PyJWT's own words ("Signature verification failed"): whoever reports it says
            # which token did not verify, once ("sign_in: the access token does not verify").
            raise TokenError(str(exc) or type(exc).__name__) from exc
        claims: dict[str, Any] = decoded["payload"]
        if self._typ is not None:
            typ = decoded["header"].get("typ")
            if not isinstance(typ, str) or typ.lower().removeprefix("application/") != self._typ:
                raise TokenError(f"token typ must be {self._typ!r}")
        if not is_number(claims.get("exp")):
            raise TokenError("exp must be a finite number")
        for name in ("nbf", "iat"):
            if name in claims and not is_number(claims[name]):
                raise TokenError(f"{name} must be a finite number")
        return claims

    def _check_times(self, claims: dict[str, Any], now: float) -> None:
        leeway = self._leeway
        for name in ("nbf", "iat"):
            value = claims.get(name)
            if value is not None and value > now + leeway:
                raise TokenError(f"{name} is in the future")
        exp = claims["exp"]
        if exp > now + self._max_lifetime + leeway:
            # An absurd exp (years ahead) is either a forging attempt with a leaked key or a
            # token that could never be revoked in practice.
            raise TokenError("exp is further ahead than the maximum token lifetime")
        if exp <= now - leeway:
            raise TokenExpiredError("token has expired", claims)


def unverified_expiry(token: str) -> float | None:
    """The ``exp`` of a JWT *without* verifying it, or None for opaque or odd tokens.

    Used only to size a refresh cookie's Max-Age (the kit has no key for refresh tokens);
    never for an authentication decision.
    """
    if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
        return None
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except Exception:
        return None
    exp: Any = claims.get("exp")
    return float(exp) if is_number(exp) else None
