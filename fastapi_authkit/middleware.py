"""AuthKitMiddleware: the ASGI glue between the cookies and the per-request auth state.

Pure ASGI (never BaseHTTPMiddleware): the body is never read or buffered, streaming
responses, background tasks and contextvars pass through, lifespan is forwarded untouched.
The instance holds the immutable store plus the single-flight registry; everything else
lives in ``__call__``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, NamedTuple

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .callback import RefreshParam
from .config import AuthStore
from .cookies import CACHED_HEADER_BYTES, cookie_header, parse_cookie_header
from .errors import (
    ConfigurationError,
    StoreUnavailableError,
    TokenError,
    TokenExpiredError,
    UnknownKeyError,
)
from .fifo import Fifo
from .origins import cross_site_refused
from .refresh import (
    Ended,
    Refreshed,
    SingleFlight,
    flight_alias,
    needs_refresh,
    run_callback,
    run_shared,
)
from .session import clear_session
from .state import SCOPE_KEY, AuthState
from .tokens import MAX_TOKEN_BYTES
from .userstate import SessionData, binding_of

__all__ = ["AuthKitMiddleware"]

logger = logging.getLogger("fastapi_authkit")

# Everything else can change state: POST, PUT, PATCH, DELETE and any extension method.
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_RESPONSE_STARTS: Final = frozenset(
    {"http.response.start", "websocket.accept", "websocket.http.response.start"}
)
_CSRF_BODY: Final = b'{"detail":"CSRF token missing or invalid"}'
_CSRF_START: Final[Message] = {
    "type": "http.response.start",
    "status": 403,
    "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(_CSRF_BODY)).encode()),
        (b"cache-control", b"no-store"),
    ],
}


class AuthKitMiddleware:
    """Reads the auth cookies (or bearer header), refreshes before the route runs, and
    emits the queued cookie writes at response start.

    ``app.add_middleware(AuthKitMiddleware, store=create_store(...))``
    """

    def __init__(self, app: ASGIApp, *, store: AuthStore) -> None:
        if not isinstance(store, AuthStore):
            raise ConfigurationError("AuthKitMiddleware needs store=create_store(...)")
        self.app = app
        self.store = store
        self._flights = SingleFlight(store.clock)
        self._header_mode = store.auth_type == "header"
        self._clock = store.clock
        # Signed-in Cookie headers whose outcome needed no I/O, while it stays valid: a
        # browser repeats the same header on every request. A per-process speed-up only.
        # As many as the verified tokens (verified_token_cache): an entry needs its token
        # remembered anyway, and each costs the header (at most CACHED_HEADER_BYTES) on top.
        self._hot: Fifo[bytes, _Hot] = Fifo(store.verifier.cache_size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        if self._header_mode:
            scope[SCOPE_KEY] = self._from_bearer(scope)
            await self.app(scope, receive, send)
            return
        header = cookie_header(scope["headers"])
        safe = kind == "http" and scope["method"] in _SAFE_METHODS
        state: AuthState | None = None
        hot = self._hot.get(header) if safe else None
        if hot is not None:
            # The common request: a signed-in browser repeating its Cookie header. Built
            # here rather than in a helper, and with one unpack rather than eight attribute
            # reads, as this runs for nearly every request.
            valid_from, valid_until, token, token_type, claims, sid, user_state, refresh = hot
            if valid_from <= self._clock() < valid_until:
                state = _new_state(AuthState)
                state.store, state.token, state.token_type = self.store, token, token_type
                state.claims, state.user_state = claims(), user_state()
                state.sid, state.refresh_token = sid, refresh
            else:
                del self._hot[header]
        if state is None:
            read = self._read(scope, header, safe)
            if isinstance(read, _Unsettled) and read.unknown_key:
                # The access token names a key the key set does not hold: reload it
                # (rate-limited), then read once more; still unknown is a foreign token.
                await self.store.verifier.reload_keys_for(read.access or "", trusted=False)
                read = self._read(scope, header, safe, keys_reloaded=True)
            if read is None:
                await self._refuse(scope, receive, send)
                return
            state = await self._settle(read) if isinstance(read, _Unsettled) else read
        scope[SCOPE_KEY] = state

        # A plain function returning send's awaitable (ASGI only awaits what send returns):
        # no coroutine of its own for each message of every response, and one attribute
        # read when the request queued no cookie writes.
        def send_with_cookies(message: Message) -> Awaitable[None]:
            if state._cookies_queued and message["type"] in _RESPONSE_STARTS:
                return self._send_with_cookies(state, message, send)
            return send(message)

        await self.app(scope, receive, send_with_cookies)

    async def _send_with_cookies(self, state: AuthState, message: Message, send: Send) -> None:
        """A response start with the cookie writes the request queued (a refresh, sign_in,
        sign_out); after a sign-out, what was remembered for the session is dropped first."""
        if state.signed_out_refresh_token is not None:
            await self._forget(state.signed_out_refresh_token)
        cookies = state.pending_cookies()
        if cookies:
            headers = [
                (k, v) for k, v in message.get("headers", ()) if k.lower() != b"cache-control"
            ]
            headers.extend((b"set-cookie", cookie) for cookie in cookies)
            # Responses that set credentials must never be stored by a cache.
            headers.append((b"cache-control", b"no-store"))
            message["headers"] = headers
        await send(message)

    async def _forget(self, refresh_token: str) -> None:
        """After a sign-out, drop remembered refresh results that lead to that session, so a
        rotated-out predecessor presented within the grace period cannot revive it."""
        self._flights.forget(refresh_token)
        shared = self.store.shared_store
        if shared is not None:
            try:
                await shared.flight_forget(flight_alias(refresh_token))
            except StoreUnavailableError as exc:
                logger.error("sign-out could not drop the shared refresh result: %s", exc)

    async def _session_live(self, state: AuthState) -> bool:
        """Ask the session check (the issuer's revocation list) about the identity in
        ``state``; on a revoked session queue the deletion of every cookie, on a store
        outage fail closed without touching any cookie."""
        check = self.store.session_check
        if check is None or state.claims is None:
            return True
        try:
            live = await check(state.claims)
        except StoreUnavailableError as exc:
            logger.warning("session could not be checked, failing closed: %s", exc)
            state.unauthenticate()
            state.unavailable = True
            return False
        if not live:
            self._debug("session revoked; clearing every auth cookie")
            state.clear_identity()
            state.queue_refresh_cookies(clear_session(self.store))
        return live

    def _debug(self, message: str, *args: object) -> None:
        if self.store.debug:
            logger.debug(message, *args)

    def _from_bearer(self, scope: Scope) -> AuthState:
        store = self.store
        state = AuthState(store)
        values = [v for k, v in scope["headers"] if k == b"authorization"]
        if len(values) != 1:
            self._debug("bearer: %d Authorization headers, unauthenticated", len(values))
            return state
        scheme, _, token = values[0].partition(b" ")
        token = token.strip(b" ")
        if scheme.lower() != b"bearer" or not token or len(token) > MAX_TOKEN_BYTES:
            self._debug("bearer: malformed Authorization header, unauthenticated")
            return state
        try:
            text = token.decode("ascii")
            claims = store.verifier.verify(text, store.clock())
        except (TokenError, UnicodeDecodeError) as exc:
            self._debug("bearer: token rejected: %s", exc)
            return state
        state.set_identity(text, "Bearer", claims, None)
        return state

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            # Closing before accept makes the server answer the handshake with 403.
            await receive()
            await send({"type": "websocket.close", "code": 1008, "reason": "origin refused"})
            return
        await send(_CSRF_START)
        await send({"type": "http.response.body", "body": _CSRF_BODY})

    def _forgery(self, scope: Scope, session: SessionData | None) -> str | None:
        """Why a cookie-carrying WebSocket handshake or unsafe-method request looks forged
        (cross-site), or None (safe HTTP methods never get here).

        WebSocket handshakes are checked by Origin (cross-site WebSocket hijacking); unsafe
        HTTP methods by Sec-Fetch-Site and Origin, then by the CSRF token.
        """
        store = self.store
        if scope["type"] == "websocket":
            return cross_site_refused(
                scope["scheme"], scope["headers"], store.allowed_origins, check_fetch_site=False
            )
        reason = cross_site_refused(
            scope["scheme"], scope["headers"], store.allowed_origins, check_fetch_site=True
        )
        if (
            reason is None
            and scope["path"] not in store.csrf_exempt_paths
            and not self._csrf_ok(scope, session)
        ):
            reason = "CSRF token missing or invalid"
        return reason

    def _csrf_ok(self, scope: Scope, session: SessionData | None) -> bool:
        store = self.store
        values = [v for k, v in scope["headers"] if k == store.csrf_header]
        if session is None or len(values) != 1:
            return False
        return store.csrf.verify(session.sid, values[0].decode("latin-1"))

    def _read(
        self, scope: Scope, header: bytes, safe: bool, *, keys_reloaded: bool = False
    ) -> AuthState | _Unsettled | None:
        """Everything that needs no I/O: the cookies, the forgery checks, the access token.

        ``header`` is the request's joined Cookie header and ``safe`` whether this is an
        HTTP request with a safe method. Returns the finished state, or an
        :class:`_Unsettled` one when the session check or a refresh still has to run
        (awaited by the caller), or None for "refuse". Kept synchronous so that a request
        without I/O costs no extra coroutine.
        """
        store, names = self.store, self.store.names
        cookies = parse_cookie_header(header, names.wanted)
        if not cookies:
            return AuthState(store)  # none of the kit's cookies: nothing to check or refresh
        access = cookies.get(names.access)
        refresh_token = cookies.get(names.refresh)
        raw_state = cookies.get(names.state)
        session = store.state_codec.loads(raw_state) if raw_state is not None else None
        if raw_state is not None and session is None:
            self._debug("state cookie rejected (tampered, foreign or too old)")
        elif session is not None:
            bound_to = refresh_token if refresh_token is not None else access
            if bound_to is None or session.binding != binding_of(bound_to):
                # An old state cookie (an old user state, another session's CSRF binding)
                # paired with a newer session's tokens: ignore it.
                self._debug("state cookie belongs to another session; ignored")
                session = None

        if (access is not None or refresh_token is not None) and not safe:
            reason = self._forgery(scope, session)
            if reason is not None:
                # Before any refresh: a forged request must not even rotate tokens.
                logger.info("refused %s %s: %s", scope.get("method", "WS"), scope["path"], reason)
                return None

        state = AuthState(store)
        if session is not None:
            state.sid, state.user_state = session.sid, session.user_state
        if refresh_token is not None:
            state.refresh_token = refresh_token
        now = store.clock()
        expired = False
        if access is not None:
            try:
                claims = store.verifier.verify(access, now)
            except TokenExpiredError:
                expired = True
                self._debug("access token expired")
            except UnknownKeyError as exc:
                if keys_reloaded or store.verifier.key_source is None:
                    self._debug("access token rejected: %s", exc)
                    return state
                return _Unsettled(state, access, False, False, unknown_key=True)
            except TokenError as exc:
                # A forged or foreign token is not an expired session: no refresh for it.
                self._debug("access token rejected: %s", exc)
                return state
            else:
                state.token, state.claims = access, claims
                state.token_type = cookies.get(names.type, "Bearer")
        refresh = store.refresh
        refresh_due = (
            refresh is not None
            and refresh_token is not None
            and (state.claims is None or needs_refresh(state.claims["exp"], now, refresh.interval))
        )
        if refresh_due or (state.claims is not None and store.session_check is not None):
            return _Unsettled(state, access, expired, refresh_due)
        if safe and access is not None and session is not None and raw_state is not None:
            self._remember(header, state, access, raw_state)
        return state

    def _remember(self, header: bytes, state: AuthState, access: str, raw_state: str) -> None:
        """Remember a signed-in header's outcome for as long as it stays the same: the
        token's and the state cookie's validity windows, and (with refresh configured) until
        a refresh falls due. Only outcomes that needed no I/O are remembered, so a store with
        a revocation check never takes this path; unsafe methods never read it."""
        store = self.store
        token = store.verifier.remembered(access)
        cookie = store.state_codec.remembered(raw_state)
        if token is None or cookie is None or len(header) > CACHED_HEADER_BYTES:
            return  # (verified_token_cache=0 remembers no token, so nothing here either)
        until = min(token[1], cookie[1])
        if store.refresh is not None and state.refresh_token is not None and state.claims:
            until = min(until, state.claims["exp"] - store.refresh.interval)
        # The claims and the user state are the verifier's and the codec's own remembered
        # values (the same token, the same cookie): an entry adds no copy of its own.
        self._hot.put(
            header,
            _Hot(
                valid_from=max(token[0], cookie[0]),
                valid_until=until,
                access=access,
                token_type=state.token_type or "Bearer",
                claims=token[2].copy,
                sid=state.sid,
                user_state=cookie[2].copy,
                refresh_token=state.refresh_token,
            ),
        )

    async def _settle(self, unsettled: _Unsettled) -> AuthState:
        """The I/O part: the session check (revocation), then a refresh when one is due."""
        state, store = unsettled.state, self.store
        if (
            store.session_check is not None
            and state.claims is not None
            and not await self._session_live(state)
        ):
            return state
        refresh = store.refresh
        refresh_token = state.refresh_token
        if not unsettled.refresh_due or refresh is None or refresh_token is None:
            return state
        access = unsettled.access
        self._debug(
            "refreshing (access token %s)",
            "expired" if unsettled.expired or access is None else "near expiry",
        )
        param = RefreshParam(
            auth_token=access, refresh_token=refresh_token, auth_user_state=state.user_state
        )
        shared = store.shared_store
        outcome = await self._flights.run(
            refresh_token,
            refresh.grace_period,
            lambda: (
                run_callback(store, refresh, param, state.sid)
                if shared is None
                else run_shared(store, shared, refresh, param, state.sid)
            ),
        )
        if isinstance(outcome, Refreshed):
            self._debug("refresh succeeded; new cookies queued")
            state.set_identity(
                outcome.token, outcome.token_type, outcome.claims, outcome.user_state
            )
            state.sid = outcome.sid
            state.refresh_token = outcome.refresh_token
            state.queue_refresh_cookies(outcome.set_cookies)
            # A remembered result must not outlive a revocation in the meantime.
            await self._session_live(state)
        elif isinstance(outcome, Ended):
            self._debug("refresh answered is_success=False; clearing every auth cookie")
            state.clear_identity()
            state.queue_refresh_cookies(clear_session(store))
        else:
            # Keep everything; a still-valid token keeps working, otherwise protected routes
            # answer 503 with Retry-After.
            state.unavailable = True
            successor = outcome.successor
            if successor is not None:
                # The refresh token was rotated although its access token is unusable here:
                # the browser must hold the successor, never present the old one again.
                self._debug("refresh token rotated, access token unusable; successor kept")
                state.sid, state.user_state = successor.sid, successor.user_state
                state.refresh_token = successor.refresh_token
                state.queue_refresh_cookies(successor.set_cookies)
        return state


class _Hot(NamedTuple):
    """A signed-in Cookie header's verified outcome, and when it holds."""

    valid_from: float
    valid_until: float
    access: str
    token_type: str
    claims: Callable[[], Any]  # each call: a private copy (Remembered.copy)
    sid: str | None
    user_state: Callable[[], Any]
    refresh_token: str | None


# AuthState without __init__: the hot path sets every field itself.
_new_state: Final = AuthState.__new__


class _Unsettled(NamedTuple):
    """A request state that still awaits the session check or a refresh."""

    state: AuthState
    access: str | None
    expired: bool
    refresh_due: bool
    unknown_key: bool = False  # the access token's kid is not held yet: reload, read again
