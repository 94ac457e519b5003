"""OIDCClient: one identity provider, everything the store and the sign-in routes need."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal, TypedDict

from fastapi import APIRouter

from ..errors import ConfigurationError
from ..issuer import Issuer
from ..refreshconfig import RefreshConfig, create_refresh
from ..secretvalue import SecretValue
from ..validation import flag, function, positive_int
from .discovery import ProviderMetadata, discover
from .grant import AuthMethod, RefreshTokenGrant, TokenEndpoint
from .http import ProviderHTTP, check_url
from .identity import IdentityHook
from .introspection import TokenIntrospection
from .jwks import JWKSKeySet
from .modes import UNSET, Unset, check_provider_session, check_social, explicit_endpoints
from .signin import DEFAULT_PREFIX, sign_in_router

__all__ = ["OIDCClient", "StoreOptions", "default_user_state"]

# What the default user state keeps of the ID token: who it is and how to greet them.
_USER_CLAIMS: Final = ("sub", "name", "preferred_username", "email")
# What the sign-in routes send themselves (PKCE, state and nonce are their security).
_PROTOCOL_PARAMS: Final = frozenset(
    {
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "resource",
    }
)


def default_user_state(id_claims: Mapping[str, Any]) -> dict[str, Any]:
    """The ID token's ``sub``, ``name``, ``preferred_username`` and ``email``, where given."""
    return {name: id_claims[name] for name in _USER_CLAIMS if name in id_claims}


class StoreOptions(TypedDict):
    """The ``create_store`` arguments an :class:`OIDCClient` provides."""

    token_key: JWKSKeySet | TokenIntrospection
    issuer: str | None
    audience: str | Sequence[str] | None
    token_typ: str | None
    refresh: RefreshConfig


