"""fastapi-authkit: cookie-based JWT authentication with server-side refresh.

React Auth Kit's model (access token, refresh token, ``refreshApiCallback``, "who is signed
in" hooks) moved to the server: an ASGI middleware verifies the HttpOnly cookies, refreshes
before the route runs, rewrites the cookies, and FastAPI dependencies expose the state.

This module holds what an application imports to set the kit up and use it. The rest lives
in its own module: the audit events in :mod:`fastapi_authkit.events`, every error in
:mod:`fastapi_authkit.errors`, the ``Annotated`` aliases and per-store dependencies in
:mod:`fastapi_authkit.dependencies`, the issuer's types in :mod:`fastapi_authkit.issuer`,
the stores in :mod:`fastapi_authkit.stores`.
"""

import importlib as _importlib
import warnings as _warnings
from typing import Any as _Any

from .callback import RefreshParam, RefreshResult
from .config import create_refresh, create_store
from .dependencies import (
    auth_header,
    auth_state,
    auth_user,
    current_user,
    is_authenticated,
    require_auth,
)
from .errors import AuthKitError, ConfigurationError, StoreUnavailableError, TokenError
from .issuer import create_issuer
from .loginguard import create_login_guard
from .middleware import AuthKitMiddleware
from .state import AuthState, get_auth_state, sign_in, sign_out

__all__ = [
    "AuthKitError",
    "AuthKitMiddleware",
    "AuthState",
    "ConfigurationError",
    "RefreshParam",
    "RefreshResult",
    "StoreUnavailableError",
    "TokenError",
    "auth_header",
    "auth_state",
    "auth_user",
    "create_issuer",
    "create_login_guard",
    "create_refresh",
    "create_store",
    "current_user",
    "get_auth_state",
    "is_authenticated",
    "require_auth",
    "sign_in",
    "sign_out",
]

# Names 0.1.0 exported from here, by the module that holds them now. They resolve (with a
# DeprecationWarning naming the new import) until the next minor release removes them.
_MOVED: dict[str, str] = {
    **dict.fromkeys(("AuthStore", "RefreshConfig"), "config"),
    **dict.fromkeys(
        (
            "AuthHeader",
            "AuthKitCookie",
            "AuthKitDependencies",
            "AuthStateDep",
            "CurrentUser",
            "IsAuthenticated",
            "OptionalUser",
            "dependencies_for",
        ),
        "dependencies",
    ),
    **dict.fromkeys(
        (
            "CookieError",
            "CookieTooLargeError",
            "CrossSiteRequestError",
            "InvalidRefreshResultError",
            "LoginThrottled",
            "ProviderError",
            "RefreshError",
            "RefreshTimeoutError",
            "ReplicaConfirmationError",
            "ServerSettingError",
            "TokenExpiredError",
            "UnknownKeyError",
            "UserStateError",
            "VerificationUnavailableError",
        ),
        "errors",
    ),
    **dict.fromkeys(
        (
            "AuthEvent",
            "EventHook",
            "RefreshFailed",
            "Refreshed",
            "RequestRefused",
            "ReuseDetected",
            "RevokedSession",
            "SessionEnded",
            "SignedIn",
            "SignedOut",
            "StoreUnavailable",
        ),
        "events",
    ),
    **dict.fromkeys(("IssuedTokens", "Issuer", "SessionInfo"), "issuer"),
}


def __getattr__(name: str) -> _Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _warnings.warn(
        f"importing {name} from fastapi_authkit is deprecated; "
        f"use 'from fastapi_authkit.{module} import {name}'",
        DeprecationWarning,
        stacklevel=2,
    )
    # Not cached in globals(): every import of a moved name warns, and dir() stays curated.
    return getattr(_importlib.import_module(f"{__name__}.{module}"), name)
