"""The access-token verifier: JWTs checked against the configured keys; pure, clock passed in.

PyJWT checks the signature, the algorithm allowlist, ``crit``, ``aud`` and ``iss``. The
time claims are checked here instead, against the injected ``now``, because PyJWT reads the
wall clock itself; doing it here also closes what PyJWT leaves open: ``exp`` is required and
must be a finite number (PyJWT accepts ``1e999``, which JSON turns into infinity, and
booleans, which are ints in Python).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple

import jwt

from ..errors import ConfigurationError, TokenError, TokenExpiredError, UnknownKeyError
from ..fifo import Fifo
from ..jsoncopy import Copyable, copyable
from ..validation import is_number, limit, seconds
from .claims import MAX_TOKEN_BYTES, require_utf8_json_objects
from .keys import (
    HMAC_ALGORITHMS,
    KeySource,
    OpaqueTokenSource,
    check_algorithm,
    prepare_key,
    single_algorithm,
)

__all__ = ["EXTERNAL_LEEWAY", "TokenVerifier"]

# create_store's leeway when the tokens come from an external auth server, whose clock is not
# ours: a provider a few seconds ahead must not make every fresh token "not yet valid" (its
# iat/nbf in the future). oidc-provider allows 15 s for what it receives; ten seconds covers
# the drift of hosts that run NTP, and an access token living ten seconds past its exp is
# of no consequence next to its minutes-long lifetime.
EXTERNAL_LEEWAY: Final = 10.0
# TokenVerifier's own key slot when an opaque-token source decides: never used to verify.
_OPAQUE_PLACEHOLDER_KEY: Final = b"opaque tokens are verified by introspection, not by key"


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
        cache_size: int = 20_000,
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
            default = single_algorithm(algorithms if algorithms is not None else ("HS256",))
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
        self._leeway = seconds("leeway", leeway)
        self._max_lifetime = seconds("max_token_lifetime", max_lifetime, positive=True)
        if issuer is not None and not isinstance(issuer, str):
            raise ConfigurationError("issuer must be a single string (compared for equality)")
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
        limit("verified_token_cache", cache_size, minimum=0)
        # Per verifier, so per configuration: another key set never sees these entries.
        # token -> (valid from, valid until, claims): the window in which _check_times
        # passes, so a hit costs two comparisons. A cookie session the request reader
        # remembers is taken out of it (:meth:`forget`): the reader's record holds it then.
        self._cache: Fifo[str, tuple[float, float, Copyable]] = Fifo(cache_size)

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
            self._check_times(remembered.copy(), now)  # raises the precise error
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
        # copyable() keeps its own copy: these claims are the caller's.
        self._cache.put(token, (lower, exp + leeway, copyable(claims)))
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

    def remembered(self, token: str) -> tuple[float, float, Copyable] | None:
        """``(from, until, claims)``: when a remembered token passes its time checks, and
        its claims (copy them out, never change them), or None."""
        if self._opaque is not None:
            try:
                return self._opaque.lookup(token, -math.inf)
            except TokenError:
                return None
        return self._cache.get(token)

    def forget(self, token: str) -> None:
        """Drop what is remembered of ``token`` (its keeper is now the request reader's
        record of its session; a token verified by introspection stays its source's)."""
        self._cache.pop(token, None)

    def _verify_uncached(self, token: str) -> dict[str, Any]:
        """Everything that does not depend on the time: signature, algorithm, typ, aud,
        iss, and the shape of the time claims."""
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenError("token too large")
        try:
            require_utf8_json_objects(token)
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
