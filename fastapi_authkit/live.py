"""Open connections (WebSockets, event streams) of sessions, ended when their session ends.

A request is checked once, but a WebSocket or a server-sent event stream outlives its
handshake by hours. The middleware registers each such connection here with its session
family, and this per-process registry ends it when the session ends: at once when this
process learns of a revocation (the store's revocation view, fed by pub/sub, or the
in-memory store itself), and otherwise by a sweep every ``live_check_interval`` seconds
that asks the view and, when the view is not current, the store. A store that cannot
answer never ends a connection: only a session known to be over does.

Ending a connection looks to the app like its client leaving: its ``receive()`` returns
the disconnect message, its later ``send`` raises an :class:`OSError` (as ASGI servers do
for a gone client), and the kit sends the server the close (``websocket.close`` with the
configured code, or the end of the response body).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Final

from starlette.types import Message, Receive, Send

from .errors import StoreUnavailableError
from .liveoptions import LiveOptions
from .source import SESSION_CLAIM, SessionCheck, SessionKnown
from .stores.listeners import RevocationListeners

__all__ = ["ConnectionEnded", "LiveConnection", "LiveConnections"]

logger = logging.getLogger("fastapi_authkit")

_SESSION_ENDED: Final = "session ended"
_TOKEN_EXPIRED: Final = "token expired"  # noqa: S105 - a close reason
# Store reads at once during a sweep, when the view cannot answer (Redis is asked).
_ASK_AT_ONCE: Final = 64


class ConnectionEnded(OSError):
    """Raised by ``send`` on a connection the kit ended because its session ended: what
    an ASGI server raises for a client that went away (Starlette turns it into
    ``WebSocketDisconnect`` / ``ClientDisconnect``)."""


class LiveConnection:
    """One open connection: a small record (its session family, the claims it was
    authenticated with, an optional deadline) and the wrapped ``receive``/``send``."""

    __slots__ = (
        "_closed",
        "_inner",
        "_receive",
        "_registry",
        "_send",
        "_sending",
        "_task",
        "claims",
        "code",
        "deadline",
        "ended",
        "family",
        "kind",
        "loop",
        "reason",
    )

    def __init__(
        self,
        registry: LiveConnections,
        kind: str,
        claims: dict[str, Any],
        family: str | None,
        deadline: float | None,
        receive: Receive,
        send: Send,
    ) -> None:
        self._registry = registry
        self.kind = kind
        self.claims = claims
        self.family = family
        self.deadline = deadline
        self.loop = asyncio.get_running_loop()
        self.ended: asyncio.Future[None] = self.loop.create_future()
        self.code = registry.close_code
        self.reason = ""
        self._receive = receive
        self._send = send
        self._inner: asyncio.Task[Message] | None = None
        self._sending = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    def _disconnect(self) -> Message:
        if self.kind == "websocket":
            return {"type": "websocket.disconnect", "code": self.code, "reason": self.reason}
        return {"type": "http.disconnect"}

    async def receive(self) -> Message:
        """The server's next message, or the disconnect once the session ended."""
        if self.ended.done():
            return self._disconnect()
        inner = self._inner
        if inner is None:
            # A task of its own, kept across calls: a receive that lost the race to the end
            # (or whose caller was cancelled) is not called again, so no message is lost.
            inner = self._inner = self.loop.create_task(_call(self._receive))
        await asyncio.wait((inner, self.ended), return_when=asyncio.FIRST_COMPLETED)
        if inner.done():
            self._inner = None
            return inner.result()
        return self._disconnect()

    async def send(self, message: Message) -> None:
        if self.ended.done():
            if message["type"] == "websocket.close":
                return  # the app closing what the kit closed: nothing to do
            raise ConnectionEnded(f"the connection ended: {self.reason}")
        self._sending = True
        try:
            await self._send(message)
        finally:
            self._sending = False
        kind = message["type"]
        if kind == "websocket.close" or (
            kind == "http.response.body" and not message.get("more_body")
        ):
            self._closed = True
            self._registry.remove(self)
        elif self.ended.done() and not self._closed:
            await self._close()  # the session ended while this message was going out

    def end(self, reason: str) -> None:
        """End the connection (on its own loop): wake ``receive``, close at the server."""
        if self.ended.done():
            return
        self.reason = reason
        self.ended.set_result(None)
        self._registry.remove(self)
        logger.info("%s of session %s closed: %s", self.kind, self.family, reason)
        if not self._sending and not self._closed:
            self._task = self.loop.create_task(self._close())

    async def _close(self) -> None:
        self._closed = True
        if self.kind == "websocket":
            message: Message = {"type": "websocket.close", "code": self.code, "reason": self.reason}
        else:
            message = {"type": "http.response.body", "body": b"", "more_body": False}
        try:
            await self._send(message)
        except Exception as exc:  # the client went meanwhile: nothing left to close
            logger.debug("closing an ended connection: %r", exc)

    def finish(self) -> asyncio.Task[None] | None:
        """The app returned: forget the connection. The close the kit is still sending,
        if any, is returned for the caller to await: what is sent after the application
        returned is not sent (the server drops the connection without a close frame)."""
        self._registry.remove(self)
        inner, self._inner = self._inner, None
        if inner is not None and not inner.done():
            inner.cancel()
        closing = self._task
        return closing if closing is not None and not closing.done() else None


