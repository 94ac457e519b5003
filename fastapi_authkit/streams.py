"""The ``send`` given to the app: cookie writes at response start, and the watch of a stream."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

from starlette.types import Message, Receive, Scope, Send

from .authstate import AuthState
from .live import ConnectionEnded, LiveConnection, LiveConnections

__all__ = ["AppSend", "StreamWatch", "WithCookies"]

_RESPONSE_STARTS: Final = frozenset(
    {"http.response.start", "websocket.accept", "websocket.http.response.start"}
)


# Sends a response start with the cookie writes ``state`` queued (the middleware's).
WithCookies = Callable[[Scope, AuthState, Message, Send], Awaitable[None]]


class AppSend:
    """One request's ``send`` as the app sees it (:meth:`send`): a response start carries
    the cookie writes the request queued, and :attr:`started` says whether one went out.
    """

    __slots__ = ("scope", "server_send", "started", "state", "with_cookies")

    scope: Scope
    state: AuthState
    server_send: Send
    with_cookies: WithCookies
    started: bool

    def __init__(
        self, scope: Scope, state: AuthState, server_send: Send, with_cookies: WithCookies
    ) -> None:
        self.scope, self.state, self.server_send = scope, state, server_send
        self.with_cookies, self.started = with_cookies, False

    # The hot path's one shortcut (measured in docs/performance.md): a plain function
    # returning the awaitable, as ASGI only awaits what ``send`` returns, so that no
    # message of any response pays for a coroutine of its own.
    def send(self, message: Message) -> Awaitable[None]:
        if message["type"] in _RESPONSE_STARTS:
            self.started = True
            if self.state._cookies_queued:
                return self.with_cookies(self.scope, self.state, message, self.server_send)
        return self.server_send(message)


class StreamWatch(AppSend):
    """The ``send`` and :meth:`receive` of a GET of a session whose streams end with it
    (``end_streams``): a response that starts as a stream is watched until its body ends,
    and a revoked session ends it as a client leaving would. The record is made only when
    needed (the app waits on ``receive``, as a streaming response does for the client
    leaving, or a stream starts): a plain response makes none. :meth:`finish` once the
    app returned.

    ``live`` holds the connections that revocations end, ``claims`` the session's.
    """

    __slots__ = ("claims", "conn", "live", "server_receive", "stream")

    live: LiveConnections
    claims: dict[str, Any]
    server_receive: Receive
    conn: LiveConnection | None  # made when first needed
    stream: LiveConnection | None  # once the response streams

    def __init__(
        self,
        scope: Scope,
        state: AuthState,
        server_send: Send,
        with_cookies: WithCookies,
        live: LiveConnections,
        claims: dict[str, Any],
        server_receive: Receive,
    ) -> None:
        super().__init__(scope, state, server_send, with_cookies)
        self.live, self.claims, self.server_receive = live, claims, server_receive
        self.conn = self.stream = None

    def send(self, message: Message) -> Awaitable[None]:
        stream = self.stream
        if stream is not None:
            return self._send_watched(stream, message)
        if message["type"] in _RESPONSE_STARTS:
            self.started = True
            live = self.live
            if live.streams == "all" or _event_stream(message):
                watched = self._record()
                if watched is not None:
                    self.stream = watched
                    return self._start(live, watched, message)
            if self.state._cookies_queued:
                return self.with_cookies(self.scope, self.state, message, self.server_send)
        return self.server_send(message)

    def receive(self) -> Awaitable[Message]:
        watched = self._record()
        return self.server_receive() if watched is None else watched.receive()

    def finish(self) -> asyncio.Task[None] | None:
        """The app returned: forget the connection, if one was recorded; the close still
        being sent, if any (:meth:`LiveConnection.finish`)."""
        return None if self.conn is None else self.conn.finish()

    def _record(self) -> LiveConnection | None:
        conn = self.conn
        if conn is None:
            # None again when nothing could end it (no session id): asked again, as cheap.
            conn = self.conn = self.live.connection(
                "http", self.claims, self.server_receive, self.server_send
            )
        return conn

    async def _start(
        self, live: LiveConnections, watched: LiveConnection, message: Message
    ) -> None:
        state = self.state
        if state._cookies_queued:
            await self.with_cookies(self.scope, state, message, watched.send)
        else:
            await watched.send(message)
        live.add(watched)

    async def _send_watched(self, stream: LiveConnection, message: Message) -> None:
        try:
            await stream.send(message)
        except ConnectionEnded:
            # A server of ASGI 2.4 raises OSError on a send to a client that left; earlier
            # ones drop it silently, and Starlette counts on that (it stops on
            # ``http.disconnect`` instead): an ended stream answers as the server would.
            if _spec_version(self.scope) >= (2, 4):
                raise


def _event_stream(message: Message) -> bool:
    # ASGI's header names are lower-case; a name in another case is looked for only when
    # none is found.
    headers: Iterable[tuple[bytes, bytes]] = message.get("headers") or ()
    for name, value in headers:
        if name == b"content-type":
            return value[:17].lower() == b"text/event-stream"
    for name, value in headers:
        if name.lower() == b"content-type":
            return value[:17].lower() == b"text/event-stream"
    return False


def _spec_version(scope: Scope) -> tuple[int, ...]:
    try:
        return tuple(
            int(part) for part in scope.get("asgi", {}).get("spec_version", "2.0").split(".")
        )
    except (AttributeError, ValueError):
        return (2, 0)
