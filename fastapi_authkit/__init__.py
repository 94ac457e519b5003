"""fastapi-authkit: cookie-based JWT authentication with server-side refresh.

React Auth Kit's model (access token, refresh token, ``refreshApiCallback``, "who is signed
in" hooks) moved to the server: an ASGI middleware verifies the HttpOnly cookies, refreshes
before the route runs, rewrites the cookies, and FastAPI dependencies expose the state.
"""

from .callback import RefreshParam, RefreshResult
from .config import AuthStore, RefreshConfig, create_refresh, create_store
from .dependencies import (
    AuthHeader,
    AuthKitCookie,
    AuthKitDependencies,
    AuthStateDep,
    CurrentUser,
    IsAuthenticated,
    OptionalUser,
    auth_header,
    auth_state,
    auth_user,
    current_user,
    dependencies_for,
    is_authenticated,
    require_auth,
)
from .errors import (
    AuthKitError,
    ConfigurationError,
    CookieError,
    CookieTooLargeError,
    CrossSiteRequestError,
    InvalidRefreshResultError,
    ProviderError,
    RefreshError,
    RefreshTimeoutError,
    ReplicaConfirmationError,
    StoreUnavailableError,
    TokenError,
    TokenExpiredError,
    UnknownKeyError,
    UserStateError,
)
from .issuer import IssuedTokens, Issuer, SessionInfo, create_issuer
from .middleware import AuthKitMiddleware
from .state import AuthState, get_auth_state, sign_in, sign_out

__all__ = [
    "AuthHeader",
    "AuthKitCookie",
    "AuthKitDependencies",
    "AuthKitError",
    "AuthKitMiddleware",
    "AuthState",
    "AuthStateDep",
    "AuthStore",
    "ConfigurationError",
    "CookieError",
    "CookieTooLargeError",
    "CrossSiteRequestError",
    "CurrentUser",
    "InvalidRefreshResultError",
    "IssuedTokens",
    "Issuer",
    "IsAuthenticated",
    "OptionalUser",
    "ProviderError",
    "RefreshConfig",
    "RefreshError",
    "RefreshParam",
    "RefreshResult",
    "RefreshTimeoutError",
    "ReplicaConfirmationError",
    "SessionInfo",
    "StoreUnavailableError",
    "TokenError",
    "TokenExpiredError",
    "UnknownKeyError",
    "UserStateError",
    "auth_header",
    "auth_state",
    "auth_user",
    "create_issuer",
    "create_refresh",
    "create_store",
    "current_user",
    "dependencies_for",
    "get_auth_state",
    "is_authenticated",
    "require_auth",
    "sign_in",
    "sign_out",
]
