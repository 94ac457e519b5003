"""The OAuth 2.0 token endpoint: the refresh-token grant (RFC 6749 §6) as a ready-made
``refresh_api_callback``, and the answer mapping the authorization-code exchange shares.

What the answers mean for the session:

* 200 with an ``access_token`` and no ``error`` → ``is_success=True`` (a rotated
  ``refresh_token`` is kept, ``expires_in`` caps the access cookie's lifetime, and the
  refresh token's own, Keycloak's ``refresh_expires_in`` or GitHub's
  ``refresh_token_expires_in``, sizes the refresh cookie);
* ``invalid_grant`` (GitHub's ``bad_refresh_token`` for a refresh) → ``is_success=False``:
  the grant is over (revoked, expired, reused), every auth cookie is cleared;
* a refusal of *our* client (``invalid_client``, ``unauthorized_client``, ``unauthorized``,
  ``unsupported_grant_type``, ``invalid_scope``, ``invalid_target``, GitHub's
  ``incorrect_client_credentials`` and ``redirect_uri_mismatch``: a configuration problem
  no user caused and no retry cures) raises :class:`ClientRefusedError`, naming what to
  check; nothing is cleared (the sessions are fine, the client's registration is not), and
  the kit logs it at ERROR once per run of refusals;
* another OAuth error below 500 (GitHub's ``bad_verification_code``, ``invalid_request``,
  an error this module does not know...) raises :class:`GrantRefusedError`: the provider
  refuses this grant (a sign-in answers it as ``invalid_grant``, to start again; the refresh
  grant takes it as the end of the grant, as for ``invalid_grant``, and warns the first
  time each such code is seen);
* anything else — 5xx, ``server_error``, ``temporarily_unavailable``, a timeout, a network
  error, a body that is not the JSON the standard describes — raises
  :class:`ProviderError`: transient, nothing is cleared, protected routes answer 503 until
  the provider answers properly.

An ``error`` member means a refusal whatever the status: GitHub answers a bad or used code,
and a bad or expired refresh token, with HTTP 200 and ``{"error": "bad_verification_code"}``
or ``{"error": "bad_refresh_token"}``.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, Literal
from urllib.parse import quote_plus

from ..callback import RefreshParam, RefreshResult
from ..errors import ClientRefusedError, ConfigurationError, ProviderError
from ..secretvalue import SecretValue, reveal
from ..validation import is_number
from .http import Answer, ProviderHTTP, check_url

__all__ = [
    "AuthMethod",
    "ClientRefusedError",
    "GrantRefusedError",
    "RefreshTokenGrant",
    "TokenEndpoint",
    "refresh_token_grant",
    "revocation_result",
    "token_result",
]

logger = logging.getLogger("fastapi_authkit")

AuthMethod = Literal["client_secret_basic", "client_secret_post", "none"]

# OAuth errors that refuse this client rather than the user's grant: its registration or
# its credentials at the provider are wrong (RFC 6749 §5.2; ``unauthorized`` is what some
# providers answer instead of ``unauthorized_client``), with what the operator should check.
_CREDENTIALS: Final = "client_id, client_secret and auth_method"
CLIENT_ERRORS: Final = {
    "invalid_client": _CREDENTIALS,
    "unauthorized": _CREDENTIALS,
    # GitHub's names for a wrong client secret and an unregistered redirect URI.
    "incorrect_client_credentials": _CREDENTIALS,
    "redirect_uri_mismatch": "client_id and the redirect URI registered for the client",
    "unauthorized_client": "client_id and the grant types the provider allows the client "
    "(authorization_code; refresh_token to refresh)",
    "unsupported_grant_type": "client_id and the grant types the provider allows the "
    "client (authorization_code; refresh_token to refresh)",
    # The scope (or RFC 8707 resource) is this app's setting, the same for every user.
    "invalid_scope": "client_id and scope= against the scopes the provider allows the client",
    "invalid_target": "client_id and resource= against the resources the provider knows",
}
# OAuth errors that end the grant: the refresh token (or code) will never be accepted again.
GRANT_OVER_ERRORS: Final = frozenset(
    {
        "invalid_grant",
        # GitHub's name for a bad or expired refresh token (answered with HTTP 200).
        "bad_refresh_token",
    }
)
# OAuth errors that say the provider cannot answer now (RFC 6749 §4.1.2.1 names them for
# the authorization endpoint; some providers answer them at the token endpoint too).
TRANSIENT_ERRORS: Final = frozenset({"server_error", "temporarily_unavailable"})
# The refresh grant warns once per unknown error code, for this many codes.
_UNKNOWN_ERRORS_KEPT: Final = 32


class GrantRefusedError(ProviderError):
    """The token endpoint refused the grant with an OAuth error other than
    ``invalid_grant`` and the client errors (``error`` is its code): the code or token
    presented will not be accepted if tried again."""

    def __init__(self, message: str, *, error: str) -> None:
        super().__init__(message)
        self.error = error


def _seconds(value: object) -> int | None:
    # Keycloak answers refresh_expires_in=0 for tokens that do not expire: no cap, then.
    if isinstance(value, int | float) and is_number(value) and value > 0:
        return int(value)
    return None


def _refresh_lifetime(body: dict[str, Any]) -> int | None:
    """The refresh token's lifetime as the provider states it (the shorter if it names two):
    Keycloak's ``refresh_expires_in``, or ``refresh_token_expires_in`` (GitHub's, six months;
    Microsoft's for single-page apps)."""
    stated = [
        seconds
        for name in ("refresh_expires_in", "refresh_token_expires_in")
        if (seconds := _seconds(body.get(name))) is not None
    ]
    return min(stated) if stated else None