async def _call(receive: Receive) -> Message:
    return await receive()


class LiveConnections:
    """The open connections of one middleware in this process, by session family.

    Revocations arrive through :meth:`revoked` (from any thread: a test client may run a
    connection on an event loop of its own); a sweep per event loop covers what no message
    says: absolute lifetimes, token expiry, and revocations missed while the view was not
    current.

    ``check`` asks the store whether a session is live, ``known`` answers from this
    process's view when it can; ``listeners`` (the store's, when it tells of revocations as
    they happen) get :meth:`revoked`.
    """

    def __init__(
        self,
        live: LiveOptions,
        clock: Callable[[], float],
        check: SessionCheck | None,
        known: SessionKnown | None,
        listeners: RevocationListeners | None,
    ) -> None:
        self.close_code = live.close_code
        self.expiry_margin = live.close_at_token_expiry
        self.streams = live.end_streams
        self._interval = live.check_interval
        self._clock = clock
        self._known = known
        self._check = check
        self._families: dict[str, set[LiveConnection]] = {}
        self._loops: dict[asyncio.AbstractEventLoop, set[LiveConnection]] = {}
        self._sweepers: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
        if listeners is not None:
            listeners.add(self.revoked)

    def __len__(self) -> int:
        return sum(len(conns) for conns in list(self._loops.values()))

    def connection(
        self, kind: str, claims: dict[str, Any], receive: Receive, send: Send
    ) -> LiveConnection | None:
        """A record for a connection authenticated by ``claims``, or None when nothing
        could end it (no session to watch, no deadline)."""
        family = claims.get(SESSION_CLAIM) if self._check is not None else None
        if not isinstance(family, str):
            family = None
        deadline = None
        if kind == "websocket" and self.expiry_margin is not None:
            exp = claims.get("exp")
            if isinstance(exp, int | float):
                deadline = float(exp) + self.expiry_margin
        if family is None and deadline is None:
            return None
        return LiveConnection(self, kind, claims, family, deadline, receive, send)

    def add(self, conn: LiveConnection) -> None:
        """Watch ``conn`` from now on (on its own loop)."""
        if conn.family is not None:
            self._families.setdefault(conn.family, set()).add(conn)
        loop = conn.loop
        self._loops.setdefault(loop, set()).add(conn)
        if loop not in self._sweepers:
            self._sweepers[loop] = loop.create_task(self._sweep(loop))
        known = self._known
        # Revoked between the handshake's check and now: end it at once.
        if (
            conn.family is not None
            and known is not None
            and known(conn.family, self._clock()) is False
        ):
            conn.end(_SESSION_ENDED)

    def remove(self, conn: LiveConnection) -> None:
        family = conn.family
        if family is not None:
            conns = self._families.get(family)
            if conns is not None:
                conns.discard(conn)
                if not conns:
                    self._families.pop(family, None)
        conns = self._loops.get(conn.loop)
        if conns is not None:
            conns.discard(conn)

    def revoked(self, family_ids: tuple[str, ...]) -> None:
        """These session families were revoked: end their connections (any thread)."""
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for family in family_ids:
            for conn in list(self._families.get(family, ())):
                if conn.loop is current:
                    conn.end(_SESSION_ENDED)
                else:
                    try:
                        conn.loop.call_soon_threadsafe(conn.end, _SESSION_ENDED)
                    except RuntimeError:  # its loop is closed: the connection is gone
                        self.remove(conn)

    async def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while True:
                await asyncio.sleep(self._interval)
                conns = self._loops.get(loop)
                if not conns:
                    return
                await self._sweep_once(list(conns))
        finally:
            self._sweepers.pop(loop, None)
            if not self._loops.get(loop):
                self._loops.pop(loop, None)

    async def _sweep_once(self, conns: list[LiveConnection]) -> None:
        now = self._clock()
        known = self._known
        unknown: dict[str, dict[str, Any]] = {}
        for conn in conns:
            if conn.deadline is not None and now >= conn.deadline:
                conn.end(_TOKEN_EXPIRED)
                continue
            family = conn.family
            if family is None:
                continue
            live = known(family, now) if known is not None else None
            if live is False:
                conn.end(_SESSION_ENDED)
            elif live is None:
                unknown.setdefault(family, conn.claims)
        check = self._check
        if not unknown or check is None:
            return
        pending = list(unknown.items())
        for start in range(0, len(pending), _ASK_AT_ONCE):
            batch = pending[start : start + _ASK_AT_ONCE]
            answers = await asyncio.gather(
                *(check(claims) for _, claims in batch), return_exceptions=True
            )
            for (family, _), answer in zip(batch, answers, strict=True):
                if answer is False:
                    self.revoked((family,))
                elif isinstance(answer, StoreUnavailableError):
                    # Unreachable is not revoked: keep every connection, ask next sweep.
                    logger.debug("open connections not checked, store unavailable: %s", answer)
                    return
                elif isinstance(answer, BaseException):
                    logger.error("open connections not checked: %r", answer)
                    return
