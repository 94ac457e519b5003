"""Watching a streaming GET response, so that ending its session ends the stream."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .live import ConnectionEnded, LiveConnection, LiveConnections

__all__ = ["run_watched_stream"]


async def run_watched_stream(
    app: ASGIApp,
    scope: Scope,
    live: LiveConnections,
    claims: dict[str, Any],
    receive: Receive,
    send: Send,
) -> None:
    """Run ``app`` for a GET whose response, once it starts as a stream (``end_streams``),
    is watched until its body ends: a revoked session ends it as a client leaving would.
    The record is made only when needed (the app waits on ``receive``, as a streaming
    response does for the client leaving, or a stream starts): most GETs make none."""
    every = live.streams == "all"
    # A server of ASGI 2.4 raises OSError on a send to a client that left; earlier ones drop
    # it silently, and Starlette counts on that (it stops on ``http.disconnect`` instead):
    # an ended stream answers as the server would.
    raises = _spec_version(scope) >= (2, 4)
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
            try:
                await conn.send(message)
            except ConnectionEnded:
                if raises:
                    raise
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
        await app(scope, receive_live, send_live)
    finally:
        if conn is not None:
            conn.finish()


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
