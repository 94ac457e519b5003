"""AuthKitMiddleware: the ASGI glue between the request reader and the per-request state,
and the I/O steps the reader leaves to it.

Pure ASGI (never BaseHTTPMiddleware): the body is never read or buffered, streaming
responses, background tasks and contextvars pass through, lifespan is forwarded untouched.
What a request's credentials mean is decided by :class:`~fastapi_authkit.reader.RequestReader`
without I/O; this module feeds it, carries out what it cannot do (the session check, the
refresh, forgetting a signed-out session's refresh results), publishes the
:class:`AuthState` and emits the queued cookie writes. The instance holds the immutable store,
the reader and the single-flight registry; everything else lives in ``__call__``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .callback import RefreshParam
from .clientinfo import client_info
from .config import AuthStore
from .decision import CHECK, CLEAR, REFRESH, RELOAD, UNAVAILABLE, CachedReading, Reading, Refused
from .errors import ConfigurationError, StoreUnavailableError
from .events import RequestRefused, RevokedSession, SignedOut, StoreUnavailable, refusal_reason
from .jsoncopy import private_copy
from .live import LiveConnection, LiveConnections
from .notices import show_debug_output
from .origins import cookie_domain_mismatch, insecure_host
from .reader import RequestReader
from .refresh import (
    Ended,
    Renewed,
    SingleFlight,
    flight_alias,
    revoke_at_auth_server,
    run_callback,
    run_rotation,
    run_shared,
)
from .session import clear_session
from .source import SESSION_CLAIM
from .state import SCOPE_KEY, AuthState

__all__ = ["AuthKitMiddleware"]

logger = logging.getLogger("fastapi_authkit")

_RESPONSE_STARTS: Final = frozenset(
    {"http.response.start", "websocket.accept", "websocket.http.response.start"}
)
_INSECURE_NOTICE: Final = "secure-cookie-over-http"
_DOMAIN_NOTICE: Final = "cookie-domain-mismatch"
# Set in the scope by the first AuthKitMiddleware a request passes: a second one in the same
# stack would read, refresh and rotate the same cookies again.
_SEEN: Final = "fastapi_authkit.middleware"
_CSRF_REASON: Final = "CSRF token missing or invalid"


def _refusal(detail: str) -> tuple[Message, Message]:
    """The 403 answer, its detail in a JSON body."""
    body = json.dumps({"detail": detail}, separators=(",", ":")).encode()
    start: Message = {
        "type": "http.response.start",
        "status": 403,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ],
    }
    return start, {"type": "http.response.body", "body": body}


def _explained(reason: str, store: AuthStore) -> str:
    """What a refused request's answer says: why, and what makes such a request pass."""
    if reason == _CSRF_REASON:
        return (
            f"{reason}: an unsafe request (POST, PUT, PATCH, DELETE) authenticated by cookie "
            f"must send the {store.csrf_header_name} header with the value of the "
            f"{store.names.csrf} cookie"
        )
    allowed = ", ".join(sorted(store.allowed_origins)) or "none"
    return (
        f"cross-site request refused ({reason}): a cookie-authenticated unsafe request must "
        f"come from this app's own origin or one in create_store(allowed_origins=...) "
        f"(allowed_origins: {allowed})"
    )


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
        if store.debug:
            # Here rather than in create_store: Starlette builds the middleware at startup,
            # after the app (and uvicorn) configured logging, so a handler they set wins.
            show_debug_output()
        self._flights = SingleFlight(store.clock)
        self._clock = store.clock
        self._reader = RequestReader(store)
        self._read = self._reader.read
        self._csrf_refusal = _refusal(_explained(_CSRF_REASON, store))
        # Open connections of sessions, ended when their session is (with a session check
        # to watch, or WebSockets closed at their token's expiry).
        self._live = (
            LiveConnections(store)
            if store.session_check is not None or store.live.close_at_token_expiry is not None
            else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        if _SEEN in scope:
            raise ConfigurationError(
                "AuthKitMiddleware is added twice to this app's stack (or to an app mounted "
                "under one that has it): each request would be read and refreshed twice. "
                "Add it once, to the outermost app"
            )
        scope[_SEEN] = True
        method = scope["method"] if kind == "http" else None
        decision = self._read(
            scope["headers"],
            method,
            scope["path"],
            scope.get("scheme", "http"),
            self._clock(),
            root_path=scope.get("root_path", ""),
        )
        if decision.__class__ is Reading and decision.then is RELOAD:
            # The access token names a key the key set does not hold: reload it
            # (rate-limited), then read once more; still unknown is a foreign token.
            await self.store.verifier.reload_keys_for(decision.access or "", trusted=False)
            decision = self._read(
                scope["headers"],
                method,
                scope["path"],
                scope.get("scheme", "http"),
                self._clock(),
                root_path=scope.get("root_path", ""),
                keys_reloaded=True,
            )
        if decision.__class__ is CachedReading:
            # The common request: a signed-in browser repeating its Cookie header. Built
            # here rather than in a helper, as this runs for nearly every request.
            state = _new_state(AuthState)
            state.store, state.token = self.store, decision.access
            state.token_type, state.claims = decision.token_type, decision.claims()
            state.user_state, state.sid = decision.user_state(), decision.sid
            state.refresh_token = decision.refresh_token
            state.credential = "cookie"
        elif decision.__class__ is Reading:
            state = _published(self.store, decision)
            if decision.then:
                state = await self._settle(state, decision, scope)
        else:
            # Before any refresh: a forged request must not even rotate tokens.
            reason = decision.reason if isinstance(decision, Refused) else ""
            logger.info("refused %s %s: %s", scope.get("method", "WS"), scope["path"], reason)
            if self.store.events is not None:
                self.store.events.emit(
                    RequestRefused, scope, None, reason=refusal_reason(reason), detail=reason
                )
            await self._refuse(scope, receive, send, reason)
            return
        scope[SCOPE_KEY] = state

        # A plain function returning send's awaitable (ASGI only awaits what send returns):
        # no coroutine of its own for each message of every response, and one attribute
        # read when the request queued no cookie writes.
        def send_with_cookies(message: Message) -> Awaitable[None]:
            if state._cookies_queued and message["type"] in _RESPONSE_STARTS:
                return self._send_with_cookies(scope, state, message, send)
            return send(message)

        live = self._live
        if live is not None and state.claims is not None:
            if kind == "websocket":
                conn = live.connection(kind, state.claims, receive, send_with_cookies)
                if conn is not None:
                    live.add(conn)
                    try:
                        await self.app(scope, conn.receive, conn.send)
                    finally:
                        conn.finish()
                    return
            elif method == "GET" and live.streams != "none":
                await self._stream(scope, live, state.claims, receive, send_with_cookies)
                return
        await self.app(scope, receive, send_with_cookies)

    async def _stream(
        self,
        scope: Scope,
        live: LiveConnections,
        claims: dict[str, Any],
        receive: Receive,
        send: Send,
    ) -> None:
        """A GET whose response, once it starts as a stream (``end_streams``), is watched
        until its body ends: a revoked session ends it as a client leaving would. The
        record is made only when needed (the app waits on ``receive``, as a streaming
        response does for the client leaving, or a stream starts): most GETs make none."""
        every = live.streams == "all"
        conn: LiveConnection | None = None
        made = streaming = False

        def record() -> LiveConnection | None:
            nonlocal conn, made
            if not made:
                made = True
                conn = live.connection("http", claims, receive, send)
            return conn

        async def receive_live() -> Message:
            watched = conn if made else record()
            return await (receive() if watched is None else watched.receive())

        async def send_live(message: Message) -> None:
            nonlocal streaming
            if streaming and conn is not None:
                await conn.send(message)
                return
            if message["type"] == "http.response.start" and (every or _event_stream(message)):
                watched = record()
                if watched is not None:
                    streaming = True
                    await watched.send(message)
                    live.add(watched)
                    return
            await send(message)

        try:
            await self.app(scope, receive_live, send_live)
        finally:
            if conn is not None:
                conn.finish()

    async def _send_with_cookies(
        self, scope: Scope, state: AuthState, message: Message, send: Send
    ) -> None:
        """A response start with the cookie writes the request queued (a refresh, sign_in,
        sign_out); after a sign-out, what was remembered for the session is dropped first."""
        state.raise_if_unawaited()
        revoked = None
        if state.signed_out_refresh_token is not None:
            await self._forget(state.signed_out_refresh_token)
            refresh = self.store.refresh
            if state.revoke_signed_out and refresh is not None:
                state.revoke_signed_out = False  # once, whatever else the route sends
                revoked = await revoke_at_auth_server(refresh, state.signed_out_refresh_token)
        if state._events:
            self._deliver(state, revoked)
        cookies = state.pending_cookies()
        if cookies:
            if self.store.cookie_secure and not self.store.notices.given(_INSECURE_NOTICE):
                self._check_secure_transport(scope)
            if self.store.cookie_domain is not None and not self.store.notices.given(
                _DOMAIN_NOTICE
            ):
                self._check_cookie_domain(scope)
            headers = [
                (k, v) for k, v in message.get("headers", ()) if k.lower() != b"cache-control"
            ]
            headers.extend((b"set-cookie", cookie) for cookie in cookies)
            # Responses that set credentials must never be stored by a cache.
            headers.append((b"cache-control", b"no-store"))
            message["headers"] = headers
        await send(message)

    def _deliver(self, state: AuthState, revoked: bool | None) -> None:
        """The audit events of what the route did, now that the response carries it; a
        sign-out left to the revocation hook says what the hook answered."""
        events, state._events = state._events, ()
        audit = self.store.events
        if audit is None:
            return
        for event in events:
            if isinstance(event, SignedOut) and event.revoked is None:
                event = replace(event, revoked=revoked)
            audit.deliver(event)

    def _check_secure_transport(self, scope: Scope) -> None:
        """Secure cookies set over plain http to a host other than localhost never come
        back: the sign-in "works" and the next request is anonymous. Say so, once."""
        host = insecure_host(scope.get("scheme", "http"), scope["headers"])
        if host is not None:
            # Starlette's TestClient talks to http://testserver unless told otherwise.
            in_tests = (
                'In tests: TestClient(app, base_url="https://testserver"). '
                if host == "testserver"
                else ""
            )
            self.store.notices.once(
                _INSECURE_NOTICE,
                logging.WARNING,
                "Secure auth cookies were set on a plain-http request to %r: browsers keep "
                "Secure cookies from http only on localhost and 127.0.0.1, and HTTP clients "
                "(httpx, requests) send them back only over https, so the next request is "
                "anonymous. %sServe the app over https (behind a TLS-terminating proxy, let "
                "the server trust it: uvicorn --proxy-headers --forwarded-allow-ips=<proxy "
                "address>, so that the app sees https), or, for local development over "
                "http only, create_store(cookie_secure=False)",
                host,
                in_tests,
            )

    def _check_cookie_domain(self, scope: Scope) -> None:
        """A browser drops a cookie whose Domain the request's host is not in (RFC 6265
        §5.3 step 6): the sign-in "works" and the next request is anonymous. Say so, once."""
        domain = self.store.cookie_domain
        host = cookie_domain_mismatch(domain or "", scope["headers"])
        if host is not None:
            self.store.notices.once(
                _DOMAIN_NOTICE,
                logging.WARNING,
                "auth cookies with create_store(cookie_domain=%r) were set on a request to "
                "%r, which is not in that domain: browsers drop them, so the next request "
                "is anonymous. Serve the app under that domain, or set cookie_domain to the "
                "app's host or a parent domain of it (or leave it out: host-only cookies)",
                domain,
                host,
            )

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

    async def _session_live(self, state: AuthState, scope: Scope) -> bool:
        """Whether the identity in ``state`` is still live by the session check (the
        issuer's revocation list): from this process's view when it knows, else by asking
        the store. A revoked session queues the deletion of every cookie; a store outage
        fails closed without touching any cookie."""
        store = self.store
        check, claims = store.session_check, state.claims
        if check is None or claims is None:
            return True
        family = claims.get(SESSION_CLAIM)
        known = store.session_known
        live = (
            known(family, store.clock()) if known is not None and isinstance(family, str) else None
        )
        if live is None:
            try:
                live = await check(claims)
            except StoreUnavailableError as exc:
                logger.warning("session could not be checked, failing closed: %s", exc)
                if store.events is not None:
                    store.events.emit(StoreUnavailable, scope, claims, operation="session_check")
                state.unauthenticate()
                state.unavailable = True
                return False
        if not live:
            self._revoked(state, scope, claims)
        return live

    def _revoked(self, state: AuthState, scope: Scope, claims: dict[str, Any] | None) -> None:
        """The session of ``claims`` is over (the session check said so): no identity, and
        every cookie goes."""
        self._debug("session revoked; clearing every auth cookie")
        if self.store.events is not None:
            self.store.events.emit(RevokedSession, scope, claims)
        state.clear_identity()
        state.queue_refresh_cookies(clear_session(self.store))

    def _debug(self, message: str, *args: object) -> None:
        if self.store.debug:
            logger.debug(message, *args)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, reason: str) -> None:
        if scope["type"] == "websocket":
            # Closing before accept makes the server answer the handshake with 403.
            await receive()
            await send({"type": "websocket.close", "code": 1008, "reason": "origin refused"})
            return
        if reason == _CSRF_REASON:
            start, body = self._csrf_refusal  # the same answer every time: built once
        else:
            start, body = _refusal(_explained(reason, self.store))
        await send(start)
        await send(body)

    async def _settle(self, state: AuthState, reading: Reading, scope: Scope) -> AuthState:
        """The I/O part: the session check (revocation), then a refresh when one is due."""
        store, then = self.store, reading.then
        if then is CLEAR:
            self._revoked(state, scope, reading.claims)
            return state
        if then is UNAVAILABLE:
            # Neither accepted nor refused (its auth server cannot be asked): no refresh,
            # which would need the same server, and no cookie touched.
            state.unavailable = True
            return state
        refresh, refresh_token = store.refresh, state.refresh_token
        refresh_due = REFRESH in then and refresh is not None and refresh_token is not None
        rotation = store.rotation
        # The source's own rotation finds out whether the session is live in the same call
        # that rotates, so a check due alongside waits for its outcome (and may not be needed).
        check = CHECK in then
        if check and not (refresh_due and rotation is not None):
            if not await self._session_live(state, scope):
                return state
            check = False
        if not refresh_due or refresh is None or refresh_token is None:
            return state
        access = reading.access
        self._debug(
            "refreshing (access token %s)",
            "expired" if reading.expired or access is None else "near expiry",
        )
        param = RefreshParam(
            auth_token=access, refresh_token=refresh_token, auth_user_state=state.user_state
        )
        shared = store.shared_store
        hint = state.claims if state.claims is not None else reading.expired_claims
        outcome = await self._flights.run(
            refresh_token,
            refresh.grace_period,
            lambda: (
                # Who refreshes is recorded with the rotation (the session list shows it).
                run_rotation(
                    store, rotation, param, hint, state.sid, client_info(scope), scope=scope
                )
                if rotation is not None
                else run_callback(store, refresh, param, state.sid, scope=scope, hint=hint)
                if shared is None
                else run_shared(store, shared, refresh, param, state.sid, scope=scope, hint=hint)
            ),
        )
        if isinstance(outcome, Renewed):
            self._debug("refresh succeeded; new cookies queued")
            # The outcome is shared by every request that waited on the call and by those
            # given it within the grace period: each route gets claims and a user state of
            # its own to change.
            state.set_identity(
                outcome.token,
                outcome.token_type,
                private_copy(outcome.claims),
                private_copy(outcome.user_state),
            )
            state.sid = outcome.sid
            state.refresh_token = outcome.refresh_token
            state.queue_refresh_cookies(outcome.set_cookies)
            # A remembered result must not outlive a revocation in the meantime (the view
            # answers this one without I/O after a rotation: the rotation taught it).
            await self._session_live(state, scope)
        elif isinstance(outcome, Ended):
            self._debug("refresh answered is_success=False; clearing every auth cookie")
            state.clear_identity()
            state.queue_refresh_cookies(clear_session(store))
        else:
            # Keep everything; a still-valid token keeps working (once its session is known
            # to be live), otherwise protected routes answer 503 with Retry-After.
            state.unavailable = True
            successor = outcome.successor
            if successor is not None:
                # The refresh token was rotated although its access token is unusable here:
                # the browser must hold the successor, never present the old one again.
                self._debug("refresh token rotated, access token unusable; successor kept")
                state.sid, state.user_state = successor.sid, private_copy(successor.user_state)
                state.refresh_token = successor.refresh_token
                state.queue_refresh_cookies(successor.set_cookies)
            if check:
                # The identity's liveness is still unknown (the rotation did not answer).
                await self._session_live(state, scope)
        return state


def _published(store: AuthStore, reading: Reading) -> AuthState:
    """The state a route will see for ``reading`` (before any I/O step changes it)."""
    state = AuthState(store)
    if reading.claims is not None:
        state.token, state.token_type, state.claims = (
            reading.token,
            reading.token_type,
            reading.claims,
        )
        state.credential = reading.credential
    if reading.sid is not None:
        state.sid, state.user_state = reading.sid, reading.user_state
    if reading.refresh_token is not None:
        state.refresh_token = reading.refresh_token
    return state


# AuthState without __init__: the hot path sets every field itself.
_new_state: Final = AuthState.__new__


def _event_stream(message: Message) -> bool:
    for name, value in message.get("headers", ()):
        if name.lower() == b"content-type":
            return bytes(value).lower().startswith(b"text/event-stream")
    return False
