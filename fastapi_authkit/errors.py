"""The exception tree of fastapi-authkit.

Everything the kit raises derives from :class:`AuthKitError`::

    AuthKitError
     ├── ConfigurationError      bad arguments to create_store / create_refresh,
     │                           or the middleware missing where it is needed
     ├── TokenError              an access token that does not verify
     │    ├── TokenExpiredError  ... because it is past exp (carries the claims)
     │    └── UnknownKeyError    ... because no key we hold has its kid (yet)
     ├── CookieError             a cookie that cannot be issued
     │    └── CookieTooLargeError
     ├── UserStateError          user state that cannot be serialized into its cookie
     ├── CrossSiteRequestError   sign_in from another site (login CSRF): a 403
     ├── InvalidGrantError       a refresh token a client sent that is no (longer) valid: a 400
     ├── LoginThrottled          a sign-in attempt refused by the login guard: a 429
     │                           (locked), or a 503 (its store down, failing closed)
     ├── StoreUnavailableError   the shared store (Redis) cannot be reached: fail closed
     │    ├── ReplicaConfirmationError  ... or its replicas did not confirm a write in time
     │    └── ServerSettingError  ... or is set up unsafely (also a ConfigurationError)
     ├── ProviderError           the identity provider (oidc) could not give a usable answer
     │    └── ClientRefusedError  ... because it refuses this app's client: its configuration
     └── RefreshError            the refresh callback could not give an answer
          ├── RefreshTimeoutError
          └── InvalidRefreshResultError

Foreign errors (PyJWT, itsdangerous, json) are translated at the boundary with
``raise ... from exc``; mapping to HTTP status codes happens only in the FastAPI layer,
the middleware's CSRF refusal, :class:`CrossSiteRequestError`, :class:`InvalidGrantError`
and :class:`LoginThrottled`, which are Starlette's ``HTTPException`` too, so that any
Starlette or FastAPI app answers them (403; 400; 429 or 503 with ``Retry-After``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from starlette.exceptions import HTTPException

__all__ = [
    "AuthKitError",
    "ClientRefusedError",
    "ConfigurationError",
    "CookieError",
    "CookieTooLargeError",
    "CrossSiteRequestError",
    "InvalidGrantError",
    "InvalidRefreshResultError",
    "LoginThrottled",
    "ProviderError",
    "RefreshError",
    "RefreshTimeoutError",
    "ReplicaConfirmationError",
    "ServerSettingError",
    "StoreUnavailableError",
    "TokenError",
    "TokenExpiredError",
    "UnknownKeyError",
    "VerificationUnavailableError",
    "UserStateError",
]


class AuthKitError(Exception):
    """Root of every error raised by fastapi-authkit."""


class ConfigurationError(AuthKitError, ValueError):
    """The kit was configured wrongly; raised at ``create_store`` time, not per request."""


class TokenError(AuthKitError):
    """An access token failed verification (signature, algorithm, claims or shape)."""


class TokenExpiredError(TokenError):
    """The signature verified but the token is past ``exp`` (beyond the leeway).

    The verified claims are kept so the middleware can still hand the (expired but
    authentic) identity to the refresh decision.
    """

    def __init__(self, message: str, claims: dict[str, Any]) -> None:
        super().__init__(message)
        self.claims = claims


class UnknownKeyError(TokenError):
    """The token names a key id (``kid``) that no key we hold has.

    With a fetching key set (``fastapi_authkit.oidc.JWKSKeySet``) the middleware reloads the
    provider's keys (rate-limited) and tries once more before treating the token as foreign.
    """

    def __init__(self, message: str, kid: str | None) -> None:
        super().__init__(message)
        self.kid = kid


class VerificationUnavailableError(TokenError):
    """The token cannot be verified now: the auth server that vouches for it (RFC 7662
    introspection) cannot be reached. Neither accepted nor refused: protected routes answer
    503 and the session's cookies stay as they are."""


class CookieError(AuthKitError):
    """A cookie value cannot be issued (characters outside RFC 6265 cookie-octets)."""


class CookieTooLargeError(CookieError):
    """A cookie would exceed the 4096-byte limit browsers enforce (RFC 6265bis)."""

    def __init__(self, name: str, size: int, limit: int) -> None:
        super().__init__(
            f"cookie {name!r} would be {size} bytes, over the {limit}-byte limit; "
            "browsers drop such cookies silently, so it is refused here"
        )
        self.name = name
        self.size = size
        self.limit = limit


class CrossSiteRequestError(AuthKitError, HTTPException):
    """``sign_in`` was called for a request from another site (login CSRF: a form on an
    attacker's page signing the victim in to the attacker's account).

    Raised from the route; as a Starlette ``HTTPException`` it is answered with 403 and
    nothing is queued. ``reason`` says what gave the request away.
    """

    def __init__(self, reason: str) -> None:
        HTTPException.__init__(self, 403, f"cross-site sign-in refused: {reason}")
        self.reason = reason


