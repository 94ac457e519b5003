"""Audit events: what happened to a session, as typed records, and how they reach the hook.

``create_store(on_event=hook)`` gives the kit one callable, ``hook(event)``, plain or
``async``. Each event is a frozen dataclass deriving from :class:`AuthEvent`: when
(``at``, the configuration's clock), whose (``subject``, ``session``), and which request
(``path``, ``method``, client ``ip`` and ``user_agent``), plus the fields of its kind. No
event holds a token, a refresh token, a cookie value or a key: tokens are named by their
``jti`` (an id, not a credential) and sessions by the id the issuer's sessions list shows
(the access token's ``sid`` claim); a failure is named by its exception's type, never by
its message (which may quote what it failed on).

The hook can never break or stall a request:

* a **plain function** is called inline, where the event happens (on the event loop, in the
  request's context, so that an OpenTelemetry span of the request is the current one): it
  must be quick, as a logging handler is. What it raises is logged and the request goes on.
* an **async** hook is never awaited by the request: events go into a queue of
  :data:`QUEUE_SIZE` events per configuration and event loop, which one background task
  drains in order, giving each call :data:`HOOK_TIMEOUT` seconds. A full queue drops the
  new event (counted, and logged) rather than grow: a hook that hangs costs at most
  :data:`HOOK_TIMEOUT` seconds per event and :data:`QUEUE_SIZE` events of memory, and the
  requests never wait for it. Events still queued when the event loop stops are lost.

Failures of the hook are logged on the ``fastapi_authkit`` logger as one streak (the
first with its traceback, the rest counted), as the refresh callback's are.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeAlias, TypeVar

from .clientinfo import client_info
from .notices import Streak
from .source import SESSION_CLAIM

__all__ = [
    "HOOK_TIMEOUT",
    "QUEUE_SIZE",
    "AuthEvent",
    "EventHook",
    "EventKind",
    "Events",
    "RefreshFailed",
    "Refreshed",
    "RequestRefused",
    "ReuseDetected",
    "RevokedSession",
    "SessionEnded",
    "SignedIn",
    "SignedOut",
    "StoreUnavailable",
    "refusal_reason",
]

# Seconds an async hook may take for one event before it is cancelled (and logged).
HOOK_TIMEOUT: Final = 5.0
# Events waiting for an async hook, per configuration and event loop; beyond, new ones drop.
QUEUE_SIZE: Final = 1024
# A request path is the client's to choose: an event keeps at most this much of it.
_MAX_PATH: Final = 1024

EventKind: TypeAlias = Literal[
    "signed_in",
    "refreshed",
    "refresh_failed",
    "session_ended",
    "reuse_detected",
    "signed_out",
    "request_refused",
    "revoked_session",
    "store_unavailable",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthEvent:
    """What every event says. ``kind`` names the event (each subclass has its own);
    ``at`` is the time (seconds since the epoch, the configuration's clock); ``subject`` the
    ``sub`` claim and ``session`` the ``sid`` claim (the built-in issuer's session id, as
    its sessions list shows it) of the access token concerned, each None when unknown;
    ``path`` and ``method`` the request's (``"WEBSOCKET"`` for a WebSocket handshake);
    ``ip`` and ``user_agent`` the client's (as the server saw it; see
    :func:`~fastapi_authkit.clientinfo.client_info`)."""

    kind: EventKind = field(init=False)
    at: float
    subject: str | None
    session: str | None
    path: str
    method: str
    ip: str | None
    user_agent: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedIn(AuthEvent):
    """A session started (``sign_in``, ``issuer.sign_in``): ``jti`` is its access token's."""

    kind: Literal["signed_in"] = field(init=False, default="signed_in")
    jti: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Refreshed(AuthEvent):
    """The refresh callback (or the issuer's rotation) handed out a new access token:
    ``old_jti`` (None when the browser had none left) and ``new_jti``. One event per call:
    requests that share the call (single flight, the grace period) add none."""

    kind: Literal["refreshed"] = field(init=False, default="refreshed")
    old_jti: str | None
    new_jti: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshFailed(AuthEvent):
    """A refresh failed transiently (the callback raised, timed out or answered something
    unusable): nothing was cleared, the next request tries again. ``error`` is the
    exception's type name (``RefreshTimeoutError``, ``InvalidRefreshResultError``,
    ``RefreshError`` for whatever the callback raised)."""

    kind: Literal["refresh_failed"] = field(init=False, default="refresh_failed")
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEnded(AuthEvent):
    """A refresh ended the session: ``reason`` is ``"callback"`` (it answered
    ``is_success=False``) or ``"expired"`` (the built-in issuer no longer holds the
    session: past its idle or absolute lifetime). Every auth cookie is cleared."""

    kind: Literal["session_ended"] = field(init=False, default="session_ended")
    reason: Literal["callback", "expired"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReuseDetected(AuthEvent):
    """A rotated-out refresh token was presented after its grace period (RFC 9700 reuse
    detection): the whole session family is revoked. ``subject`` and ``session`` are the
    family's."""

    kind: Literal["reuse_detected"] = field(init=False, default="reuse_detected")


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedOut(AuthEvent):
    """A session ended at the route's request (``sign_out``, ``issuer.sign_out``, the
    route revoking its own session). ``everywhere``: every session of the subject.
    ``revoked``: whether it was revoked server-side (at the issuer, or by the refresh
    callback's revocation hook); False when that failed (the cookies are cleared all the
    same), None when there is nothing to revoke it at. ``found`` (built-in issuer): whether
    the store still held the session (with ``everywhere``, any live session of the
    subject); False when its data was gone (flushed, swapped, evicted) or it had ended
    already: it is refused everywhere all the same. None when the store was not asked."""

    kind: Literal["signed_out"] = field(init=False, default="signed_out")
    everywhere: bool
    revoked: bool | None
    found: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRefused(AuthEvent):
    """A request was refused as cross-site, before anything else happened (403, or a
    WebSocket handshake closed): ``reason`` is ``"csrf"`` (no valid CSRF token),
    ``"origin"`` (a foreign, null or malformed ``Origin``) or ``"fetch_site"``
    (``Sec-Fetch-Site: cross-site``); ``detail`` says it in words."""

    kind: Literal["request_refused"] = field(init=False, default="request_refused")
    reason: Literal["csrf", "origin", "fetch_site"]
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RevokedSession(AuthEvent):
    """A request presented a session the issuer no longer holds live (signed out, revoked
    from the sessions list or by reuse detection, past its absolute lifetime): anonymous,
    every auth cookie cleared."""

    kind: Literal["revoked_session"] = field(init=False, default="revoked_session")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreUnavailable(AuthEvent):
    """The store (Redis) could not answer, so the kit failed closed: no session accepted
    that could not be checked, nothing cleared or consumed (protected routes answer 503).
    ``operation`` is what needed it: ``"session_check"`` or ``"refresh"``."""

    kind: Literal["store_unavailable"] = field(init=False, default="store_unavailable")
    operation: Literal["session_check", "refresh"]


EventHook: TypeAlias = Callable[[AuthEvent], "Awaitable[None] | None"]
"""``create_store(on_event=...)``: ``hook(event)``, a plain function (called inline, on the
event loop, in the request's context: keep it quick) or an async one (called from a
bounded queue, :data:`HOOK_TIMEOUT` seconds per event). What it raises is logged; its
return value is ignored."""
E = TypeVar("E", bound=AuthEvent)


def refusal_reason(detail: str) -> Literal["csrf", "origin", "fetch_site"]:
    """The :attr:`RequestRefused.reason` of a refusal the reader or ``sign_in`` explained
    with ``detail`` (see :func:`~fastapi_authkit.origins.cross_site_refused`)."""
    if detail.startswith("CSRF"):
        return "csrf"
    if detail.startswith("Sec-Fetch-Site"):
        return "fetch_site"
    return "origin"


def _text(claims: Mapping[str, Any] | None, name: str) -> str | None:
    value = claims.get(name) if claims is not None else None
    return value if isinstance(value, str) else None


def _is_async(hook: object) -> bool:
    return inspect.iscoroutinefunction(hook) or inspect.iscoroutinefunction(
        getattr(hook, "__call__", None)  # noqa: B004 - async callable objects
    )


class Events:
    """The ``on_event`` hook of one configuration: builds events and delivers them (see
    the module docstring). The middleware and the request layer hold one only when a hook
    is configured, so that without one no event is ever built."""

    __slots__ = (
        "_async",
        "_clock",
        "_drops",
        "_failures",
        "_hook",
        "_loop",
        "_queue",
        "_task",
        "dropped",
    )

    def __init__(self, hook: EventHook, clock: Callable[[], float]) -> None:
        self._hook = hook
        self._clock = clock
        self._async = _is_async(hook)
        self._failures = Streak(
            clock,
            still="on_event still failing",
            again="on_event works again after %d failure(s) in a row",
        )
        self._drops = Streak(
            clock,
            still="on_event still not keeping up",
            again="on_event keeps up again after %d dropped event(s)",
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[AuthEvent | Awaitable[object]] | None = None
        self._task: asyncio.Task[None] | None = None  # held: the loop keeps tasks weakly
        self.dropped = 0  # events dropped since start (full queue, or no event loop)

    def build(
        self,
        kind: Callable[..., E],
        scope: Mapping[str, Any],
        claims: Mapping[str, Any] | None,
        **fields: Any,
    ) -> E:
        """An event of ``kind`` about the token ``claims`` in the connection ``scope``."""
        client = client_info(scope)
        path = scope.get("path", "")
        return kind(
            at=self._clock(),
            subject=_text(claims, "sub"),
            session=_text(claims, SESSION_CLAIM),
            path=path[:_MAX_PATH] if isinstance(path, str) else "",
            method=scope.get("method", "GET") if scope.get("type") != "websocket" else "WEBSOCKET",
            ip=client.ip,
            user_agent=client.user_agent,
            **fields,
        )

    def emit(
        self,
        kind: Callable[..., AuthEvent],
        scope: Mapping[str, Any],
        claims: Mapping[str, Any] | None,
        **fields: Any,
    ) -> None:
        """Build an event and deliver it."""
        self.deliver(self.build(kind, scope, claims, **fields))

    def deliver(self, event: AuthEvent) -> None:
        """Hand ``event`` to the hook: called now (a plain function) or queued (async).
        Never raises."""
        if self._async:
            self._enqueue(event)
            return
        try:
            result = self._hook(event)
        except Exception as exc:
            self._failed(event, exc)
            return
        if inspect.isawaitable(result):
            # A plain function that returned an awaitable: it runs as an async hook's would.
            self._enqueue(result)
            return
        self._failures.ended()

    def _failed(self, event: AuthEvent, exc: BaseException) -> None:
        self._failures.failed(
            "on_event raised %s on a %s event (the request goes on; the event is lost)",
            type(exc).__name__,
            event.kind,
            exc=exc,
        )

    def _enqueue(self, item: AuthEvent | Awaitable[object]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._drop(item, "no asyncio event loop runs here to call it")
            return
        queue, task = self._queue, self._task
        if queue is None or self._loop is not loop or task is None or task.done():
            # The first event on this loop (a test client starts a loop per portal), or the
            # task ended (a hook that raised CancelledError of its own): one queue and one
            # draining task per loop, in a context of its own, so that the request it
            # starts in lends it no context variables (a span, a request id).
            queue = asyncio.Queue(QUEUE_SIZE)
            self._loop, self._queue = loop, queue
            self._task = loop.create_task(self._drain(queue), context=contextvars.Context())
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            self._drop(item, f"{QUEUE_SIZE} events are waiting for it")
            return
        self._drops.ended()

    def _drop(self, item: AuthEvent | Awaitable[object], why: str) -> None:
        self.dropped += 1
        if inspect.iscoroutine(item):
            item.close()  # never run; closing spares Python's "never awaited" warning
        kind = item.kind if isinstance(item, AuthEvent) else "(awaitable)"
        self._drops.failed(
            "on_event cannot keep up: %s, so a %s event is dropped", why, kind, exc=None
        )

    async def _drain(self, queue: asyncio.Queue[AuthEvent | Awaitable[object]]) -> None:
        # Runs until the loop cancels it at shutdown.
        while True:
            item = await queue.get()
            event = item if isinstance(item, AuthEvent) else None
            try:
                async with asyncio.timeout(HOOK_TIMEOUT):
                    result = self._hook(item) if isinstance(item, AuthEvent) else item
                    if inspect.isawaitable(result):
                        await result
            except TimeoutError:
                self._failures.failed(
                    "on_event did not finish within %gs on a %s event; cancelled",
                    HOOK_TIMEOUT,
                    event.kind if event is not None else "(awaitable)",
                    exc=None,
                )
            except Exception as exc:
                if event is not None:
                    self._failed(event, exc)
                else:
                    self._failures.failed(
                        "on_event raised %s (the event is lost)", type(exc).__name__, exc=exc
                    )
            else:
                self._failures.ended()
            finally:
                del item, event
                queue.task_done()
