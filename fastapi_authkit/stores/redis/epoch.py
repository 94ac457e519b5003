"""The identity of the data under a revocation view: an epoch key, written when the view
subscribes and read back with every heartbeat.

A view trusts "live" answers it learned from Redis for as long as no revocation message
says otherwise. That holds while the data it learned them from is still there. When the
data is replaced as a whole (``FLUSHALL``/``FLUSHDB``, ``SWAPDB``, another server
answering at the address, a primary restarted without its data), no message is sent, and
the sessions it held are unknown to the store from then on: the store refuses them, so the
views must stop answering for them too.

So each subscription writes a random value under the epoch key (``SET NX``: the first
process picks it, every other one reads the same value back) and remembers it, and each
heartbeat reads it again *after* the heartbeat's send time and counts only when it is
unchanged. A flush or swap at time ``t`` removes or replaces the key, so no heartbeat sent
after ``t`` comes back: the view trusts nothing learned before ``t`` for longer than
``max_lag`` past it, exactly as with a revocation message that never arrives. Data that
changes identity key by key (eviction) leaves the epoch key alone, which is why the store
refuses an evicting ``maxmemory-policy`` (:mod:`~fastapi_authkit.stores.redis.eviction`).

On a cluster every primary holds its own slots, so each gets an epoch key of its own, in a
slot it owns (:func:`key_on`).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

from redis.crc import key_slot
from redis.exceptions import RedisError

__all__ = ["DataReplaced", "establish", "key_on", "verify"]

# Tags tried to place a primary's epoch key in one of its slots: with 16,384 slots, a
# primary owning even a single slot is found well within this many.
_TAGS: Final = 1_000_000


class DataReplaced(RedisError):
    """The epoch key vanished or changed: the data under the view is not what it was."""


def _bytes(value: Any) -> bytes | None:
    return value.encode() if isinstance(value, str) else value


# Sends one command and returns its reply.
Run = Callable[..., Awaitable[Any]]


async def establish(run: Run, key: str) -> bytes:
    """The epoch under ``key``, written first if there is none."""
    await run("SET", key, secrets.token_hex(16), "NX")
    found = _bytes(await run("GET", key))
    if found is None:  # gone between the two commands: a flush right now
        raise DataReplaced(f"epoch key {key!r} vanished while it was written")
    return found


async def verify(run: Run, key: str, value: bytes) -> None:
    """Raise :class:`DataReplaced` unless ``key`` still holds ``value``."""
    check(key, value, await run("GET", key))


def check(key: str, value: bytes, found: Any) -> None:
    """Raise :class:`DataReplaced` unless ``found`` (what ``GET key`` answered) is ``value``."""
    now = _bytes(found)
    if now != value:
        what = "vanished" if now is None else "changed"
        raise DataReplaced(f"epoch key {key!r} {what} (the data was flushed, swapped or replaced)")


def key_on(base: str, slots: Sequence[tuple[int, int]]) -> str | None:
    """An epoch key in one of ``slots`` (inclusive ranges a primary owns): ``base``
    followed by a hash tag that lands there, or ``base`` itself when it has a hash tag of
    its own (every key of such a prefix is in one slot). None when no key can be placed
    there: the primary holds none of the store's keys."""
    if not slots:
        return None
    start = base.find("{")
    if start >= 0 and base.find("}", start + 1) > start + 1:
        slot = key_slot(base.encode())
        return base if any(low <= slot <= high for low, high in slots) else None
    for n in range(_TAGS):
        key = f"{base}:{{{n}}}"
        slot = key_slot(key.encode())
        if any(low <= slot <= high for low, high in slots):
            return key
    return None  # pragma: no cover - a slot no tag of that many reaches
