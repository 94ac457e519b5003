"""Shared-state backends: :class:`MemoryStore` (embedded default) and :class:`RedisStore`.

``RedisStore`` is imported on first use so the ``redis`` extra stays optional.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import FlightState, RotateOutcome, SessionStore
from .memory import MemoryStore

if TYPE_CHECKING:
    from .redis import RedisStore

__all__ = ["FlightState", "MemoryStore", "RedisStore", "RotateOutcome", "SessionStore"]


def __getattr__(name: str) -> Any:
    if name == "RedisStore":
        from .redis import RedisStore

        return RedisStore
    raise AttributeError(name)
