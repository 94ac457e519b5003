"""Signing a test client in without the app's login route.

The cookies are the ones the app itself would write: the kit's ``sign_in`` (or the built-in
issuer's, which records the session in the issuer's store) runs on a bare connection, and
its Set-Cookie values go into the client's jar as a response's would.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Final, cast, overload

import anyio.from_thread
from starlette.requests import HTTPConnection

from ..config import AuthStore
from ..errors import ConfigurationError
from ..issuer import Issuer
from ..state import SCOPE_KEY, AuthState, sign_in
from .apps import find_store
from .clients import _is_async, check_returnable, echo_csrf, keep_cookies

if TYPE_CHECKING:
    import httpx2

__all__ = ["AUTO", "DEFAULT_TTL", "Session", "login_as", "mint_session"]

# The access-token lifetime of an external token minted here, unless the test says.
DEFAULT_TTL: Final = 300


class _Auto(Enum):
    AUTO = "auto"


#: ``refresh_token=AUTO``: a made-up refresh token when the app refreshes, else none.
AUTO: Final = _Auto.AUTO


@dataclass(frozen=True, slots=True)
class Session:
    """The session :func:`login_as` started: what the client's jar now holds."""

    subject: str
    access_token: str
    refresh_token: str | None
    #: What the CSRF cookie holds (the client sends it as the CSRF header by itself).
    csrf_token: str | None
    claims: dict[str, Any] = field(repr=False)
    user_state: Any = field(repr=False)
    #: The Set-Cookie values the app would have sent.
    set_cookies: tuple[bytes, ...] = field(repr=False)


async def mint_session(
    store: AuthStore,
    subject: str,
    *,
    user_state: Any = None,
    claims: Mapping[str, Any] | None = None,
    ttl: float | None = None,
    refresh_token: str | _Auto | None = AUTO,
    signing_key: Any = None,
) -> Session:
    """The cookies of a session for ``subject`` under ``store``, without a client: what
    :func:`login_as` puts in a client's jar (see there for the arguments). For test runners
    that drive the app some other way."""
    if not isinstance(subject, str) or not subject:
        raise ValueError("subject must be a non-empty string")
    state = AuthState(store)
    # A bare connection without a method: no request, so no cross-site check applies.
    conn = HTTPConnection({"type": "http", "headers": [], SCOPE_KEY: state})
    source = store.token_issuer
    if source is not None:
        if not isinstance(source, Issuer):
            raise ConfigurationError(
                f"login_as signs in through create_issuer(...)'s Issuer, not {source!r}"
            )
        if claims or ttl is not None or refresh_token is not AUTO or signing_key is not None:
            raise TypeError(
                "with the built-in issuer, the issuer mints the tokens (its claims, its "
                "access_ttl, its refresh token): pass only subject and user_state"
            )
        if "cookie" not in store.credentials:  # bearer clients only: the token response
            issued = await source.issue_tokens(conn, subject)
            verified = store.verifier.verify(issued.access_token, store.clock())
            return Session(
                subject, issued.access_token, issued.refresh_token, None, verified, None, ()
            )
        tokens = await source.sign_in(conn, subject, user_state=user_state)
        refresh: str | None = tokens.refresh_token
    else:
        now = store.clock()
        payload = {
            "sub": subject,
            "iat": int(now),
            "exp": math.ceil(now + (DEFAULT_TTL if ttl is None else ttl)),
            "jti": secrets.token_urlsafe(12),
            **(claims or {}),
        }
        token = store.verifier.mint(payload, signing_key=signing_key)
        if refresh_token is AUTO:
            # Made up: the app's refresh callback (faked by the test) receives it.
            refresh = f"testing-{secrets.token_urlsafe(24)}" if store.refresh else None
        else:
            refresh = refresh_token
        if "cookie" not in store.credentials:  # a bearer header's or a gateway's token
            claims_now = store.verifier.verify(token, now)
            return Session(subject, token, None, None, claims_now, user_state, ())
        sign_in(
            conn, auth={"token": token, "type": "Bearer"}, refresh=refresh, user_state=user_state
        )
    return Session(
        subject=subject,
        access_token=state.token or "",
        refresh_token=refresh,
        csrf_token=state.csrf_token,
        claims=state.claims or {},
        user_state=user_state,
        set_cookies=state.pending_cookies(),
    )


