"""FastAPI dependencies over the middleware's auth state, and the OpenAPI security scheme.

This is the only module that maps the kit's states to HTTP answers: 401 with
``WWW-Authenticate`` when nobody is signed in, 503 with ``Retry-After`` when a needed
refresh failed transiently (the session is intact, the auth server is not), and a redirect
for browsers under :func:`require_auth`. On WebSocket routes the same cases close the
handshake (1008 policy violation, 1013 try again later).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Security
from fastapi.openapi.models import APIKey, APIKeyIn
from fastapi.security.base import SecurityBase
from starlette.exceptions import HTTPException, WebSocketException
from starlette.requests import HTTPConnection
from starlette.status import WS_1008_POLICY_VIOLATION, WS_1013_TRY_AGAIN_LATER

from .errors import ConfigurationError
from .state import AuthState, get_auth_state

__all__ = [
    "AuthHeader",
    "AuthKitCookie",
    "AuthStateDep",
    "CurrentUser",
    "IsAuthenticated",
    "OptionalUser",
    "auth_header",
    "auth_state",
    "current_user",
    "auth_user",
    "is_authenticated",
    "require_auth",
]


class AuthKitCookie(SecurityBase):
    """The OpenAPI security scheme: an API key in the access-token cookie.

    Calling it returns the request's :class:`AuthState`; it never raises for an anonymous
    request (the dependencies decide).
    """

    def __init__(self, *, name: str = "_auth", scheme_name: str = "AuthKitCookie") -> None:
        self.model = APIKey(
            **{"in": APIKeyIn.cookie},  # type: ignore[arg-type]
            name=name,
            description="Access token cookie set by fastapi-authkit (HttpOnly).",
        )
        self.scheme_name = scheme_name

    async def __call__(self, conn: HTTPConnection) -> AuthState:
        return get_auth_state(conn)


_scheme = AuthKitCookie()


async def auth_state(state: Annotated[AuthState, Security(_scheme)]) -> AuthState:
    """The full :class:`AuthState` of the request (never raises for anonymous requests)."""
    return state


def _refusal(conn: HTTPConnection, state: AuthState) -> Exception:
    if state.unavailable:
        if conn.scope["type"] == "websocket":
            return WebSocketException(WS_1013_TRY_AGAIN_LATER, "authentication unavailable")
        return HTTPException(
            503,
            "Authentication temporarily unavailable",
            headers={"Retry-After": str(state.store.retry_after)},
        )
    if conn.scope["type"] == "websocket":
        return WebSocketException(WS_1008_POLICY_VIOLATION, "not authenticated")
    return HTTPException(401, "Not authenticated", headers={"WWW-Authenticate": "Bearer"})


async def current_user(
    conn: HTTPConnection, state: Annotated[AuthState, Depends(auth_state)]
) -> Any:
    """The signed-in user (``user_loader``'s object, else the user state, else the claims);
    401 when anonymous, 503 when a needed refresh is failing transiently."""
    if not state.is_authenticated:
        raise _refusal(conn, state)
    return await state.load_user()


async def auth_user(state: Annotated[AuthState, Depends(auth_state)]) -> Any:
    """Like :func:`current_user`, but None instead of an error when nobody is signed in."""
    if not state.is_authenticated:
        return None
    return await state.load_user()


async def is_authenticated(state: Annotated[AuthState, Depends(auth_state)]) -> bool:
    """Whether a verified access token came with the request (after any refresh)."""
    return state.is_authenticated


async def auth_header(state: Annotated[AuthState, Depends(auth_state)]) -> str | None:
    """``"Bearer <token>"`` to forward to downstream APIs, or None."""
    return state.header


def _wants_html(conn: HTTPConnection) -> bool:
    return "text/html" in conn.headers.get("accept", "")


def require_auth(*, fallback_path: str = "/login") -> Callable[..., Awaitable[Any]]:
    """A dependency that returns the user, or sends browsers (``Accept: text/html``) to
    ``fallback_path`` with a 303 and answers API clients with 401 (503 while refresh fails).
    """
    if not fallback_path.startswith("/") or fallback_path.startswith("//"):
        # "//host" would make the redirect leave the site.
        raise ConfigurationError("fallback_path must be a local absolute path like '/login'")

    async def dependency(
        conn: HTTPConnection, state: Annotated[AuthState, Depends(auth_state)]
    ) -> Any:
        if state.is_authenticated:
            return await state.load_user()
        if conn.scope["type"] == "http" and not state.unavailable and _wants_html(conn):
            raise HTTPException(303, "Sign-in required", headers={"Location": fallback_path})
        raise _refusal(conn, state)

    return dependency


CurrentUser = Annotated[Any, Depends(current_user)]
OptionalUser = Annotated[Any, Depends(auth_user)]
AuthStateDep = Annotated[AuthState, Depends(auth_state)]
IsAuthenticated = Annotated[bool, Depends(is_authenticated)]
AuthHeader = Annotated[str | None, Depends(auth_header)]