def token_result(answer: Answer) -> RefreshResult:
    """Map a token endpoint answer to a :class:`RefreshResult`, or raise
    :class:`ProviderError` (see the module docstring)."""
    status, body = answer
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        _raise_unless_grant_over(status, error, body.get("error_description"))
        return RefreshResult(is_success=False)
    if status == 200 and isinstance(body, dict):
        access, refresh = body.get("access_token"), body.get("refresh_token")
        if not isinstance(refresh, str) or not refresh:
            refresh = None
        if not isinstance(access, str) or not access:
            if refresh is None:
                raise ProviderError("the token endpoint answered 200 without an access_token")
            access = None  # the kit keeps the rotated refresh token all the same
        token_type = body.get("token_type")
        return RefreshResult(
            is_success=True,
            new_auth_token=access,
            new_auth_token_type=token_type if isinstance(token_type, str) else "Bearer",
            new_refresh_token=refresh,
            new_auth_token_expire_in=_seconds(body.get("expires_in")),
            new_refresh_token_expires_in=_refresh_lifetime(body),
        )
    raise ProviderError(f"the token endpoint answered HTTP {status} without an OAuth error")


def _raise_unless_grant_over(status: int, error: str, description: object) -> None:
    """Returns for ``invalid_grant`` and its like (the grant is over); raises what any
    other OAuth ``error`` means."""
    message = f"the token endpoint refused with HTTP {status} {error!r}" + (
        f" ({description})" if isinstance(description, str) else ""
    )
    check = CLIENT_ERRORS.get(error)
    if check is not None:
        raise ClientRefusedError(
            f"{message}: the provider refuses this client; check {check}", error=error
        )
    if status >= 500 or error in TRANSIENT_ERRORS:
        raise ProviderError(message)
    if error not in GRANT_OVER_ERRORS:
        raise GrantRefusedError(message, error=error)


class TokenEndpoint:
    """POSTs to the token endpoint with the client's authentication (RFC 6749 §2.3)."""

    __slots__ = ("_auth_method", "_client_id", "_client_secret", "_http", "_url")

    def __init__(
        self,
        url: str | Callable[[], Awaitable[str]],
        *,
        client_id: str,
        client_secret: str | SecretValue | None,
        auth_method: AuthMethod | None,
        http: ProviderHTTP,
    ) -> None:
        if not isinstance(client_id, str) or not client_id:
            raise ConfigurationError("client_id must be a non-empty string")
        # pydantic's SecretStr (pydantic-settings) and Starlette's Secret are accepted as is.
        client_secret = reveal(client_secret)
        if client_secret is not None and not isinstance(client_secret, str):
            raise ConfigurationError("client_secret must be a str (or a SecretStr) or None")
        if auth_method is None:
            auth_method = "client_secret_basic" if client_secret else "none"
        if auth_method not in ("client_secret_basic", "client_secret_post", "none"):
            raise ConfigurationError(
                "auth_method must be 'client_secret_basic', 'client_secret_post' or 'none'"
            )
        if (auth_method == "none") != (client_secret is None):
            raise ConfigurationError(
                "a public client (auth_method='none') has no client_secret; the other "
                "methods need one"
            )
        self._url = url
        self._client_id = client_id
        self._client_secret = client_secret
        self._auth_method = auth_method
        self._http = http

    async def post(self, form: Mapping[str, str], *, url: str | None = None) -> Answer:
        """POST ``form`` to the token endpoint (or to ``url``, another endpoint taking the
        same client authentication, such as revocation's)."""
        body = dict(form)
        headers: dict[str, str] = {}
        if self._auth_method == "client_secret_basic":
            # RFC 6749 §2.3.1: both parts are form-urlencoded before the Basic encoding.
            pair = f"{quote_plus(self._client_id)}:{quote_plus(self._client_secret or '')}"
            headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            body["client_id"] = self._client_id
            if self._auth_method == "client_secret_post":
                body["client_secret"] = self._client_secret or ""
        if url is None:
            url = self._url if isinstance(self._url, str) else await self._url()
        return await self._http.post_form(url, body, headers)


def revocation_result(answer: Answer) -> None:
    """Map a revocation endpoint answer (RFC 7009 §2.2) to None (revoked, or the token was
    unknown already, which the RFC answers the same way) or raise :class:`ProviderError`."""
    status, body = answer
    if status == 200:
        return
    error = body.get("error") if isinstance(body, dict) else None
    raise ProviderError(
        f"the revocation endpoint answered HTTP {status}"
        + (f" {error!r}" if isinstance(error, str) else " without an OAuth error")
    )


