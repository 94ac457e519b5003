"""How audit events reach the app's ``on_event`` hook: inline, or through a bounded queue.

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
from dataclasses import replace
from typing import Any, ClassVar, Final, TypeAlias, TypeVar

from .clientinfo import client_info
from .events import AuthEvent, EventHook, EventKind
from .notices import Streak
from .source import SESSION_CLAIM

__all__ = [
    "COALESCED_KINDS",
    "HOOK_TIMEOUT",
    "PRIORITY_KINDS",
    "QUEUE_SIZE",
    "RESERVED_SHARE",
    "SILENT",
    "AuditSink",
    "Events",
    "Silent",
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


E = TypeVar("E", bound=AuthEvent)


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
    the module docstring). A configuration holds one only when a hook is configured, and
    :data:`SILENT` otherwise, so that without one no event is ever built."""

    # Someone receives what is reported: worth building an event for.
    listening: ClassVar[bool] = True

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

    def built(
        self,
        kind: Callable[..., E],
        scope: Mapping[str, Any],
        claims: Mapping[str, Any] | None,
        **fields: Any,
    ) -> tuple[E, ...]:
        """The event :meth:`build` makes, as a 1-tuple: :data:`SILENT` answers an empty
        one, so that code delivering it later needs no check for a hook."""
        return (self.build(kind, scope, claims, **fields),)

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


class Silent:
    """The audit sink without an ``on_event`` hook: every event goes nowhere, unbuilt."""

    __slots__ = ()

    # Nobody receives what is reported: a caller may skip what it would do only for that.
    listening: ClassVar[bool] = False

    def built(
        self,
        kind: Callable[..., E],
        scope: Mapping[str, Any],
        claims: Mapping[str, Any] | None,
        **fields: Any,
    ) -> tuple[E, ...]:
        return ()

    def emit(
        self,
        kind: Callable[..., AuthEvent],
        scope: Mapping[str, Any],
        claims: Mapping[str, Any] | None,
        **fields: Any,
    ) -> None:
        return None

    def deliver(self, event: AuthEvent) -> None:
        return None


SILENT: Final = Silent()
# Where a configuration's audit reports go: its hook, or nowhere (create_store's choice).
AuditSink: TypeAlias = Events | Silent
