"""The per-request auth state a route reads and changes: :class:`AuthState`."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, TypeVar

from starlette.requests import HTTPConnection

from .config import AuthStore, Credential
from .cookies import session_tokens
from .decision import CachedReading, Reading
from .errors import ConfigurationError
from .events import AuthEvent

__all__ = ["AuthState", "published"]

T = TypeVar("T")


class AuthState:
    """Who is signed in for this request, and the cookie writes queued for its response.

    ``token``/``token_type``/``claims`` describe a verified access token (all None when
    unauthenticated); ``user_state`` is the verified user state; ``unavailable`` is
    True when the session could not be checked or refreshed because the refresh callback or
    the shared store failed transiently (protected routes answer 503, not 401).
    ``refresh_token`` is the session's refresh token (the refresh cookie, or the one a
    refresh in this request rotated in; None without one), for a route that calls its auth
    server with it (revocation, RFC 7009) itself.
    ``credential`` says what the identity came from: ``"cookie"`` (the session's cookies),
    ``"header"`` (``Authorization: Bearer``) or ``"gateway"`` (an auth gateway's access
    cookie); None when unauthenticated. With ``create_store(auth_type=("cookie",
    "header"))`` a valid bearer header wins over the cookie session, which it leaves as it
    is (no refresh, no CSRF check: the cookies are not what authenticated the request).
    ``state_id`` is the browser session's id from the state cookie (the CSRF token is
    derived from it; not the access token's ``sid`` claim). ``store`` is the configuration
    the middleware was given: what ``sign_in``/``sign_out`` and the issuer's, which have only
    the request, reach it through.
    """

    # Class-level defaults: a request that only reads its state pays for one attribute
    # set at creation (this object is made for every request).
    token_type: str | None = None
    claims: dict[str, Any] | None = None
    user_state: Any = None
    state_id: str | None = None
    _token: str | None = None
    _refresh_token: str | None = None
    # A session the reader's cache served: its record keeps neither token (they are most of
    # a remembered session's bytes), which are this request's own cookies, read from these
    # headers when first asked for (most routes never ask).
    _unread_cookies: Iterable[tuple[bytes, bytes]] | None = None
    credential: Credential | None = None
    unavailable: bool = False
    # Set by sign_out, so the middleware forgets refresh results remembered for it and, with
    # revoke_signed_out, calls the revocation hook (the issuer's sign_out revokes itself).
    signed_out_refresh_token: str | None = None
    revoke_signed_out: bool = False
    _auto_cookies: tuple[bytes, ...] = ()
    _route_cookies: tuple[bytes, ...] | None = None
    # Whether anything above was queued: the middleware's per-message check reads only this.
    _cookies_queued: bool = False
    _user: Any = None
    _user_loaded: bool = False
    # Audit events of what the route did (sign-in, sign-out, a refused sign-in), delivered
    # at response start, with what the response carries (only with an on_event hook).
    _events: tuple[AuthEvent, ...] = ()
    # Calls such as issuer.sign_in(...) that returned a coroutine nobody has awaited yet:
    # (what was called, the coroutine). The middleware refuses to answer with any left.
    _unawaited: tuple[tuple[str, Coroutine[Any, Any, Any]], ...] = ()

    def __init__(self, store: AuthStore) -> None:
        self.store = store

    @property
    def token(self) -> str | None:
        self._read_tokens()
        return self._token

    @token.setter
    def token(self, value: str | None) -> None:
        self._read_tokens()  # first: the refresh token comes from the same cookies
        self._token = value

    @property
    def refresh_token(self) -> str | None:
        self._read_tokens()
        return self._refresh_token

    @refresh_token.setter
    def refresh_token(self, value: str | None) -> None:
        self._read_tokens()
        self._refresh_token = value

    def _read_tokens(self) -> None:
        headers = self._unread_cookies
        if headers is not None:
            self._token, self._refresh_token = session_tokens(headers, self.store.names)
            self._unread_cookies = None

    @property
    def is_authenticated(self) -> bool:
        return self.claims is not None

    @property
    def csrf_token(self) -> str | None:
        """This session's CSRF token (what the CSRF cookie holds), derived from the state
        id on demand: most requests never need it."""
        return None if self.state_id is None else self.store.csrf.token_for(self.state_id)

    @property
    def sid(self) -> str | None:
        """Deprecated name of :attr:`state_id` (it also named the token's ``sid`` claim)."""
        warnings.warn(
            "AuthState.sid is deprecated; use AuthState.state_id", DeprecationWarning, stacklevel=2
        )
        return self.state_id

    @property
    def header(self) -> str | None:
        """``"Bearer <token>"`` for calling downstream APIs, or None."""
        if self.token is None:
            return None
        return f"{self.token_type or 'Bearer'} {self.token}"

    def set_identity(
        self, token: str, token_type: str, claims: dict[str, Any], user_state: Any
    ) -> None:
        """The cookie session's identity (a sign-in, a refresh)."""
        self.token, self.token_type, self.claims = token, token_type, claims
        self.user_state = user_state
        self.credential = "cookie"
        self._user_loaded = False

    def unauthenticate(self) -> None:
        """No verified identity for this request; the session's cookies stay as they are."""
        self.token = self.token_type = self.claims = self.credential = None
        self._user_loaded = False

    def clear_identity(self) -> None:
        """The session is over: no identity and no session references."""
        self.unauthenticate()
        self.user_state = self.state_id = self.refresh_token = None

    def queue_refresh_cookies(self, cookies: tuple[bytes, ...]) -> None:
        self._auto_cookies = cookies
        self._cookies_queued = True

    def renew(
        self,
        token: str,
        token_type: str,
        claims: dict[str, Any],
        user_state: Any,
        state_id: str,
        refresh_token: str | None,
        cookies: tuple[bytes, ...],
    ) -> None:
        """A refresh renewed the session: its new identity, and the cookies that carry it."""
        self.set_identity(token, token_type, claims, user_state)
        self.state_id, self.refresh_token = state_id, refresh_token
        self.queue_refresh_cookies(cookies)

    def keep_successor(
        self, state_id: str, user_state: Any, refresh_token: str | None, cookies: tuple[bytes, ...]
    ) -> None:
        """A refresh rotated the refresh token but gave no usable access token: the session
        goes on with the successor (the browser must never present the old one again)."""
        self.state_id, self.user_state, self.refresh_token = state_id, user_state, refresh_token
        self.queue_refresh_cookies(cookies)

    def mark_unavailable(self) -> None:
        """The session could not be checked or refreshed (the store or the auth server is
        down): protected routes answer 503, not 401."""
        self.unavailable = True

    def queue_sign_in(
        self,
        cookies: tuple[bytes, ...],
        token: str,
        token_type: str,
        claims: dict[str, Any],
        user_state: Any,
        state_id: str,
        refresh_token: str | None,
        *,
        revoke_replaced: bool,
    ) -> None:
        """A sign-in: ``cookies`` go on the response and the identity is the new one at once.
        A session the request had is replaced and ends as at sign-out, through the
        revocation hook when ``revoke_replaced`` (False: the caller revoked it itself)."""
        self._route_cookies = cookies
        self._cookies_queued = True
        replaced = self.refresh_token
        self._ends(replaced if replaced != refresh_token else None, revoke=revoke_replaced)
        self.set_identity(token, token_type, claims, user_state)
        self.state_id, self.refresh_token = state_id, refresh_token
        self.unavailable = False

    def queue_sign_out(self, cookies: tuple[bytes, ...], *, revoke: bool) -> None:
        """A sign-out: ``cookies`` (their deletion) go on the response, the request is
        anonymous from now on, and its session ends, through the revocation hook when
        ``revoke`` (False: the caller revoked it itself)."""
        self._route_cookies = cookies
        self._cookies_queued = True
        self._ends(self.refresh_token, revoke=revoke)
        self.clear_identity()
        self.unavailable = False

    def _ends(self, refresh_token: str | None, *, revoke: bool) -> None:
        # The session of refresh_token (None: no session ends here) is forgotten by the
        # middleware at response start and, with revoke, revoked through the hook; without
        # revoke the caller revoked itself, so no hook call is left for this response.
        if refresh_token is not None:
            self.signed_out_refresh_token = refresh_token
        self.revoke_signed_out = revoke and (refresh_token is not None or self.revoke_signed_out)

    def take_revocation(self) -> bool:
        """Whether the revocation hook is to be called for the signed-out session; True
        once, whatever else the route sends."""
        revoke, self.revoke_signed_out = self.revoke_signed_out, False
        return revoke

    def take_route_events(self) -> tuple[AuthEvent, ...]:
        """The audit events the route queued (see :meth:`record`), handed over once."""
        events, self._events = self._events, ()
        return events

    def must_be_awaited(
        self, what: str, work: Callable[[], Awaitable[T]]
    ) -> Coroutine[Any, Any, T]:
        """``work()`` as a coroutine that the route must await: until it starts running it
        is listed in ``_unawaited``, and the middleware turns a response started with it
        still listed into a loud :class:`ConfigurationError` (see
        :meth:`raise_if_unawaited`) instead of a 200 that silently did nothing."""

        async def run() -> T:
            self._unawaited = tuple(entry for entry in self._unawaited if entry[1] is not call)
            return await work()

        call = run()
        self._unawaited = (*self._unawaited, (what, call))
        self._cookies_queued = True  # so that the middleware looks at the response start
        return call

    def raise_if_unawaited(self) -> None:
        """Refuse to start a response while a call that must be awaited was not: the route
        forgot ``await`` (``issuer.sign_in(request, ...)`` alone does nothing)."""
        if not self._unawaited:
            return
        names = sorted({what for what, _ in self._unawaited})
        for _, call in self._unawaited:
            call.close()  # never run; closing spares Python's own "never awaited" warning
        self._unawaited = ()
        raise ConfigurationError(
            f"{' and '.join(names)}(...) returned a coroutine that was never awaited, so it "
            "did nothing (no session started or ended, no cookie written): write "
            f"`await {names[0]}(request, ...)` in the route"
        )

    def record(
        self,
        conn: HTTPConnection,
        event: type[AuthEvent],
        *,
        about: Mapping[str, Any] | None = None,
        **fields: Any,
    ) -> None:
        """Queue the audit event of something the route did about this state's identity
        (read now, before the route's call changes it), or about the claims ``about``, to be
        delivered when the response starts: the route may run in a worker thread, and the
        event says what the response carries. Without an ``on_event`` hook, nothing is
        built."""
        claims = self.claims if about is None else about
        self._events += self.store.events.built(event, conn.scope, claims, **fields)
        self._cookies_queued = True  # so that the middleware looks at the response start

    def pending_cookies(self) -> tuple[bytes, ...]:
        """The Set-Cookie values to emit: what the route did wins over an automatic refresh."""
        return self._auto_cookies if self._route_cookies is None else self._route_cookies

    async def load_user(self) -> Any:
        """The signed-in user: ``user_loader(claims, user_state)`` when configured, else the
        user state, else the token's claims. Loaded once per request."""
        if not self._user_loaded:
            loader = self.store.user_loader
            if loader is None:
                user = self.user_state if self.user_state is not None else self.claims
            else:
                user = loader(self.claims or {}, self.user_state)
                if inspect.isawaitable(user):
                    user = await user
            self._user, self._user_loaded = user, True
        return self._user


def published(store: AuthStore, reading: Reading) -> AuthState:
    """The state a route will see for ``reading`` (before any I/O step changes it)."""
    state = AuthState(store)
    if reading.claims is not None:
        state.token, state.token_type, state.claims = (
            reading.token,
            reading.token_type,
            reading.claims,
        )
        state.credential = reading.credential
    if reading.state_id is not None:
        state.state_id, state.user_state = reading.state_id, reading.user_state
    if reading.refresh_token is not None:
        state.refresh_token = reading.refresh_token
    return state


def remembered(
    store: AuthStore, cached: CachedReading, headers: Iterable[tuple[bytes, bytes]]
) -> AuthState:
    """The state of a session the reader's cache served (nearly every request): its tokens
    are this request's own cookies, read from ``headers`` when a route first asks for one."""
    state = AuthState(store)
    state._unread_cookies = headers
    state.token_type, state.claims = cached.token_type, cached.claims.copy()
    state.user_state, state.state_id = cached.user_state.copy(), cached.state_id
    state.credential = "cookie"
    return state
