"""AuthKitMiddleware: the ASGI edge between the request reader and the per-request state.

Pure ASGI (never BaseHTTPMiddleware): the body is never read or buffered; streaming
responses, background tasks and contextvars pass through; lifespan is forwarded untouched.
:class:`~fastapi_authkit.reader.RequestReader` decides what a request's credentials mean
without I/O; this module carries out what it cannot (the session check, the refresh,
forgetting a signed-out session's refresh results), publishes the :class:`AuthState`,
reports to the audit hook (:mod:`.audit`) and writes the queued cookies at response start.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .audit import (
    report_refresh,
    report_refused,
    report_revoked,
    report_route_events,
    report_unchecked,
)
from .authstate import published, remembered
from .callback import RefreshParam
from .clientinfo import client_info
from .config import AuthStore
from .decision import CHECK, CLEAR, REFRESH, RELOAD, UNAVAILABLE, CachedReading, Reading, Refused
from .dropped_cookies import warn_if_dropped
from .errors import ConfigurationError, StoreUnavailableError
from .jsoncopy import private_copy
from .live import LiveConnections
from .notices import show_debug_output
from .reader import RequestReader
from .refresh import (
    Ended,
    Outcome,
    RefreshContext,
    Renewed,
    SingleFlight,
    forget_shared,
    revoke_at_auth_server,
    run_callback,
    run_rotation,
    run_shared,
)
from .refusal import Refusals, send_unavailable
from .session import clear_session
from .source import SESSION_CLAIM
from .state import SCOPE_KEY, AuthState
from .streams import AppSend, StreamWatch

__all__ = ["AuthKitMiddleware"]

logger = logging.getLogger("fastapi_authkit")

# Set in the scope by the first AuthKitMiddleware a request passes: a second one in the same
# stack would read, refresh and rotate the same cookies again.
_SEEN: Final = "fastapi_authkit.middleware"


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
        self._reader = RequestReader.for_store(store)
        self._audit = store.events
        self._writer = writer = store.cookie_writer
        self._refreshing = RefreshContext(store.verifier, writer, store.clock, store.notices)
        self._route = store.refresh_route
        self._refusals = Refusals(
            csrf_header=store.csrf_header_name,
            csrf_cookie=store.names.csrf,
            allowed_origins=store.allowed_origins,
        )
        # Open connections of sessions, ended when their session is (with a session check
        # to watch, or WebSockets closed at their token's expiry).
        live, check = store.live, store.session_check
        self._live = (
            LiveConnections(
                live, store.clock, check, store.session_known, store.revocation_listeners
            )
            if check is not None or live.close_at_token_expiry is not None
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
        decision = self._reader.read(
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
            decision = self._reader.read(
                scope["headers"],
                method,
                scope["path"],
                scope.get("scheme", "http"),
                self._clock(),
                root_path=scope.get("root_path", ""),
                keys_reloaded=True,
            )
        if decision.__class__ is CachedReading:
            # The common request: a signed-in browser repeating its Cookie header.
            state = remembered(self.store, decision, scope["headers"])
        elif decision.__class__ is Reading:
            state = published(self.store, decision)
            if decision.then:
                state = await self._settle(state, decision, scope)
        else:
            # Before any refresh: a forged request must not even rotate tokens.
            reason = decision.reason if isinstance(decision, Refused) else ""
            logger.info("refused %s %s: %s", scope.get("method", "WS"), scope["path"], reason)
            report_refused(self._audit, scope, reason)
            await self._refusals.send(scope, receive, send, reason)
            return
        scope[SCOPE_KEY] = state

        # The app's send: the cookie writes at response start, and the watch of a stream.
        live, claims = self._live, state.claims
        app_send: AppSend
        watch: StreamWatch | None = None
        if live is not None and method == "GET" and claims is not None and live.streams != "none":
            # Watched: a response that starts as a stream ends with its session.
            app_send = watch = StreamWatch(
                scope, state, send, self._send_with_cookies, live, claims, receive
            )
        else:
            app_send = AppSend(scope, state, send, self._send_with_cookies)
        try:
            if watch is not None:
                try:
                    await self.app(scope, watch.receive, watch.send)
                finally:
                    if (closing := watch.finish()) is not None:
                        await closing
            elif live is not None and kind == "websocket" and claims is not None:
                conn = live.connection(kind, claims, receive, app_send.send)
                if conn is None:
                    await self.app(scope, receive, app_send.send)
                    return
                live.add(conn)
                try:
                    await self.app(scope, conn.receive, conn.send)
                finally:
                    if (closing := conn.finish()) is not None:
                        await closing
            else:
                await self.app(scope, receive, app_send.send)
        except StoreUnavailableError as exc:
            # A route that needed the store (sign_in, sign_out, the sessions list) during an
            # outage, in an app without a handler of its own: fail closed as protected routes
            # do, 503 with Retry-After rather than the server's 500. Once the response has
            # begun, nothing can be answered any more.
            if app_send.started or kind != "http":
                raise
            logger.error(
                "%s %s: the store is unavailable, answered 503: %s", method, scope["path"], exc
            )
            await send_unavailable(send, self.store.retry_after)

    async def _send_with_cookies(
        self, scope: Scope, state: AuthState, message: Message, send: Send
    ) -> None:
        """A response start with the cookie writes the request queued (a refresh, sign_in,
        sign_out); after a sign-out, what was remembered for the session is dropped first."""
        state.raise_if_unawaited()
        revoked = None
        if state.signed_out_refresh_token is not None:
            # What was remembered for the session goes: a rotated-out predecessor presented
            # within the grace period must not revive it.
            self._flights.forget(state.signed_out_refresh_token)
            await forget_shared(self._route.shared, state.signed_out_refresh_token)
            refresh = self._route.config
            if refresh is not None and state.take_revocation():
                revoked = await revoke_at_auth_server(refresh, state.signed_out_refresh_token)
        report_route_events(self._audit, state.take_route_events(), revoked)
        cookies = state.pending_cookies()
        if cookies:
            store = self.store
            warn_if_dropped(
                store.notices, scope, secure=store.cookie_secure, domain=store.cookie_domain
            )
            headers = [
                (k, v) for k, v in message.get("headers", ()) if k.lower() != b"cache-control"
            ]
            headers.extend((b"set-cookie", cookie) for cookie in cookies)
            # Responses that set credentials must never be stored by a cache.
            headers.append((b"cache-control", b"no-store"))
            message["headers"] = headers
        await send(message)

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
                report_unchecked(self._audit, scope, claims)
                state.unauthenticate()
                state.mark_unavailable()
                return False
        if not live:
            if state.credential == "header":
                # A bearer client's session: no cookie of the request is its.
                report_revoked(self._audit, scope, claims)
                state.unauthenticate()
            else:
                self._revoked(state, scope, claims)
        return live

    def _revoked(self, state: AuthState, scope: Scope, claims: dict[str, Any] | None) -> None:
        """The session of ``claims`` is over (the session check said so): no identity, and
        every cookie goes."""
        self._debug("session revoked; clearing every auth cookie")
        report_revoked(self._audit, scope, claims)
        state.clear_identity()
        state.queue_refresh_cookies(clear_session(self._writer))

    def _debug(self, message: str, *args: object) -> None:
        if self.store.debug:
            logger.debug(message, *args)

    async def _settle(self, state: AuthState, reading: Reading, scope: Scope) -> AuthState:
        """The I/O part: the session check (revocation), then a refresh when one is due."""
        then = reading.then
        if then is CLEAR:
            self._revoked(state, scope, reading.claims)
            return state
        if then is UNAVAILABLE:
            # Neither accepted nor refused (its auth server cannot be asked): no refresh,
            # which would need the same server, and no cookie touched.
            state.mark_unavailable()
            return state
        if reading.credential == "header":
            # The built-in issuer's bearer token, whose session the view could not vouch for.
            if await self._session_live(state, scope) or state.unavailable:
                return state
            return await self._without_bearer(scope)
        route = self._route
        refresh, refresh_token = route.config, state.refresh_token
        refresh_due = REFRESH in then and refresh is not None and refresh_token is not None
        rotation = route.rotation
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
        shared = route.shared
        hint = state.claims if state.claims is not None else reading.expired_claims
        state_id, context = state.state_id, self._refreshing

        async def attempt() -> Outcome:
            # The one request that makes the call reports what it came to; the requests
            # given its outcome (waiting on it, or within the grace period) do not.
            outcome = await (
                # Who refreshes is recorded with the rotation (the session list shows it).
                run_rotation(context, rotation, param, hint, state_id, client_info(scope))
                if rotation is not None
                else run_callback(context, refresh, param, state_id)
                if shared is None
                else run_shared(context, shared, refresh, param, state_id)
            )
            report_refresh(self._audit, scope, hint, outcome)
            return outcome

        outcome = await self._flights.run(refresh_token, refresh.grace_period, attempt)
        if isinstance(outcome, Renewed):
            self._debug("refresh succeeded; new cookies queued")
            # The outcome is shared by every request that waited on the call and by those
            # given it within the grace period: each route gets claims and a user state of
            # its own to change.
            state.renew(
                outcome.token,
                outcome.token_type,
                private_copy(outcome.claims),
                private_copy(outcome.user_state),
                outcome.state_id,
                outcome.refresh_token,
                outcome.set_cookies,
            )
            # A remembered result must not outlive a revocation in the meantime (the view
            # answers this one without I/O after a rotation: the rotation taught it).
            await self._session_live(state, scope)
        elif isinstance(outcome, Ended):
            self._debug("refresh answered is_success=False; clearing every auth cookie")
            state.clear_identity()
            state.queue_refresh_cookies(clear_session(self._writer))
        else:
            # Keep everything; a still-valid token keeps working (once its session is known
            # to be live), otherwise protected routes answer 503 with Retry-After.
            state.mark_unavailable()
            successor = outcome.successor
            if successor is not None:
                # The refresh token was rotated although its access token is unusable here:
                # the browser must hold the successor, never present the old one again.
                self._debug("refresh token rotated, access token unusable; successor kept")
                state.keep_successor(
                    successor.state_id,
                    private_copy(successor.user_state),
                    successor.refresh_token,
                    successor.set_cookies,
                )
            if check:
                # The identity's liveness is still unknown (the rotation did not answer).
                await self._session_live(state, scope)
        return state

    async def _without_bearer(self, scope: Scope) -> AuthState:
        """The request read again without its ``Authorization`` header, whose token's session
        is over: an invalid credential counts as absent, and the cookies beside it decide."""
        headers = [(k, v) for k, v in scope["headers"] if k != b"authorization"]
        method, path, scheme = scope.get("method"), scope["path"], scope.get("scheme", "http")
        root_path = scope.get("root_path", "")
        decision = self._reader.read(
            headers, method, path, scheme, self._clock(), root_path=root_path
        )
        if isinstance(decision, CachedReading):
            decision = decision.reading(headers, self.store.names)
        elif isinstance(decision, Refused):
            # The cookies would be refused as a forgery: the request goes on anonymous,
            # their session unused and untouched. (No browser sends it: another site cannot
            # make one attach an Authorization header.)
            self._debug("revoked bearer token beside a refused cookie request: anonymous")
            return AuthState(self.store)
        state = published(self.store, decision)
        return await self._settle(state, decision, scope) if decision.then else state