class InvalidGrantError(AuthKitError, HTTPException):
    """A refresh token that a client sent to the app's token route is not valid: unknown,
    expired, revoked, or rotated out and reused (its whole session is then revoked).

    ``reason`` says which (``"reuse"``, ``"revoked"``, ``"expired"``, ``"unknown"``), for
    the app's logs; :attr:`body` is the OAuth 2.0 error response (RFC 6749 §5.2), which
    says nothing of the reason. As a Starlette ``HTTPException`` any app answers it with
    400; ``issuer.token_endpoint`` answers it with ``body``.
    """

    error = "invalid_grant"
    description = "the refresh token is invalid, expired or revoked"

    def __init__(self, reason: str) -> None:
        HTTPException.__init__(
            self, 400, f"{self.error}: {self.description}", headers={"Cache-Control": "no-store"}
        )
        self.reason = reason

    @property
    def body(self) -> dict[str, str]:
        """``{"error": "invalid_grant", "error_description": ...}``."""
        return {"error": self.error, "error_description": self.description}


class LoginThrottled(AuthKitError, HTTPException):
    """A sign-in attempt the login guard (:func:`~fastapi_authkit.create_login_guard`)
    refused before the password was checked.

    ``reason`` is ``"locked"`` (too many failed attempts for this account or from this
    address: 429) or ``"unavailable"`` (the guard's store could not be reached and the guard
    fails closed: 503). ``retry_after`` is whole seconds, also sent as ``Retry-After``. As a
    Starlette ``HTTPException`` any Starlette or FastAPI app answers it as it is; an app
    may catch it to render its own page. The answer is the same for every account name,
    existing or not, and does not say whether the account or the address is locked.
    """

    def __init__(self, reason: Literal["locked", "unavailable"], retry_after: float) -> None:
        seconds = max(1, math.ceil(retry_after))
        status = 429 if reason == "locked" else 503
        detail = (
            "too many sign-in attempts; try again later"
            if reason == "locked"
            else "sign-in is unavailable for now; try again later"
        )
        HTTPException.__init__(self, status, detail, headers={"Retry-After": str(seconds)})
        self.reason = reason
        self.retry_after = seconds


class UserStateError(AuthKitError):
    """The user state given to ``sign_in`` (or by a refresh) is not JSON-serializable."""


class StoreUnavailableError(AuthKitError):
    """The shared store could not answer (Redis down or slow).

    The kit fails closed on it: no session is accepted that could not be checked, no cookie
    is cleared and no refresh token is consumed; protected routes answer 503.
    """


class ServerSettingError(StoreUnavailableError, ConfigurationError):
    """The store's server is set up in a way the kit cannot be safe on (Redis's
    ``maxmemory-policy`` other than ``noeviction``). A configuration error, found at the
    store's first use rather than at ``create_store``; also a store outage, so requests
    fail closed on it (503, nothing cleared) instead of answering 500. Logged as an error
    when found."""


class ReplicaConfirmationError(StoreUnavailableError):
    """Fewer replicas than ``RedisStore(wait_replicas=...)`` confirmed a write in time.

    A write the primary holds alone may vanish in a failover, so it is treated like an
    outage: nothing is handed out or cleared for that request (an unconfirmed rotation is
    undone), and the next request tries again.
    """

    def __init__(self, operation: str, wanted: int, confirmed: int, timeout: float) -> None:
        super().__init__(
            f"{operation}: {confirmed} of {wanted} replicas confirmed within {timeout}s"
        )
        self.operation = operation
        self.wanted = wanted
        self.confirmed = confirmed


class ProviderError(AuthKitError):
    """The identity provider could not be reached or answered something unusable (network
    error, timeout, 5xx, a body that is not the JSON the standard describes).

    Transient by nature: raised from the ready-made refresh callback it clears nothing, and
    the sign-in routes answer 502/503 with it.
    """


class ClientRefusedError(ProviderError):
    """The auth server refused this app's client (``error`` is its OAuth error code): the
    client id, secret, authentication method, redirect URI, scope or allowed grant types
    registered there do not match this app's configuration. Not transient, and not the
    user's doing: the operator must fix the configuration. Raised by
    ``fastapi_authkit.oidc``'s token calls; a hand-written refresh callback may raise it
    too, for the same treatment (the session kept, one ERROR line per streak)."""

    def __init__(self, message: str, *, error: str) -> None:
        super().__init__(message)
        self.error = error


class RefreshError(AuthKitError):
    """The refresh callback raised, so no definitive answer about the session exists."""


class RefreshTimeoutError(RefreshError):
    """The refresh callback did not answer within ``create_refresh(timeout=...)``."""


class InvalidRefreshResultError(RefreshError):
    """The refresh callback answered with something unusable (wrong type, bad token)."""
