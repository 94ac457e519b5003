"""Waiting, bounded in real time, for what happens after the call that caused it (a
message from Redis, a hook run after the response, another process)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio


async def eventually(check: Callable[[], bool | Awaitable[bool]], within: float = 5.0) -> None:
    """Until ``check()`` (or what it returns, awaited) is true; AssertionError after
    ``within`` seconds. The event loop runs between two checks, so the kit's background
    tasks (a revocation subscriber) move on."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s")
        await anyio.sleep(0.005)


def eventually_sync(check: Callable[[], bool], within: float = 5.0) -> None:
    """:func:`eventually` for a synchronous test (the wait blocks: what it waits for runs in
    another thread or process)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s")
        time.sleep(0.005)
