"""The example app plus a server-sent event stream and a WebSocket, for ``uvicorn --workers
2`` sharing Redis (test_live_revocation's real-server tests): ``GET /api/events`` streams an
event every 50 ms naming the worker, and ``/ws`` sends the same, until the client leaves or
the kit ends them with the session.

Configured from the environment, as the example app is (``AUTHKIT_SECRET``,
``AUTHKIT_REDIS_URL``...).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

from fastapi import WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse

from example_app.main import Settings, create_app
from fastapi_authkit.dependencies import CurrentUser

app = create_app(Settings.from_env())


@app.get("/api/events")
async def events(user: CurrentUser) -> StreamingResponse:
    async def stream() -> AsyncIterator[str]:
        n = 0
        while True:
            yield f"data: {os.getpid()} {n}\n\n"
            n += 1
            await asyncio.sleep(0.05)

    return StreamingResponse(stream(), media_type="text/event-stream")


@app.websocket("/ws")
async def socket(websocket: WebSocket, user: CurrentUser) -> None:
    await websocket.accept()
    n = 0
    try:
        while True:
            await websocket.send_text(f"{os.getpid()} {n}")
            n += 1
            await asyncio.sleep(0.05)
    except (WebSocketDisconnect, OSError):  # the client left, or the kit ended the session
        return
