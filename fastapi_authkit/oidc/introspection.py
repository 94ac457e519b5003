"""Opaque access tokens: RFC 7662 token introspection as a ``token_key``, with a bounded cache.

A provider whose access tokens are not JWTs (random strings only it can read) is asked about
each token at its introspection endpoint, with the client's authentication as at the token
endpoint. The answers are remembered, keyed by a SHA-256 of the token (the cache holds no
token), so the request path stays bounded:

* a token remembered as active costs no network: its entry lasts until ``min(exp, first use
  + cache_ttl)``, after which the provider is asked again (a revocation at the provider is
  seen within ``cache_ttl``);
* a token not remembered costs one introspection call (concurrent requests with the same
  token share it); its session's state cookie must be valid first, so a stranger's random
  cookie never reaches the provider;
* a token the provider calls inactive is anonymous; in a session with a refresh token it
  is refreshed, as an expired JWT is (expired and revoked tokens look alike from outside);
* while the provider cannot answer, the token is neither accepted nor refused: protected
  routes answer 503 (``VerificationUnavailableError``), nothing is cleared, and the token is
  asked about again after ``retry_interval`` seconds;
* an outage (no answer, or an error that is not about the client) is one WARNING for the
  whole run of failed introspections (every new token would otherwise log its own), a
  reminder at most once a minute, and a line when the provider answers again;
* a refusal of this app's client (HTTP 401/403, or an OAuth error such as ``invalid_client``:
  its credentials or registration at the provider are wrong) is answered the same way, but
  logged as the operator's to fix: one ERROR line naming what to check for the whole run of
  refusals (every new token would otherwise log its own), and a line when the provider
  accepts the client again.

At most ``max_entries`` answers are held; past that the oldest goes first.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import anyio

from ..errors import (
    ConfigurationError,
    ProviderError,
    TokenExpiredError,
    VerificationUnavailableError,
)
from ..jsoncopy import Remembered, remember
from ..notices import Streak
from ..validation import is_number, positive_int
from .grant import CLIENT_ERRORS, TokenEndpoint

__all__ = ["TokenIntrospection"]

logger = logging.getLogger("fastapi_authkit")

_ACTIVE: Final = "active"
_INACTIVE: Final = "inactive"
_DOWN: Final = "down"

# One remembered answer: (kind, until, claims). ``until`` is None until the first lookup
# fixes it against the store's clock (the introspection itself has no clock of its own).
_Entry = tuple[str, float | None, Remembered | None]


class TokenIntrospection:
    """Opaque access tokens verified at an RFC 7662 introspection endpoint, for
    ``create_store(token_key=...)`` (``OIDCClient(access_tokens="introspect")`` builds one).

    ``endpoint``: the introspection URL, or an async callable returning it (discovery).
    ``client``: the token endpoint's client authentication, which introspection shares.
    ``issuer``/``audience``: when given, an answer naming another ``iss``, or an ``aud``
    without ``audience``, is inactive. ``cache_ttl``: seconds an answer is trusted (active
    ones also never past their ``exp``). ``max_entries``: answers held at most.
    ``retry_interval``: seconds a token whose introspection failed is not asked about again
    (answered 503 meanwhile).
    """

    __slots__ = (
        "_audience",
        "_client",
        "_down",
        "_endpoint",
        "_entries",
        "_flights",
        "_issuer",
        "_max",
        "_refused",
        "_retry",
        "_ttl",
        "calls",
    )

    def __init__(
        self,
        endpoint: str | Callable[[], Awaitable[str | None]],
        *,
        client: TokenEndpoint,
        issuer: str | None = None,
        audience: str | Sequence[str] | None = None,
        cache_ttl: float = 60.0,
        max_entries: int = 10_000,
        retry_interval: float = 1.0,
    ) -> None:
        if not is_number(cache_ttl) or cache_ttl <= 0:
            raise ConfigurationError("introspection cache_ttl must be a positive number")
        if not is_number(retry_interval) or retry_interval <= 0:
            raise ConfigurationError("introspection retry_interval must be a positive number")
        positive_int("introspection max_entries", max_entries)
        self._endpoint = endpoint
        self._client = client
        self._issuer = issuer
        self._audience = (
            frozenset((audience,) if isinstance(audience, str) else audience)
            if audience is not None
            else None
        )
        self._ttl = float(cache_ttl)
        self._retry = float(retry_interval)
        self._max = max_entries
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self._flights: dict[bytes, anyio.Event] = {}
        # Every token is refused the same way until the operator fixes the client. The clock
        # only spaces the run's reminders (introspection answers have no clock of their own).
        self._refused = Streak(
            time.monotonic,
            still="token introspection still refused: the provider refuses this app's client",
            again="the introspection endpoint accepts this app's client again after %d "
            "refused introspection(s)",
            debug_traceback=True,
            level=logging.ERROR,
        )
        # An outage fails every new token alike until the provider answers again.
        self._down = Streak(
            time.monotonic,
            still="token introspection still failing",
            again="the introspection endpoint answers again after %d failed introspection(s)",
            debug_traceback=True,
        )
        self.calls = 0  # introspection requests sent (for tests and benchmarks)

    def __repr__(self) -> str:
        return f"TokenIntrospection(entries={len(self._entries)}, cache_ttl={self._ttl})"

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, token: str, now: float) -> tuple[float, float, Remembered] | None:
        key = _key(token)
        entry = self._entries.get(key)
        if entry is None:
            return None
        kind, until, claims = entry
        if until is None:
            # The first look after the answer arrived: the cache lifetime starts now, on the
            # store's clock (an active answer never outlives the token's own exp).
            until = now + (self._retry if kind == _DOWN else self._ttl)
            if claims is not None:
                until = min(until, float(claims.value["exp"]))
            self._entries[key] = entry = (kind, until, claims)
        if now >= until:
            del self._entries[key]
            return None
        if kind == _DOWN:
            raise VerificationUnavailableError("the introspection endpoint cannot be reached")
        if kind == _INACTIVE or claims is None:
            raise TokenExpiredError("the auth server says the token is not active", {})
        return (-math.inf, until, claims)

    async def introspect(self, token: str, *, trusted: bool) -> None:
        key = _key(token)
        if not trusted and key in self._entries:
            return  # answered already (maybe "down": asked again after retry_interval)
        flight = self._flights.get(key)
        if flight is not None:
            await flight.wait()  # one call per token at a time; its answer serves everyone
            return
        self._flights[key] = event = anyio.Event()
        try:
            entry = await self._ask(token)
            self._entries.pop(key, None)
            self._entries[key] = entry
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        finally:
            del self._flights[key]
            event.set()

    async def _ask(self, token: str) -> _Entry:
        self.calls += 1
        try:
            url = self._endpoint if isinstance(self._endpoint, str) else await self._endpoint()
            if url is None:
                raise ProviderError("the provider's discovery names no introspection_endpoint")
            answer = await self._client.post(
                {"token": token, "token_type_hint": "access_token"}, url=url
            )
        except ProviderError as exc:
            self._down.failed("token introspection failed (503 meanwhile): %s", exc, exc=exc)
            return (_DOWN, None, None)
        status, body = answer
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("active"), bool):
            error = body.get("error") if isinstance(body, dict) else None
            error = error if isinstance(error, str) else None
            said = f"HTTP {status}" + (f" {error!r}" if error is not None else "")
            check = CLIENT_ERRORS.get(error or "")
            if check is None and status in (401, 403):
                # RFC 7662 §2.3: 401 is the answer to a client whose authentication fails.
                check = CLIENT_ERRORS["invalid_client"]
            if check is not None:
                self._down.ended()  # the provider answers: the client is what fails
                self._refused.failed(
                    "token introspection impossible, the provider refuses this app's client "
                    "(%s): check %s; protected routes answer 503 until the configuration is "
                    "fixed",
                    said,
                    check,
                    exc=None,
                )
            else:
                self._down.failed("token introspection answered %s (503 meanwhile)", said, exc=None)
            return (_DOWN, None, None)
        self._down.ended()
        self._refused.ended()
        if not body["active"]:
            return (_INACTIVE, None, None)
        why = self._refusal(body)
        if why is not None:
            logger.info("introspected token refused: %s", why)
            return (_INACTIVE, None, None)
        claims = {name: value for name, value in body.items() if name != "active"}
        return (_ACTIVE, None, remember(claims))

    def _refusal(self, claims: dict[str, Any]) -> str | None:
        """Why an active answer is not an access token for this app, or None."""
        if not is_number(claims.get("exp")):
            return "no finite exp (the session's cookies are sized by it)"
        if claims.get("token_type") == "refresh_token":
            return "it is a refresh token"
        if self._issuer is not None and claims.get("iss", self._issuer) != self._issuer:
            return f"issued by {claims.get('iss')!r}"
        if self._audience is not None:
            aud = claims.get("aud")
            held = {aud} if isinstance(aud, str) else set(aud) if isinstance(aud, list) else set()
            if not held & self._audience:
                return f"audience {aud!r} is not {sorted(self._audience)}"
        return None


def _key(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