def _settle(client: Any, store: AuthStore, session: Session, csrf: bool) -> Session:
    if "cookie" not in store.credentials:
        if "header" in store.credentials:
            client.headers["Authorization"] = f"Bearer {session.access_token}"
        else:  # auth_type="gateway": the cookie the gateway would have set
            client.cookies.set(store.names.access, session.access_token)
        return session
    keep_cookies(client, store.policy, session.set_cookies)
    if csrf:
        echo_csrf(client, store)
    return session


@overload
def login_as(
    client: httpx2.AsyncClient,
    subject: str,
    *,
    user_state: Any = None,
    claims: Mapping[str, Any] | None = None,
    ttl: float | None = None,
    refresh_token: str | _Auto | None = AUTO,
    signing_key: Any = None,
    csrf: bool = True,
) -> Coroutine[Any, Any, Session]: ...


@overload
def login_as(
    client: httpx2.Client,
    subject: str,
    *,
    user_state: Any = None,
    claims: Mapping[str, Any] | None = None,
    ttl: float | None = None,
    refresh_token: str | _Auto | None = AUTO,
    signing_key: Any = None,
    csrf: bool = True,
) -> Session: ...


def login_as(
    client: Any,
    subject: str,
    *,
    user_state: Any = None,
    claims: Mapping[str, Any] | None = None,
    ttl: float | None = None,
    refresh_token: str | _Auto | None = AUTO,
    signing_key: Any = None,
    csrf: bool = True,
) -> Session | Coroutine[Any, Any, Session]:
    """Sign ``client`` in as ``subject`` without the app's login route; returns the
    :class:`Session`. On an httpx2 ``AsyncClient``, await it:
    ``await login_as(client, "alice")``.

    The client is a Starlette ``TestClient`` or an ``AsyncClient`` on an ``ASGITransport``
    of an app with :class:`~fastapi_authkit.AuthKitMiddleware`, whose configuration is
    found from the client. With the built-in issuer (``create_store(token_issuer=)``), the
    issuer starts a real session in its store (as ``issuer.sign_in`` does); otherwise an
    access token is minted with the app's ``token_key`` (an HMAC secret signs with itself;
    an asymmetric one needs ``signing_key``, its private half), for ``ttl`` seconds
    (default 300) from the app's clock, with ``claims`` added (``iss``, ``aud`` and
    ``typ`` are the configured ones), and ``refresh_token`` (by default a made-up one when
    the app refreshes, else none) reaches the app's refresh callback. ``user_state`` is
    the signed user state, as ``sign_in`` takes it.

    The client then holds the session's cookies and, unless ``csrf=False``, sends the CSRF
    cookie as the CSRF header on its unsafe requests. Raises
    :class:`~fastapi_authkit.ConfigurationError` when the client would never send the
    cookies back (Secure cookies and a plain-http base URL: use :func:`auth_client`).
    With ``auth_type="header"`` (or ``("gateway", "header")``) it sets the client's
    ``Authorization`` header instead, with ``auth_type="gateway"`` the access cookie the
    gateway would set; with ``("cookie", "header")`` it signs in with cookies."""
    store = find_store(client)
    if "cookie" in store.credentials:
        check_returnable(client, store.cookie_secure)  # before anything is issued
    options: dict[str, Any] = {
        "user_state": user_state,
        "claims": claims,
        "ttl": ttl,
        "refresh_token": refresh_token,
        "signing_key": signing_key,
    }

    def work() -> Coroutine[Any, Any, Session]:
        return mint_session(store, subject, **options)

    if _is_async(client):
        return _async_login(client, store, work, csrf)
    return _settle(client, store, _run(client, work), csrf)


async def _async_login(
    client: Any,
    store: AuthStore,
    work: Callable[[], Coroutine[Any, Any, Session]],
    csrf: bool,
) -> Session:
    return _settle(client, store, await work(), csrf)


def _run(client: Any, work: Callable[[], Coroutine[Any, Any, Session]]) -> Session:
    """``work`` on the event loop the client runs the app on: its portal inside
    ``with TestClient(...)`` (where a store's connections live), else a portal of its own."""
    portal = getattr(client, "portal", None)
    if portal is not None:
        result: Session = portal.call(work)
        return result
    backend: dict[str, Any] = dict(getattr(client, "async_backend", None) or {})
    with anyio.from_thread.start_blocking_portal(**backend) as own:
        return cast(Session, own.call(work))
