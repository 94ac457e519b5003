"""The answer to a request refused before any refresh: a 403, or a closed WebSocket handshake."""

from __future__ import annotations

import json
from collections.abc import Set
from typing import Final

from starlette.types import Message, Receive, Scope, Send

__all__ = ["CSRF_REASON", "Refusals"]

CSRF_REASON: Final = "CSRF token missing or invalid"


class Refusals:
    """The answers of one configuration: why a request was refused, and what makes such a
    request pass. The CSRF answer never varies, so it is built once."""

    __slots__ = ("_allowed", "_csrf")

    def __init__(self, *, csrf_header: str, csrf_cookie: str, allowed_origins: Set[str]) -> None:
        self._allowed = ", ".join(sorted(allowed_origins)) or "none"
        self._csrf = _forbidden(
            f"{CSRF_REASON}: an unsafe request (POST, PUT, PATCH, DELETE) authenticated by "
            f"cookie must send the {csrf_header} header with the value of the {csrf_cookie} "
            f"cookie"
        )

    async def send(self, scope: Scope, receive: Receive, send: Send, reason: str) -> None:
        """Answer the request in ``scope`` as refused for ``reason``."""
        if scope["type"] == "websocket":
            # Closing before accept makes the server answer the handshake with 403.
            await receive()
            await send({"type": "websocket.close", "code": 1008, "reason": "origin refused"})
            return
        if reason == CSRF_REASON:
            start, body = self._csrf
        else:
            start, body = _forbidden(
                f"cross-site request refused ({reason}): a cookie-authenticated unsafe "
                f"request must come from this app's own origin or one in "
                f"create_store(allowed_origins=...) (allowed_origins: {self._allowed})"
            )
        await send(start)
        await send(body)


async def send_unavailable(send: Send, retry_after: int) -> None:
    """Answer 503 with ``Retry-After``: the route needed the store (a sign-in, a sign-out, the
    sessions list) and it could not answer, and the app has no handler of its own for it."""
    start, body = _answer(
        503,
        "Authentication temporarily unavailable",
        [(b"retry-after", str(retry_after).encode())],
    )
    await send(start)
    await send(body)


def _forbidden(detail: str) -> tuple[Message, Message]:
    """The 403 answer, its detail in a JSON body."""
    return _answer(403, detail)


def _answer(
    status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None
) -> tuple[Message, Message]:
    body = json.dumps({"detail": detail}, separators=(",", ":")).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            *(extra or ()),
        ],
    }
    return start, {"type": "http.response.body", "body": body}
