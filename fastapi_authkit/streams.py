"""Watching a streaming GET response, so that ending its session ends the stream."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from .live import ConnectionEnded, LiveConnection, LiveConnections

__all__ = ["StreamWatch"]


class StreamWatch:
    """The ``receive`` and ``send`` given to the app for a GET whose response, once it
    starts as a stream (``end_streams``), is watched until its body ends: a revoked session
    ends it as a client leaving would. The record is made only when needed (the app waits
    on ``receive``, as a streaming response does for the client leaving, or a stream
    starts): most GETs make none, and pass through two plain calls.

    The app runs with ``watch.receive`` and ``watch.send``; :meth:`finish` once it returned.
    """

    __slots__ = ("_claims", "_conn", "_live", "_made", "_receive", "_scope", "_send", "_stream")

    def __init__(
        self,
        live: LiveConnections,
        scope: Scope,
        claims: dict[str, Any],
        receive: Receive,
        send: Send,
    ) -> None:
        self._live = live
        self._scope = scope
        self._claims = claims
        self._receive = receive
        self._send = send
        self._conn: LiveConnection | None = None
        self._made = False
        self._stream: LiveConnection | None = None  # once the response streams

    def _record(self) -> LiveConnection | None:
        if not self._made:
            self._made = True
            self._conn = self._live.connection("http", self._claims, self._receive, self._send)
        return self._conn

    # Plain functions returning the awaitable (ASGI only awaits what they return): no
    # coroutine of their own for each message of every watched GET.
    def receive(self) -> Awaitable[Message]:
        watched = self._conn if self._made else self._record()
        return self._receive() if watched is None else watched.receive()

    def send(self, message: Message) -> Awaitable[None]:
        stream = self._stream
        if stream is not None:
            return self._send_watched(stream, message)
        if message["type"] == "http.response.start" and (
            self._live.streams == "all" or _event_stream(message)
        ):
            watched = self._record()
            if watched is not None:
                self._stream = watched
                return self._start(watched, message)
        return self._send(message)

    async def _start(self, watched: LiveConnection, message: Message) -> None:
        await watched.send(message)
        self._live.add(watched)

    async def _send_watched(self, stream: LiveConnection, message: Message) -> None:
        try:
            await stream.send(message)
        except ConnectionEnded:
            # A server of ASGI 2.4 raises OSError on a send to a client that left; earlier
            # ones drop it silently, and Starlette counts on that (it stops on
            # ``http.disconnect`` instead): an ended stream answers as the server would.
            if _spec_version(self._scope) >= (2, 4):
                raise

    def finish(self) -> None:
        """The app returned: forget the connection, if one was recorded."""
        if self._conn is not None:
            self._conn.finish()


def _event_stream(message: Message) -> bool:
    for name, value in message.get("headers", ()):
        if name.lower() == b"content-type":
            return bytes(value).lower().startswith(b"text/event-stream")
    return False


def _spec_version(scope: Scope) -> tuple[int, ...]:
    try:
        return tuple(
            int(part) for part in scope.get("asgi", {}).get("spec_version", "2.0").split(".")
        )
    except (AttributeError, ValueError):
        return (2, 0)
