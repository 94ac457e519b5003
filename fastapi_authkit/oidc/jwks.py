"""The provider's signing keys, from its JWKS, as a ``token_key`` that follows key rotation.

Parsing is PyJWT's (:class:`jwt.PyJWK`); what is decided here is which keys to hold: signing
keys only (``use`` absent or ``sig``; ``key_ops`` absent or holding ``verify``, or ``sign`` as
providers that publish their private key's operations do, oidc-provider among them), asymmetric
only, each bound to exactly one of the configured algorithms (its ``alg``, or the one
configured algorithm its key type allows), at most ``max_keys`` of them in the provider's
order (providers list their current key first).

Reloading is what a provider's key rotation needs and what a forged ``kid`` must not be able
to abuse: a token a client presents reloads at most once per ``min_reload_interval``; a
token the provider itself just handed us (a token endpoint answer) reloads at once. Callers
that arrive while a reload runs wait for it. A reload that fails keeps the keys held, so a
provider that is down never stops tokens signed with known keys from verifying.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import anyio
import jwt
from jwt.exceptions import PyJWTError

from ..errors import ConfigurationError, ProviderError
from ..tokens import ASYMMETRIC_ALGORITHMS, check_algorithm
from ..validation import positive_int
from .http import ProviderHTTP

__all__ = ["JWKSKeySet", "parse_jwks"]

logger = logging.getLogger("fastapi_authkit")

_RSA: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_BY_CURVE: Final = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512", "secp256k1": "ES256K"}
# Trusted reloads (tokens from the token endpoint) for a key id the last reload looked for
# and did not find are spaced this far apart, so a burst of refreshes signed with a key not
# yet published fetches the key set once a second. A key id not looked for yet reloads at
# once, however recent the last reload: a sign-in just after a rotation must not fail.
_TRUSTED_INTERVAL: Final = 1.0

Keys = dict[str | None, tuple[Any, str]]


def _algorithm_for(jwk: dict[str, Any], algorithms: frozenset[str]) -> str | None:
    alg = jwk.get("alg")
    if alg is not None:
        return alg if isinstance(alg, str) and alg in algorithms else None
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "RSA":
        candidates = _RSA & algorithms
    elif kty == "EC" and isinstance(crv, str) and crv in _EC_BY_CURVE:
        candidates = frozenset({_EC_BY_CURVE[crv]}) & algorithms
    elif kty == "OKP" and crv in ("Ed25519", "Ed448"):
        candidates = frozenset({"EdDSA"}) & algorithms
    else:
        candidates = frozenset()
    # One key, one algorithm: a key type that fits several configured algorithms is ambiguous.
    return next(iter(candidates)) if len(candidates) == 1 else None


def _signature_ops(ops: list[Any]) -> bool:
    return any(op in ("verify", "sign") for op in ops)


def parse_jwks(document: object, algorithms: frozenset[str], max_keys: int) -> Keys:
    """The usable signing keys of a JWKS document, by ``kid``; raises :class:`ProviderError`
    when it is not a JWKS or holds no usable key. Keys without a ``kid`` are held under
    None only when the set has exactly one usable key."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ProviderError("the JWKS is not a JSON object with a 'keys' list")
    keys: Keys = {}
    skipped = 0
    for jwk in document["keys"]:
        if len(keys) >= max_keys:
            skipped += 1
            continue
        if not isinstance(jwk, dict):
            skipped += 1
            continue
        use, ops, kid = jwk.get("use"), jwk.get("key_ops"), jwk.get("kid")
        alg = _algorithm_for(jwk, algorithms)
        if (
            (use is not None and use != "sig")
            or (ops is not None and not (isinstance(ops, list) and _signature_ops(ops)))
            or (kid is not None and not isinstance(kid, str))
            or alg is None
            or kid in keys
        ):
            skipped += 1
            continue
        try:
            key = jwt.PyJWK(jwk, algorithm=alg).key
        except (PyJWTError, ValueError, TypeError):
            skipped += 1
            continue
        # A JWKS should never carry private halves; if one does, verify with the public one.
        public = getattr(key, "public_key", None)
        keys[kid] = (public() if callable(public) else key, alg)
    if skipped:
        logger.debug("JWKS: %d key(s) skipped (not for signing, or not %s)", skipped, algorithms)
    if not keys:
        raise ProviderError(f"the JWKS holds no usable signing key for {sorted(algorithms)}")
    if None in keys and len(keys) > 1:
        del keys[None]  # a kid-less key is only unambiguous on its own
    return keys


