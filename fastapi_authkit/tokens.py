"""Verify access tokens (JWTs) against the configured keys; pure, with the clock passed in.

PyJWT checks the signature, the algorithm allowlist, ``crit``, ``aud`` and ``iss``. The
time claims are checked here instead, against the injected ``now``, because PyJWT reads the
wall clock itself; doing it here also closes what PyJWT leaves open: ``exp`` is required and
must be a finite number (PyJWT accepts ``1e999``, which JSON turns into infinity, and
booleans, which are ints in Python).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

import jwt
from jwt.algorithms import get_default_algorithms

from .errors import ConfigurationError, TokenError, TokenExpiredError

__all__ = ["HMAC_ALGORITHMS", "MAX_TOKEN_BYTES", "TokenVerifier", "unverified_expiry"]

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
# A token bigger than this is refused before any base64 or JSON work: no legitimate access
# token comes close, and it bounds the cost of hostile input.
MAX_TOKEN_BYTES: Final = 8192


def _is_number(value: object) -> bool:
    # bool is an int subclass; a JSON true must not pass as a timestamp.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _prepare_key(algorithms: Sequence[str], key: object, label: str) -> Any:
    """Validate ``key`` for every configured algorithm and return it in PyJWT's form."""
    prepared: Any = None
    for name in algorithms:
        try:
            algorithm = get_default_algorithms()[name]
        except KeyError as exc:  # pragma: no cover - guarded by _check_algorithms
            raise ConfigurationError(f"unsupported algorithm {name!r}") from exc
        if name in HMAC_ALGORITHMS:
            raw = key.encode() if isinstance(key, str) else key
            if not isinstance(raw, bytes):
                raise ConfigurationError(f"{label}: an HMAC key must be str or bytes")
            if len(raw) < _HMAC_MIN_KEY_BYTES[name]:
                raise ConfigurationError(
                    f"{label}: {name} needs a key of at least {_HMAC_MIN_KEY_BYTES[name]} bytes"
                )
        try:
            prepared = algorithm.prepare_key(key)
        except (jwt.InvalidKeyError, ValueError, TypeError) as exc:
            # PyJWT refuses PEM/JWK public keys as HMAC secrets (algorithm confusion).
            raise ConfigurationError(f"{label} is not a valid key for {name}: {exc}") from exc
    return prepared


def _check_algorithms(algorithms: Sequence[str]) -> tuple[str, ...]:
    if isinstance(algorithms, str):
        algorithms = (algorithms,)
    algs = tuple(algorithms)
    if not algs:
        raise ConfigurationError("algorithms must name at least one algorithm")
    for name in algs:
        if name not in HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS:
            raise ConfigurationError(
                f"algorithm {name!r} is not accepted; use one of "
                f"{sorted(HMAC_ALGORITHMS | ASYMMETRIC_ALGORITHMS)}"
            )
        if name not in get_default_algorithms():
            raise ConfigurationError(
                f"algorithm {name!r} needs the 'cryptography' package: "
                "pip install 'fastapi-authkit[crypto]'"
            )
    kinds = {name in HMAC_ALGORITHMS for name in algs}
    if len(kinds) > 1:
        # One key interpreted two ways is the classic algorithm-confusion attack.
        raise ConfigurationError("algorithms must not mix HMAC (HS*) with asymmetric ones")
    return algs


class TokenVerifier:
    """Verifies access tokens for one configuration. Immutable after construction."""

    __slots__ = (
        "_algorithms",
        "_audience",
        "_issuer",
        "_jwt",
        "_key",
        "_keys_by_id",
        "_leeway",
        "_options",
        "_typ",
    )

    def __init__(
        self,
        *,
        key: object | Mapping[str, object],
        algorithms: Sequence[str],
        audience: str | Sequence[str] | None = None,
        issuer: str | None = None,
        leeway: float = 0,
        typ: str | None = None,
    ) -> None:
        self._algorithms = _check_algorithms(algorithms)
        # RFC 8725 §3.11: explicit typing keeps other JWTs (ID tokens, another service's
        # tokens signed with a shared key) from passing as access tokens.
        self._typ = typ.lower() if typ else None
        if isinstance(key, Mapping):
            if not key:
                raise ConfigurationError("token_key mapping must hold at least one key id")
            keys: dict[str, Any] = {}
            for kid, value in key.items():
                if not isinstance(kid, str) or not kid:
                    raise ConfigurationError("token_key ids must be non-empty strings")
                keys[kid] = _prepare_key(self._algorithms, value, f"token_key[{kid!r}]")
            self._keys_by_id: dict[str, Any] | None = keys
            self._key: Any = None
        else:
            if key is None or key == "" or key == b"":
                raise ConfigurationError("token_key is required to verify access tokens")
            self._keys_by_id = None
            self._key = _prepare_key(self._algorithms, key, "token_key")
        if not _is_number(leeway) or leeway < 0:
            raise ConfigurationError("leeway must be a non-negative number of seconds")
        if issuer is not None and not isinstance(issuer, str):
            raise ConfigurationError("issuer must be a single string (compared for equality)")
        self._leeway = float(leeway)
        self._issuer = issuer
        self._audience = (
            audience if audience is None or isinstance(audience, str) else list(audience)
        )
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

    @property
    def leeway(self) -> float:
        return self._leeway

    def _select_key(self, token: str) -> Any:
        if self._keys_by_id is None:
            return self._key
        kid = jwt.get_unverified_header(token).get("kid")
        # A plain dict lookup: the kid never reaches a file system, a URL or a query.
        if not isinstance(kid, str) or kid not in self._keys_by_id:
            raise TokenError("unknown or missing key id")
        return self._keys_by_id[kid]

    def verify(self, token: str, now: float) -> dict[str, Any]:
        """Return the verified claims, or raise :class:`TokenError`.

        :class:`TokenExpiredError` (a ``TokenError``) means the signature is good and only
        ``exp`` has passed; it carries the claims.
        """
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenError("token too large")
        try:
            decoded = self._jwt.decode_complete(
                token,
                self._select_key(token),
                algorithms=self._algorithms,
                options=self._options,  # type: ignore[arg-type]
                audience=self._audience,
                issuer=self._issuer,
            )
        except TokenError:
            raise
        except Exception as exc:
            # Hostile input must end as "not authenticated", never as a 500, whatever
            # corner of base64/JSON/crypto it reaches.
            raise TokenError(f"token does not verify: {exc}") from exc
        claims: dict[str, Any] = decoded["payload"]
        if self._typ is not None:
            typ = decoded["header"].get("typ")
            if not isinstance(typ, str) or typ.lower().removeprefix("application/") != self._typ:
                raise TokenError(f"token typ must be {self._typ!r}")
        exp = claims.get("exp")
        if not _is_number(exp):
            raise TokenError("exp must be a finite number")
        for name in ("nbf", "iat"):
            if name in claims:
                value = claims[name]
                if not _is_number(value):
                    raise TokenError(f"{name} must be a finite number")
                if value > now + self._leeway:
                    raise TokenError(f"{name} is in the future")
        if exp <= now - self._leeway:  # type: ignore[operator]
            raise TokenExpiredError("token has expired", claims)
        return claims


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
    return float(exp) if _is_number(exp) else None
