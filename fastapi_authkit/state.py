"""Signing in and out: ``sign_in`` / ``sign_out`` queue cookie writes on the request's state.

The middleware publishes one :class:`~fastapi_authkit.authstate.AuthState` under
``scope["fastapi_authkit"]`` (:func:`get_auth_state` finds it); routes read it through the
dependencies and change the session with :func:`sign_in` / :func:`sign_out`, which only
queue cookie writes. The middleware emits them on whatever
response the route returns, so they work with dicts, redirects and streaming responses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from starlette.requests import HTTPConnection

from .authstate import AuthState
from .callback import check_lifetime
from .config import AuthType, Credential
from .decision import SAFE_METHODS
from .errors import ConfigurationError, CrossSiteRequestError, TokenError
from .events import RequestRefused, SignedIn, SignedOut, refusal_reason
from .origins import cross_site_refused
from .session import clear_session, issue_session, new_state_id
from .validation import bool_argument

__all__ = [
    "SCOPE_KEY",
    "AuthState",
    "end_session",
    "get_auth_state",
    "refuse_cross_site",
    "sign_in",
    "sign_out",
    "start_session",
]

SCOPE_KEY: Final = "fastapi_authkit"


def _needs_cookie_mode(what: str, credentials: frozenset[Credential], auth_type: AuthType) -> str:
    if "gateway" in credentials:
        return (
            f"{what} the kit's session cookies; with auth_type={auth_type!r} the "
            "gateway sets and clears its cookie (send the browser to the gateway instead)"
        )
    return f"{what} cookies; it needs auth_type='cookie' or ('cookie', 'header')"


def get_auth_state(conn: HTTPConnection) -> AuthState:
    """The :class:`AuthState` the middleware published for this connection."""
    state = conn.scope.get(SCOPE_KEY)
    if not isinstance(state, AuthState):
        raise ConfigurationError(
            "no auth state on this request: add AuthKitMiddleware to the app "
            "(app.add_middleware(AuthKitMiddleware, store=store))"
        )
    return state


def refuse_cross_site(conn: HTTPConnection, allowed_origins: frozenset[str]) -> None:
    """Raise :class:`CrossSiteRequestError` when ``conn`` is an unsafe-method request from
    another site (``Sec-Fetch-Site: cross-site``, a foreign or ``null`` Origin, none of
    ``allowed_origins``), by the rules of the CSRF check: a session is never started for
    one. A request carrying no cookies has no CSRF token to check, which is exactly how
    login CSRF works. Safe methods pass: an identity provider's redirect back (the OIDC
    callback) is a cross-site GET, protected by its state and PKCE.
    """
    scope = conn.scope
    # (A bare connection built without a method, as tools do to mint cookies, is no request.)
    if scope["type"] != "http" or scope.get("method", "GET") in SAFE_METHODS:
        return
    reason = cross_site_refused(
        scope.get("scheme", "http"),
        scope.get("headers", ()),
        allowed_origins,
        check_fetch_site=True,
    )
    if reason is not None:
        get_auth_state(conn).record(
            conn, RequestRefused, reason=refusal_reason(reason), detail=reason
        )
        raise CrossSiteRequestError(reason)


def sign_in(
    conn: HTTPConnection,
    *,
    auth: Mapping[str, str],
    refresh: str | None = None,
    user_state: Any = None,
    refresh_expires_in: int | None = None,
    persistent: bool = True,
) -> None:
    """Start a session: queue the auth cookies for this request's response.

    ``auth`` is ``{"token": <access JWT>, "type": "Bearer"}`` as in React Auth Kit. The token
    is verified with the store's keys first; :class:`TokenError` is raised when it does not
    verify, and nothing is queued. ``refresh`` is the refresh token (its cookie lives
    ``refresh_expires_in`` seconds, else until the token's own ``exp`` if it is a JWT, else
    ``refresh_max_age``); without one, the session ends when the access token expires (a
    warning says so once when refresh is configured). The route's state reflects the new
    session at once.

    ``persistent=False`` ("remember me" unticked) writes session cookies, without Max-Age:
    the browser drops them when it closes, and every refresh of this session keeps them so.
    The default writes cookies that live as long as their tokens, across browser restarts.

    An unsafe-method request from another site raises :class:`CrossSiteRequestError` (a
    403) and queues nothing (login CSRF). A session the request already had is replaced
    and ended as at sign-out: what the middleware remembers of it is dropped, and it is
    revoked through the refresh callback's revocation hook when there is one (the built-in
    issuer's ``sign_in`` revokes it itself).
    """
    start_session(
        conn,
        auth=auth,
        refresh=refresh,
        user_state=user_state,
        refresh_expires_in=refresh_expires_in,
        persistent=persistent,
        revoke_replaced=True,
    )


def start_session(
    conn: HTTPConnection,
    *,
    auth: Mapping[str, str],
    refresh: str | None,
    user_state: Any,
    refresh_expires_in: int | None,
    persistent: bool,
    revoke_replaced: bool,
) -> None:
    """:func:`sign_in`, for callers that revoke the session it replaces themselves (the
    built-in issuer, ``revoke_replaced=False``): no revocation hook is called for it then."""
    state = get_auth_state(conn)
    store = state.store
    if "cookie" not in store.credentials:
        raise ConfigurationError(
            _needs_cookie_mode("sign_in sets", store.credentials, store.auth_type)
        )
    refuse_cross_site(conn, store.allowed_origins)
    token = auth.get("token")
    token_type = auth.get("type", "Bearer")
    if not isinstance(token, str) or not isinstance(token_type, str):
        raise TokenError("sign_in: auth must be {'token': <str>, 'type': <str>}")
    if refresh is not None and not isinstance(refresh, str):
        raise TypeError(f"sign_in: refresh must be a str or None, got {type(refresh).__name__}")
    check_lifetime("sign_in: refresh_expires_in", refresh_expires_in)
    bool_argument("sign_in: persistent", persistent)
    now = store.clock()
    try:
        claims = store.verifier.verify(token, now)
    except TokenError as exc:
        hint = ""
        if store.token_issuer is not None:
            # The issuer mints the tokens it verifies; one made elsewhere is the usual cause.
            hint = (
                "; with create_store(token_issuer=...) the issuer mints the tokens: sign in "
                "with `await issuer.sign_in(request, subject)` instead of sign_in(...)"
            )
        raise TokenError(f"sign_in: the access token does not verify: {exc}{hint}") from exc
    if refresh is None and store.refresh is not None:
        store.notices.session_without_refresh_token(claims["exp"] - now)
    state_id = new_state_id(persistent=persistent)
    writer = store.cookie_writer
    cookies = issue_session(
        writer,
        token=token,
        token_type=token_type,
        claims=claims,
        state_id=state_id,
        user_state=user_state,
        refresh_token=refresh,
        refresh_expires_in=refresh_expires_in,
        access_expires_in=None,
        session_refresh_token=refresh,
        now=now,
    )
    if refresh is None and state.refresh_token is not None:
        # A session without a refresh token replaces one with it: the old refresh cookie
        # goes, or the new state cookie (bound to the access token) would be read against
        # it, and the new session would be anonymous.
        cookies += (writer.policy.delete(writer.names.refresh),)
    state.queue_sign_in(
        cookies,
        token,
        token_type,
        claims,
        user_state,
        state_id,
        refresh,
        revoke_replaced=revoke_replaced,
    )
    jti = claims.get("jti")
    state.record(conn, SignedIn, jti=jti if isinstance(jti, str) else None)


def sign_out(conn: HTTPConnection) -> None:
    """End the session: queue deletion of every auth cookie; the request is now anonymous.

    Overrides a refresh the middleware performed for this same request. When the refresh
    callback has a revocation hook (``refresh_api_callback.revoke``: the OIDC grant, the
    built-in issuer, your own callback object), the middleware also revokes the session's
    refresh token at the auth server before the response goes out.
    """
    end_session(conn)


def end_session(
    conn: HTTPConnection,
    *,
    everywhere: bool = False,
    revoked: bool | None = None,
    found: bool | None = None,
) -> None:
    """:func:`sign_out`, for callers that revoked the session themselves (the built-in
    issuer): ``everywhere``, ``revoked`` and ``found`` are what its audit event says; with
    ``revoked=None`` the revocation hook, if any, is called at response start and decides
    (otherwise no hook is called for it)."""
    state = get_auth_state(conn)
    store = state.store
    if "cookie" not in store.credentials:
        raise ConfigurationError(
            _needs_cookie_mode("sign_out clears", store.credentials, store.auth_type)
        )
    state.record(conn, SignedOut, everywhere=everywhere, revoked=revoked, found=found)
    state.queue_sign_out(clear_session(store.cookie_writer), revoke=revoked is None)
