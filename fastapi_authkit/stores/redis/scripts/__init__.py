"""The Lua scripts behind every decision the Redis store makes, one module per concern.

Each script is atomic in Redis: two workers rotating the same refresh token at once see one
``rotated`` and one ``replay``, never two successors. Every key a script touches is passed
in KEYS and all of them are in one slot (see :mod:`~fastapi_authkit.stores.redis.keys`), so
the scripts run unchanged on a cluster. Times are passed in by the caller (the store's
injected clock) and fractional ones travel as strings (a Lua number in a reply is cut to an
integer); a key's own expiry is only a backstop that cleans up after them, set
:data:`BACKSTOP_MS` past the logical expiry it protects.
"""

from __future__ import annotations

import math
from typing import Final

__all__ = ["BACKSTOP_MS", "backstop_ms"]

# Real-time slack on every backstop expiry, beyond the logical expiry it protects.
BACKSTOP_MS: Final = 60_000


def backstop_ms(seconds: float) -> int:
    """The key expiry (ms) behind a logical lifetime of ``seconds``."""
    return math.ceil(seconds * 1000) + BACKSTOP_MS