class RefreshTokenGrant:
    """``refresh_api_callback`` for the standard refresh-token grant (RFC 6749 §6), and its
    revocation hook (RFC 7009), which ``sign_out`` calls.

    ``scope`` narrows the refreshed token's scope; ``resource`` (RFC 8707) names the API the
    access token is for (providers with resource indicators, such as oidc-provider, issue a
    JWT access token for it only when asked). ``revocation_endpoint`` is the provider's
    RFC 7009 endpoint (a URL, or an async function returning it or None, as discovery does);
    without one, :meth:`revoke` says once that sign-out cannot revoke at the provider.
    """

    __slots__ = (
        "_endpoint",
        "_resource",
        "_revocation",
        "_scope",
        "_told_no_endpoint",
        "_unknown",
    )

    def __init__(
        self,
        endpoint: TokenEndpoint,
        *,
        scope: str | None = None,
        resource: str | None = None,
        revocation_endpoint: str | Callable[[], Awaitable[str | None]] | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._scope = scope
        self._resource = resource
        self._revocation = revocation_endpoint
        self._told_no_endpoint = False
        self._unknown: set[str] = set()

    async def revoke(self, refresh_token: str) -> None:
        """Revoke ``refresh_token`` (and so its grant) at the provider: the revocation hook
        :func:`~fastapi_authkit.sign_out` calls. Raises :class:`ProviderError` when the
        provider cannot be reached or refuses."""
        revocation = self._revocation
        url = await revocation() if callable(revocation) else revocation
        if url is None:
            if not self._told_no_endpoint:
                self._told_no_endpoint = True
                logger.warning(
                    "the identity provider has no revocation_endpoint (RFC 7009): sign-out "
                    "clears the cookies, but the refresh token stays valid at the provider "
                    "until it expires"
                )
            return
        form = {"token": refresh_token, "token_type_hint": "refresh_token"}
        revocation_result(await self._endpoint.post(form, url=url))

    async def __call__(self, param: RefreshParam) -> RefreshResult:
        form = {"grant_type": "refresh_token", "refresh_token": param.refresh_token}
        if self._scope:
            form["scope"] = self._scope
        if self._resource:
            form["resource"] = self._resource
        answer = await self._endpoint.post(form)
        try:
            result = token_result(answer)
        except GrantRefusedError as exc:
            # Not the client's, not "unavailable": the provider refuses this refresh token
            # (providers name that refusal their own way). Keeping the
            # session would answer 503 for ever; ending it costs the user one sign-in.
            self._refused_unknown(exc)
            return RefreshResult(is_success=False)
        # ClientRefusedError and ProviderError go up: the kit keeps the session, and says
        # so once per run of failures.
        if not result.is_success:
            body = answer[1]
            logger.info(
                "the identity provider ended the grant (%s)",
                body.get("error") if isinstance(body, dict) else None,
            )
        return result

    def _refused_unknown(self, exc: GrantRefusedError) -> None:
        """An OAuth error taken for the end of the grant: a WARNING the first time each
        code comes up (a bounded set: the codes are the provider's), then INFO."""
        if exc.error in self._unknown or len(self._unknown) >= _UNKNOWN_ERRORS_KEPT:
            logger.info("the identity provider ended the grant: %s", exc)
            return
        self._unknown.add(exc.error)
        logger.warning(
            "%s: taken as the end of the grant (the user signs in again). If the provider "
            "refuses every refresh this way, it is this app's configuration: check "
            "client_id, client_secret, scope= and resource= against the client registered "
            "there",
            exc,
        )


def refresh_token_grant(
    token_endpoint: str,
    *,
    client_id: str,
    client_secret: str | SecretValue | None = None,
    auth_method: AuthMethod | None = None,
    scope: str | None = None,
    resource: str | None = None,
    timeout: float = 5.0,
    http_client: Any = None,
    revocation_endpoint: str | None = None,
) -> RefreshTokenGrant:
    """A refresh callback for ``create_refresh(refresh_api_callback=...)`` calling
    ``token_endpoint`` with ``grant_type=refresh_token``. ``auth_method`` defaults to
    ``client_secret_basic`` with a secret and ``none`` (a public client) without. With
    ``revocation_endpoint`` (RFC 7009), ``sign_out`` revokes the refresh token there too."""
    if revocation_endpoint is not None:
        check_url("revocation_endpoint", revocation_endpoint, allow_http=False)
    endpoint = TokenEndpoint(
        check_url("token_endpoint", token_endpoint, allow_http=False),
        client_id=client_id,
        client_secret=client_secret,
        auth_method=auth_method,
        http=ProviderHTTP(http_client, timeout),
    )
    return RefreshTokenGrant(
        endpoint, scope=scope, resource=resource, revocation_endpoint=revocation_endpoint
    )