class OIDCClient:
    """A client (relying party) of one OpenID Connect provider.

    ``issuer``: the provider's issuer URL; its discovery document is fetched lazily (at the
    first sign-in, refresh or key lookup) and must name exactly this issuer.
    ``client_id``/``client_secret``/``auth_method``: how this app authenticates at the token
    endpoint (``client_secret_basic`` by default with a secret, ``none`` for a public
    client; the secret may be pydantic's ``SecretStr``). ``audience``: the ``aud`` access
    tokens must carry (this API's identifier; pass None explicitly only if your provider
    sets none). ``resource``: the RFC 8707
    resource indicator sent with the authorization and token requests (providers that
    issue JWT access tokens per API want it; defaults to None). ``scope``: requested at
    sign-in; ``offline_access`` is added (with ``prompt=consent``, OIDC Core §11) when
    ``refresh_tokens`` is true and discovery does not list scopes without it.
    ``refresh_tokens``: whether the provider issues refresh tokens (default True: a sign-in
    that gets none is refused with a clear error, rather than a session that ends at the
    first access-token expiry); False for providers that never issue one (the session then
    lasts as long as its access token). ``authorization_params``: extra parameters of the
    authorization request (``{"access_type": "offline"}`` for Google, ``{"prompt": None}`` to
    drop the default ``prompt=consent``; the protocol's own parameters cannot be replaced).
    ``max_concurrent_signins``: code exchanges in flight at once in this process; a callback
    beyond it answers 503 without calling the provider.
    ``algorithms``: the signature algorithms accepted (asymmetric only). ``token_typ``:
    require this JWT ``typ`` on access tokens (``"at+jwt"`` for RFC 9068 providers).
    ``redirect_uri``: the callback URL registered at the provider (default: this app's
    callback route as the request reached it). ``user_state``: turns the verified ID token's
    claims into the session's user state. ``timeout``: seconds per provider call.
    ``min_key_reload_interval``: seconds between key-set reloads caused by unknown key ids
    in tokens that clients present. ``access_tokens``: ``"jwt"`` (verified here with the
    provider's keys) or ``"introspect"`` for providers whose access tokens are opaque
    (asked about at discovery's ``introspection_endpoint``, RFC 7662, with this client's
    authentication; ``audience``, when not None, must be in the answer's ``aud``);
    ``introspection_cache_ttl`` and ``introspection_cache_size`` bound how long and how
    many answers are remembered (see :class:`TokenIntrospection`). ``http_client``: an
    ``httpx2.AsyncClient`` to pool connections (else one per call).
    ``allow_insecure_http``: accept http provider URLs off loopback (never in production).

    Social sign-in (the provider only says who signed in; this app keeps the session):
    ``session``: the :class:`~fastapi_authkit.issuer.Issuer` that starts it (the store is
    ``create_store(token_issuer=issuer)``); ``on_identity``: the hook mapping the
    :class:`~fastapi_authkit.oidc.ProviderIdentity` to an
    :class:`~fastapi_authkit.oidc.AppUser`, or None (or raising
    :class:`~fastapi_authkit.oidc.IdentityRefused`) to refuse with 403; ``name``: the
    provider's name in the identity (default: ``issuer``). Without ``audience``,
    ``refresh_tokens``, ``user_state``, ``access_tokens``, ``token_typ`` or ``resource``,
    which configure the provider's tokens as the session. A plain OAuth 2.0 provider
    (GitHub-style, no discovery, no ID token) is given ``authorization_endpoint``,
    ``token_endpoint`` and ``userinfo_endpoint`` (its user API, called with the access
    token) and ``subject_claim`` (the userinfo member naming the user, ``"sub"`` by default;
    GitHub's is ``"id"``). ``fetch_userinfo``: with OpenID Connect, ask the provider's
    userinfo endpoint (``userinfo_endpoint``, else discovery's) with the access token after
    the ID token verifies, so that the hook gets the claims the scopes asked for (a provider
    often puts only ``sub`` in the ID token when it issues an access token, OIDC Core §5.4);
    True by default; False to use the ID token's claims only (one call fewer per sign-in,
    for providers whose ID tokens carry the claims, or whose access tokens are for another
    API and refused at their userinfo endpoint).
    """

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        audience: str | Sequence[str] | Unset | None = UNSET,
        client_secret: str | SecretValue | None = None,
        auth_method: AuthMethod | None = None,
        scope: str = "openid",
        refresh_tokens: bool | None = None,
        authorization_params: Mapping[str, str | None] | None = None,
        max_concurrent_signins: int = 16,
        resource: str | None = None,
        algorithms: Sequence[str] = ("RS256",),
        token_typ: str | None = None,
        redirect_uri: str | None = None,
        user_state: Callable[[Mapping[str, Any]], Any] | None = None,
        timeout: float = 5.0,
        min_key_reload_interval: float = 10.0,
        access_tokens: Literal["jwt", "introspect"] = "jwt",
        introspection_cache_ttl: float = 60.0,
        introspection_cache_size: int = 10_000,
        http_client: Any = None,
        allow_insecure_http: bool = False,
        clock: Callable[[], float] = time.monotonic,
        session: Issuer | None = None,
        on_identity: IdentityHook | None = None,
        name: str | None = None,
        authorization_endpoint: str | None = None,
        token_endpoint: str | None = None,
        userinfo_endpoint: str | None = None,
        subject_claim: str = "sub",
        fetch_userinfo: bool | None = None,
    ) -> None:
        self.issuer = check_url("issuer", issuer, allow_http=allow_insecure_http)
        self.name = issuer if name is None else name
        if not isinstance(self.name, str) or not self.name:
            raise ConfigurationError("name must be a non-empty string (the provider's name)")
        self.session = session
        self.userinfo_endpoint = (
            None
            if userinfo_endpoint is None
            else check_url("userinfo_endpoint", userinfo_endpoint, allow_http=allow_insecure_http)
        )
        self.subject_claim = subject_claim
        self._endpoints = explicit_endpoints(
            self.issuer, authorization_endpoint, token_endpoint, allow_insecure_http
        )
        self.discovered = self._endpoints is None
        if session is None:
            audience = check_provider_session(
                on_identity,
                self._endpoints,
                audience,
                self.userinfo_endpoint,
                fetch_userinfo=fetch_userinfo,
            )
            refresh_tokens = True if refresh_tokens is None else refresh_tokens
        else:
            on_identity = check_social(
                session,
                on_identity,
                scope=scope,
                userinfo_endpoint=self.userinfo_endpoint,
                fetch_userinfo=fetch_userinfo,
                explicit=self._endpoints is not None,
                conflicting={
                    "audience": not isinstance(audience, Unset),
                    "refresh_tokens": refresh_tokens is not None,
                    "user_state": user_state is not None,
                    "access_tokens": access_tokens != "jwt",
                    "token_typ": token_typ is not None,
                    "resource": resource is not None,
                },
            )
            audience = None
            refresh_tokens = False  # no provider refresh token is kept: the issuer's is
        self.on_identity: IdentityHook | None = on_identity
        self.fetch_userinfo = fetch_userinfo is not False
        if user_state is None:
            user_state = default_user_state
        if redirect_uri is not None:
            check_url("redirect_uri", redirect_uri, allow_http=allow_insecure_http)
        if not isinstance(scope, str) or not scope.strip():
            raise ConfigurationError("scope must be a non-empty, space-separated string")
        function("user_state", user_state)
        flag("refresh_tokens", refresh_tokens)
        positive_int("max_concurrent_signins", max_concurrent_signins)
        if access_tokens not in ("jwt", "introspect"):
            raise ConfigurationError("access_tokens must be 'jwt' or 'introspect'")
        if access_tokens == "introspect" and token_typ is not None:
            raise ConfigurationError("opaque access tokens have no typ: drop token_typ")
        extra = dict(authorization_params or {})
        for name, value in extra.items():
            if name in _PROTOCOL_PARAMS:
                raise ConfigurationError(
                    f"authorization_params cannot set {name!r}: the sign-in routes set it"
                    + (" (pass scope= or resource=)" if name in ("scope", "resource") else "")
                )
            if not isinstance(name, str) or not (value is None or isinstance(value, str)):
                raise ConfigurationError(
                    "authorization_params maps parameter names to strings (or None)"
                )
        self.client_id = client_id
        self.audience = audience
        self.scope = scope
        self.refresh_tokens = refresh_tokens
        self.authorization_params: Mapping[str, str | None] = extra
        self.max_concurrent_signins = max_concurrent_signins
        self.resource = resource
        self.token_typ = token_typ
        self.redirect_uri = redirect_uri
        self.user_state = user_state
        self._allow_http = allow_insecure_http
        self.http = ProviderHTTP(http_client, timeout)
        # Given endpoints stand for discovery (a plain OAuth 2.0 provider has none).
        self._metadata: ProviderMetadata | None = self._endpoints
        self.keys = JWKSKeySet(
            self._jwks_uri,
            algorithms=algorithms,
            min_reload_interval=min_key_reload_interval,
            timeout=timeout,
            http_client=http_client,
            clock=clock,
        )
        self.token_endpoint = TokenEndpoint(
            self._token_endpoint_url,
            client_id=client_id,
            client_secret=client_secret,
            auth_method=auth_method,
            http=self.http,
        )
        self.introspection: TokenIntrospection | None = None
        if access_tokens == "introspect":
            self.introspection = TokenIntrospection(
                self._introspection_endpoint_url,
                client=self.token_endpoint,
                issuer=self.issuer,
                audience=audience,
                cache_ttl=introspection_cache_ttl,
                max_entries=introspection_cache_size,
            )
        self.refresh_grant = RefreshTokenGrant(
            self.token_endpoint,
            resource=resource,
            revocation_endpoint=self._revocation_endpoint_url,
        )

    def __repr__(self) -> str:
        return f"OIDCClient(issuer={self.issuer!r}, client_id={self.client_id!r})"

    async def metadata(self) -> ProviderMetadata:
        """The provider's discovery document, fetched once (again after a failure);
        raises :class:`ProviderError` while it cannot be had."""
        if self._metadata is None:
            self._metadata = await discover(
                self.issuer, http=self.http, allow_http=self._allow_http
            )
        return self._metadata

    async def _jwks_uri(self) -> str:
        return (await self.metadata()).jwks_uri

    async def _token_endpoint_url(self) -> str:
        return (await self.metadata()).token_endpoint

    async def _introspection_endpoint_url(self) -> str | None:
        return (await self.metadata()).introspection_endpoint

    async def _revocation_endpoint_url(self) -> str | None:
        return (await self.metadata()).revocation_endpoint

    def store_options(
        self, *, interval: float = 60.0, timeout: float = 10.0, grace_period: float = 10.0
    ) -> StoreOptions:
        """``create_store(secret_key=..., **oidc.store_options())``: the provider's key set,
        issuer, audience and ``typ`` verify access tokens, and the refresh-token grant
        refreshes them ``interval`` seconds before they expire. With
        ``access_tokens="introspect"`` the introspection stands for the key set (and checks
        the issuer and audience itself)."""
        if self.session is not None:
            raise ConfigurationError(
                f"{self!r} signs into the issuer's sessions (session=): the store verifies "
                "the issuer's tokens, not the provider's; build it with "
                "create_store(secret_key=..., token_issuer=issuer), without store_options()"
            )
        opaque = self.introspection
        return StoreOptions(
            token_key=self.keys if opaque is None else opaque,
            issuer=self.issuer if opaque is None else None,
            audience=self.audience if opaque is None else None,
            token_typ=self.token_typ,
            refresh=create_refresh(
                interval=interval,
                refresh_api_callback=self.refresh_grant,
                timeout=timeout,
                grace_period=grace_period,
            ),
        )

    def router(self, *, prefix: str = DEFAULT_PREFIX) -> APIRouter:
        """``GET {prefix}/login`` and ``GET {prefix}/callback``: the authorization-code flow
        with PKCE, ending in ``sign_in`` (with ``session=``, in the issuer's ``sign_in`` for
        the user ``on_identity`` names). Register ``{prefix}/callback`` at the provider;
        give each provider of an app its own prefix (each gets its own transaction cookie)."""
        return sign_in_router(self, prefix=prefix)
