"""FastAPI dependencies over the middleware's auth state, and the OpenAPI security scheme.

This is the only module that maps the kit's states to HTTP answers: 401 with
``WWW-Authenticate`` when nobody is signed in, 503 with ``Retry-After`` when a needed
refresh failed transiently (the session is intact, the auth server is not), and a redirect
for browsers under :func:`require_auth`. On WebSocket routes the same cases close the
handshake (1008 policy violation, 1013 try again later).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends
from fastapi.openapi.models import APIKey, APIKeyIn
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase
from starlette.exceptions import HTTPException, WebSocketException
from starlette.requests import HTTPConnection
from starlette.status import WS_1008_POLICY_VIOLATION, WS_1013_TRY_AGAIN_LATER

from .config import AuthStore
from .errors import ConfigurationError
from .localpath import is_local_path
from .state import AuthState, get_auth_state

__all__ = [
    "AuthHeader",
    "AuthKitCookie",
    "AuthKitDependencies",
    "AuthStateDep",
    "CurrentUser",
    "IsAuthenticated",
    "OptionalUser",
    "auth_header",
    "auth_state",
    "current_user",
    "dependencies_for",
    "auth_user",
    "is_authenticated",
    "require_auth",
]


class AuthKitCookie(SecurityBase):
    """The OpenAPI security scheme and the base of every dependency below.

    The scheme is an API key in the access-token cookie (``AuthKitCookie``), or an HTTP
    bearer scheme (``AuthKitBearer``) for a store with ``auth_type="header"``; it is named
    after ``store``'s cookie when one is given (see :func:`dependencies_for`), else after the
    default ``_auth``. A store that reads a cookie and the header documents both (see
    :class:`AuthKitDependencies`). Each dependency is an instance of a subclass, so FastAPI
    resolves it in one step (no chain of dependencies on the hot path) and lists the scheme
    on every operation that uses one. Called directly, this base class returns the request's
    :class:`AuthState` and never raises for an anonymous request.
    """

    model: APIKey | HTTPBearerModel

    def __init__(self, store: AuthStore | None = None) -> None:
        if store is not None and store.auth_type == "header":
            self.model, self.scheme_name = _bearer_model(), "AuthKitBearer"
            return
        gateway = store is not None and "gateway" in store.credentials
        self.model = APIKey(
            **{"in": APIKeyIn.cookie},  # type: ignore[arg-type]
            name=store.names.access if store is not None else "_auth",
            description=(
                "Access token cookie set by the auth gateway."
                if gateway
                else "Access token cookie set by fastapi-authkit (HttpOnly)."
            ),
        )
        self.scheme_name = "AuthKitCookie"

    async def __call__(self, conn: HTTPConnection) -> Any:
        return get_auth_state(conn)


def _bearer_model() -> HTTPBearerModel:
    return HTTPBearerModel(bearerFormat="JWT", description="Access token in Authorization: Bearer.")


class _BearerScheme(SecurityBase):
    """The bearer scheme beside the cookie one, for a store that reads both: a
    sub-dependency that only puts ``AuthKitBearer`` in the schema (and in Swagger UI's
    Authorize dialog); the middleware has read the header already."""

    def __init__(self) -> None:
        self.model, self.scheme_name = _bearer_model(), "AuthKitBearer"

    async def __call__(self) -> None:
        return None


_BEARER_SCHEME = _BearerScheme()


class _OrBearer(AuthKitCookie):
    """A dependency of a store reading the cookie and the bearer header: ``inner``'s
    answer, with both schemes listed on the operation as alternatives (either one)."""

    def __init__(self, inner: AuthKitCookie) -> None:
        self.model, self.scheme_name, self.inner = inner.model, inner.scheme_name, inner

    async def __call__(self, conn: HTTPConnection, _bearer: None = Depends(_BEARER_SCHEME)) -> Any:
        return await self.inner(conn)


def _for_store(store: AuthStore, dependency: AuthKitCookie) -> AuthKitCookie:
    both = "header" in store.credentials and len(store.credentials) > 1
    return _OrBearer(dependency) if both else dependency


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


class _CurrentUser(AuthKitCookie):
    """The signed-in user (``user_loader``'s object, else the user state, else the claims);
    401 when anonymous, 503 when the session cannot be checked or refreshed now."""

    async def __call__(self, conn: HTTPConnection) -> Any:
        state = get_auth_state(conn)
        if state.claims is None:
            raise _refusal(conn, state)
        return await state.load_user()


class _AuthUser(AuthKitCookie):
    """Like ``current_user``, but None instead of an error when anonymous."""

    async def __call__(self, conn: HTTPConnection) -> Any:
        state = get_auth_state(conn)
        return None if state.claims is None else await state.load_user()


class _IsAuthenticated(AuthKitCookie):
    """Whether a verified access token came with the request (after any refresh)."""

    async def __call__(self, conn: HTTPConnection) -> bool:
        return get_auth_state(conn).claims is not None


class _AuthHeader(AuthKitCookie):
    """``"Bearer <token>"`` to forward to downstream APIs, or None."""

    async def __call__(self, conn: HTTPConnection) -> str | None:
        return get_auth_state(conn).header


class _RequireAuth(AuthKitCookie):
    """The user, or a 303 to the fallback path for browsers and 401 for API clients."""

    def __init__(self, fallback_path: str, store: AuthStore | None = None) -> None:
        super().__init__(store)
        self.fallback_path = fallback_path

    async def __call__(self, conn: HTTPConnection) -> Any:
        state = get_auth_state(conn)
        if state.claims is not None:
            return await state.load_user()
        if conn.scope["type"] == "http" and not state.unavailable and _wants_html(conn):
            location = _under_root_path(conn, self.fallback_path)
            raise HTTPException(303, "Sign-in required", headers={"Location": location})
        raise _refusal(conn, state)


def _under_root_path(conn: HTTPConnection, path: str) -> str:
    """``path`` in the app's URL space: behind a proxy that serves the app under ``/app``
    (``uvicorn --root-path /app``), or in a mounted sub-application, ``/login`` is
    ``/app/login`` to the browser."""
    root = conn.scope.get("root_path") or ""
    # rstrip: a root_path of "/" must not make "//login" (another host to a browser). The
    # root_path is the server's configuration, not the request's; checked all the same.
    located = root.rstrip("/") + path if isinstance(root, str) else path
    return located if is_local_path(located) else path


def _wants_html(conn: HTTPConnection) -> bool:
    return "text/html" in conn.headers.get("accept", "")


# The dependencies, documented by their classes above.
auth_state = AuthKitCookie()
current_user = _CurrentUser()
auth_user = _AuthUser()
is_authenticated = _IsAuthenticated()
auth_header = _AuthHeader()


def require_auth(*, fallback_path: str = "/login", store: AuthStore | None = None) -> AuthKitCookie:
    """A dependency that returns the user, or sends browsers (``Accept: text/html``) to
    ``fallback_path`` with a 303 and answers API clients with 401 (503 while the session
    cannot be checked or refreshed).

    ``fallback_path`` is a path of this app, such as ``"/login"`` or ``"/login?next=/"``;
    the redirect puts the ASGI ``root_path`` in front of it (an app served under ``/app``
    sends browsers to ``/app/login``). Anything a browser could read as another site
    (``//host``, a backslash, a tab or newline), a space or control character, or a
    character outside ASCII (percent-encode it) is a :class:`ConfigurationError` here.
    """
    # Location goes out as latin-1; ASCII only, so that no path fails at the first redirect.
    if not is_local_path(fallback_path) or not fallback_path.isascii():
        raise ConfigurationError(
            f"fallback_path must be a local absolute path like '/login' (ASCII, starting "
            f"with one '/', no backslash, space or control character), got {fallback_path!r}"
        )
    return _RequireAuth(fallback_path, store)


class AuthKitDependencies:
    """The dependencies documented for one store's configuration in ``/openapi.json``.

    The module-level dependencies work with any store but document the default ``_auth``
    cookie; with a custom ``auth_name`` or another ``auth_type``, use these instead so the
    schema names the credentials the app really reads (with ``("cookie", "header")``, both
    schemes, as alternatives: Swagger UI's Authorize dialog then offers both)::

        deps = dependencies_for(store)

        @app.get("/me")
        async def me(user: Annotated[Any, Depends(deps.current_user)]): ...
    """

    def __init__(self, store: AuthStore) -> None:
        self.store = store
        self.auth_state = _for_store(store, AuthKitCookie(store))
        self.current_user = _for_store(store, _CurrentUser(store))
        self.auth_user = _for_store(store, _AuthUser(store))
        self.is_authenticated = _for_store(store, _IsAuthenticated(store))
        self.auth_header = _for_store(store, _AuthHeader(store))

    def require_auth(self, *, fallback_path: str = "/login") -> AuthKitCookie:
        return _for_store(self.store, require_auth(fallback_path=fallback_path, store=self.store))


def dependencies_for(store: AuthStore) -> AuthKitDependencies:
    """Dependencies whose OpenAPI security scheme follows ``store``'s configuration."""
    return AuthKitDependencies(store)


# scope="request" says what these are anyway (one answer per request). It also spares
# FastAPI a generator check per dependency per request (its cache key computes the scope of
# a dependency that declares none, on every request); for a dependency without yield it
# changes nothing else.
CurrentUser = Annotated[Any, Depends(current_user, scope="request")]
OptionalUser = Annotated[Any, Depends(auth_user, scope="request")]
AuthStateDep = Annotated[AuthState, Depends(auth_state, scope="request")]
IsAuthenticated = Annotated[bool, Depends(is_authenticated, scope="request")]
AuthHeader = Annotated[str | None, Depends(auth_header, scope="request")]
