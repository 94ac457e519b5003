"""Working behind an OpenID Connect / OAuth 2.0 identity provider (Keycloak, Auth0, Okta,
Cognito, Entra ID, oidc-provider, ...): its signing keys from its JWKS, following key
rotation; its endpoints from discovery; the refresh-token grant as the refresh callback; and
sign-in through the authorization-code flow with PKCE, into the provider's tokens as the
session or, with ``OIDCClient(session=issuer, on_identity=...)``, into this app's own
sessions (social sign-in, OpenID Connect or plain OAuth 2.0 providers).

Needs the ``oidc`` extra (``pip install 'fastapi-authkit[oidc]'``), which brings httpx2.
"""

try:
    import httpx2 as _httpx2  # noqa: F401
except ModuleNotFoundError as exc:  # pragma: no cover - the test environment has it
    raise ModuleNotFoundError(
        "fastapi_authkit.oidc needs httpx2: pip install 'fastapi-authkit[oidc]'"
    ) from exc

from .client import OIDCClient, StoreOptions, default_user_state
from .discovery import ProviderMetadata, discover
from .grant import (
    ClientRefusedError,
    GrantRefusedError,
    RefreshTokenGrant,
    refresh_token_grant,
    token_result,
)
from .identity import AppUser, IdentityRefused, ProviderIdentity
from .introspection import TokenIntrospection
from .jwks import JWKSKeySet, parse_jwks

__all__ = [
    "AppUser",
    "ClientRefusedError",
    "GrantRefusedError",
    "JWKSKeySet",
    "IdentityRefused",
    "OIDCClient",
    "ProviderIdentity",
    "ProviderMetadata",
    "RefreshTokenGrant",
    "StoreOptions",
    "TokenIntrospection",
    "default_user_state",
    "discover",
    "parse_jwks",
    "refresh_token_grant",
    "token_result",
]
