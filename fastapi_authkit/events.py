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
  drains in order, giving each call :data:`HOOK_TIMEOUT` seconds. The queue never grows:
  a hook that hangs costs at most :data:`HOOK_TIMEOUT` seconds per event and
  :data:`QUEUE_SIZE` events of memory, and the requests never wait for it. Events still
  queued when the event loop stops are lost.

What fills that queue is partly the clients' to choose (every replay of a revoked cookie
is a refusal), so two rules keep a flood from pushing out what matters:

* **coalescing**: a kind of :data:`COALESCED_KINDS` (refusals, and failures a client can
  repeat at will) about the same session and client (kind, subject, session, ip and the
  kind's own reason) as one still waiting in the queue adds one to that event's
  :attr:`AuthEvent.count` instead of taking a slot: one client's flood is one event. The
  event delivered is the first of them, where it was queued; the fields the client chooses
  freely (path, user agent, a refusal's detail) are not part of the key, so varying them
  buys no slot. The keys held are those of queued events, so never more than the queue.
* **reserved room**: the last :data:`RESERVED_SHARE` of the queue takes only
  :data:`PRIORITY_KINDS` (sign-in, sign-out, reuse detected): a flood of other events, from
  many clients, leaves room for them. Past its room an event is dropped, counted
  (:attr:`Events.dropped`) and logged.

A plain hook is called once per event: ``count`` is 1 for it.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, TypeAlias, TypeVar

from .clientinfo import client_info
from .notices import Streak
from .source import SESSION_CLAIM

__all__ = [
    "HOOK_TIMEOUT",
    "QUEUE_SIZE",
    "COALESCED_KINDS",
    "PRIORITY_KINDS",
    "RESERVED_SHARE",
    "AuthEvent",
    "EventHook",
    "EventKind",
    "Events",
    "LoginFailed",
    "LoginLocked",
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
# The share of that queue only PRIORITY_KINDS may take, so that a flood of anything else
# (many clients' refusals, each coalesced but each a slot) leaves a sign-in its room.
RESERVED_SHARE: Final = 0.25
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
    "login_failed",
    "login_locked",
]


# What an audit trail must not lose to a flood: the reserved share of the queue is theirs.
# Each takes the attacker a sign-in (rate-limited by the login guard), a rotation, or (a
# lockout) a whole series of failed sign-ins, not a request.
PRIORITY_KINDS: Final[frozenset[EventKind]] = frozenset(
    {"signed_in", "signed_out", "reuse_detected", "login_locked"}
)
# Kinds a client can repeat once per request, at will: refusals (a revoked session, a
# cross-site request), the end of a session already over, a refresh failing or a store
# down for every request. Each maps to its own field that is part of the coalescing key
# (a CSRF refusal is not an Origin one), or None.
_COALESCED: Final[Mapping[EventKind, str | None]] = {
    "request_refused": "reason",
    "revoked_session": None,
    "session_ended": "reason",
    "refresh_failed": "error",
    "store_unavailable": "operation",
    "login_failed": "account",
}
COALESCED_KINDS: Final[frozenset[EventKind]] = frozenset(_COALESCED)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthEvent:
    """What every event says. ``kind`` names the event (each subclass has its own);
    ``at`` is the time (seconds since the epoch, the configuration's clock); ``subject`` the
    ``sub`` claim and ``session`` the ``sid`` claim (the built-in issuer's session id, as
    its sessions list shows it) of the access token concerned, each None when unknown;
    ``path`` and ``method`` the request's (``"WEBSOCKET"`` for a WebSocket handshake);
    ``ip`` and ``user_agent`` the client's (as the server saw it; see
    :func:`~fastapi_authkit.clientinfo.client_info`); ``count`` how many events this one
    stands for: 1, unless it is of :data:`COALESCED_KINDS` and the same kind about the same
    session and client came again while it waited for an async hook (then this is the first
    of them, and ``at``, ``path`` and ``user_agent`` are the first's)."""

    kind: EventKind = field(init=False)
    at: float
    subject: str | None
    session: str | None
    path: str
    method: str
    ip: str | None
    user_agent: str | None
    count: int = 1


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
    """A rotated-out refresh token was presented when no window covers it: after the
    issuer's ``grace`` and ``late_replay``, or after its successor was used (RFC 9700 reuse
    detection). The whole session family is revoked. ``subject`` and ``session`` are the
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
    ``operation`` is what needed it: ``"session_check"``, ``"refresh"`` or ``"login_guard"``
    (the login guard could not count a sign-in attempt; see its ``fail_open``)."""

    kind: Literal["store_unavailable"] = field(init=False, default="store_unavailable")
    operation: Literal["session_check", "refresh", "login_guard"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginFailed(AuthEvent):
    """A sign-in attempt the login guard let in failed (the app's password check said no,
    or the route ended without saying it succeeded). ``account`` is the submitted account
    name as the guard counts it (normalized: NFKC, case-folded, at most 256 printable
    characters), whether or not such an account exists; ``failures`` how many attempts on
    it have not succeeded, this one included. ``subject`` and ``session`` are None."""

    kind: Literal["login_failed"] = field(init=False, default="login_failed")
    account: str
    failures: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginLocked(AuthEvent):
    """A failed attempt locked a counter of the login guard: ``locked`` says which, the
    ``"account"`` attempted (``account``, as in :class:`LoginFailed`) or the client
    ``"address"`` (``ip``; behind trusted proxies the forwarded one); ``failures`` its count
    of attempts not succeeded; ``until`` when the lock ends (seconds since the epoch).
    Sign-in attempts on it are answered 429 until then."""

    kind: Literal["login_locked"] = field(init=False, default="login_locked")
    account: str
    locked: Literal["account", "address"]
    failures: int
    until: float


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


def _coalescing_key(event: AuthEvent) -> tuple[object, ...] | None:
    """What makes two events of :data:`COALESCED_KINDS` "the same" (None for other kinds):
    only what the client cannot vary at will within one session, so that a flood is one
    key, and never two sessions, two clients or two reasons in one."""
    if event.kind not in _COALESCED:
        return None
    own = _COALESCED[event.kind]
    return (
        event.kind,
        event.subject,
        event.session,
        event.ip,
        getattr(event, own) if own is not None else None,
    )


class _Coalesced:
    """A coalescing event waiting in the queue, and how many it stands for so far."""

    __slots__ = ("count", "event", "key")

    def __init__(self, event: AuthEvent, key: tuple[object, ...]) -> None:
        self.event, self.key, self.count = event, key, 1


_Item: TypeAlias = "AuthEvent | _Coalesced | Awaitable[object]"


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
        "_pending",
        "_queue",
        "_room",
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
        self._queue: asyncio.Queue[_Item] | None = None
        # The coalescing events in the queue, by key: at most the queue's unreserved room.
        self._pending: dict[tuple[object, ...], _Coalesced] = {}
        self._room = QUEUE_SIZE  # slots the kinds outside PRIORITY_KINDS may take
        self._task: asyncio.Task[None] | None = None  # held: the loop keeps tasks weakly
        self.dropped = 0  # events dropped since start (no room in the queue, or no event loop)

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
            self._enqueue(event, event.kind, _coalescing_key(event))
            return
        try:
            result = self._hook(event)
        except Exception as exc:
            self._failed(event, exc)
            return
        if inspect.isawaitable(result):
            # A plain function that returned an awaitable: it runs as an async hook's would
            # (with its event's room; the hook has seen the event, so it is not coalesced).
            self._enqueue(result, event.kind, None)
            return
        self._failures.ended()

    def _failed(self, event: AuthEvent, exc: BaseException) -> None:
        self._failures.failed(
            "on_event raised %s on a %s event (the request goes on; the event is lost)",
            type(exc).__name__,
            event.kind,
            exc=exc,
        )

    def _enqueue(
        self, item: AuthEvent | Awaitable[object], kind: EventKind, key: tuple[object, ...] | None
    ) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._drop(item, kind, "no asyncio event loop runs here to call it")
            return
        queue, task = self._queue, self._task
        if queue is None or self._loop is not loop or task is None or task.done():
            # The first event on this loop (a test client starts a loop per portal), or the
            # task ended (a hook that raised CancelledError of its own): one queue and one
            # draining task per loop, in a context of its own, so that the request it
            # starts in lends it no context variables (a span, a request id).
            queue = asyncio.Queue(QUEUE_SIZE)
            self._loop, self._queue, self._pending = loop, queue, {}
            self._room = QUEUE_SIZE - int(QUEUE_SIZE * RESERVED_SHARE)
            self._task = loop.create_task(self._drain(queue), context=contextvars.Context())
        if key is not None and isinstance(item, AuthEvent):
            held = self._pending.get(key)
            if held is not None:
                held.count += 1  # the same refusal again while the first one waits
                return
        if kind in PRIORITY_KINDS:
            if queue.qsize() >= QUEUE_SIZE:
                self._drop(item, kind, f"{QUEUE_SIZE} events are waiting for it")
                return
        elif queue.qsize() >= self._room:
            self._drop(
                item,
                kind,
                f"{queue.qsize()} events are waiting for it (the rest of the queue is kept "
                "for sign-ins, sign-outs and reuse detection)",
            )
            return
        if key is not None and isinstance(item, AuthEvent):
            held = self._pending[key] = _Coalesced(item, key)
            queue.put_nowait(held)
        else:
            queue.put_nowait(item)
        self._drops.ended()

    def _drop(self, item: AuthEvent | Awaitable[object], kind: EventKind, why: str) -> None:
        self.dropped += 1
        if inspect.iscoroutine(item):
            item.close()  # never run; closing spares Python's "never awaited" warning
        self._drops.failed(
            "on_event cannot keep up: %s, so a %s event is dropped", why, kind, exc=None
        )

    async def _drain(self, queue: asyncio.Queue[_Item]) -> None:
        # Runs until the loop cancels it at shutdown.
        while True:
            item = await queue.get()
            event: AuthEvent | None
            if isinstance(item, _Coalesced):
                # Taken out of the queue: what comes after it starts an event of its own.
                if self._pending.get(item.key) is item:
                    del self._pending[item.key]
                event = item.event if item.count == 1 else replace(item.event, count=item.count)
            else:
                event = item if isinstance(item, AuthEvent) else None
            try:
                async with asyncio.timeout(HOOK_TIMEOUT):
                    result = self._hook(event) if event is not None else item
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