class JWKSKeySet:
    """An identity provider's signing keys, for ``create_store(token_key=...)``.

    ``jwks_uri``: the JWKS URL, or an async callable returning it (discovery, done lazily).
    ``algorithms``: the asymmetric algorithms accepted (e.g. ``("RS256",)``; each key is
    bound to one of them). ``jwks``: an initial JWKS document (keys known before the first
    fetch). The keys are fetched at the first token that needs them, or by :meth:`load`
    (call it at startup to fail early). ``min_reload_interval``: seconds between reloads
    triggered by tokens that clients present. ``max_keys``: how many keys are held.
    ``http_client``: an ``httpx2.AsyncClient`` to share (else one per fetch). ``clock``:
    monotonic seconds, for tests.
    """

    def __init__(
        self,
        jwks_uri: str | Callable[[], Awaitable[str]],
        *,
        algorithms: Sequence[str] = ("RS256",),
        jwks: object = None,
        min_reload_interval: float = 10.0,
        max_keys: int = 16,
        timeout: float = 5.0,
        http_client: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(algorithms, str) or not algorithms:
            raise ConfigurationError("algorithms must be a non-empty list such as ['RS256']")
        for name in algorithms:
            check_algorithm(name)
            if name not in ASYMMETRIC_ALGORITHMS:
                raise ConfigurationError(
                    f"a JWKS key set verifies with public keys: {name!r} is not an asymmetric "
                    "algorithm (RS*/PS*/ES*/EdDSA)"
                )
        positive_int("max_keys", max_keys)
        if not callable(jwks_uri) and not isinstance(jwks_uri, str):
            raise ConfigurationError("jwks_uri must be a URL or an async callable returning one")
        self._uri = jwks_uri
        self._algorithms = frozenset(algorithms)
        self._max_keys = max_keys
        self._interval = float(min_reload_interval)
        self._http = ProviderHTTP(http_client, timeout)
        self._clock = clock
        self._keys: Keys = {}
        self._last_reload = -float("inf")
        self._missed: frozenset[str | None] = frozenset()  # looked for by the last reload
        self._reloading: anyio.Event | None = None
        if jwks is not None:
            try:
                self._keys = parse_jwks(jwks, self._algorithms, max_keys)
            except ProviderError as exc:
                raise ConfigurationError(f"jwks: {exc}") from exc

    def __repr__(self) -> str:
        uri = self._uri if isinstance(self._uri, str) else "(discovered)"
        return f"JWKSKeySet({uri!r}, algorithms={sorted(self._algorithms)}, keys={len(self._keys)})"

    @property
    def algorithms(self) -> frozenset[str]:
        return self._algorithms

    @property
    def key_ids(self) -> tuple[str | None, ...]:
        """The ids of the keys held, in the provider's order."""
        return tuple(self._keys)

    def signing_key(self, kid: str | None) -> tuple[Any, str] | None:
        return self._keys.get(kid)

    async def load(self) -> None:
        """Fetch the key set now; raises :class:`ProviderError` when that fails (the keys
        held so far stay in use)."""
        self._last_reload = self._clock()
        uri = self._uri if isinstance(self._uri, str) else await self._uri()
        answer = await self._http.get(uri)
        if answer.status != 200:
            raise ProviderError(f"the JWKS endpoint answered HTTP {answer.status}")
        keys = parse_jwks(answer.body, self._algorithms, self._max_keys)
        if set(keys) != set(self._keys):
            logger.info("JWKS reloaded: key ids %s", [k for k in keys if k is not None])
        self._keys = keys

    async def reload(self, kid: str | None, *, trusted: bool) -> bool:
        if self._reloading is not None:
            await self._reloading.wait()  # one fetch at a time; its result serves everyone
            return kid in self._keys
        since = self._clock() - self._last_reload
        if trusted:
            if since < _TRUSTED_INTERVAL and kid in self._missed:
                return False
        elif since < self._interval:
            return False
        self._reloading = event = anyio.Event()
        try:
            await self.load()
        except ProviderError as exc:
            logger.warning("JWKS reload failed; the keys held stay in use: %s", exc)
        finally:
            self._reloading = None
            event.set()
        found = kid in self._keys
        self._missed = frozenset() if found else frozenset((kid,))
        return found
