"""A dictionary bounded in size, oldest entry out first: the kit's per-process caches.

An OrderedDict rather than a plain dict: evicting the oldest from a plain dict
(``del d[next(iter(d))]``) scans the slots its earlier deletions left, O(n) per eviction
once it is full; ``popitem(last=False)`` is O(1).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

__all__ = ["Fifo"]

K = TypeVar("K")
V = TypeVar("V")


class Fifo(OrderedDict[K, V]):
    """Read it as a dict; add with :meth:`put`, which keeps at most ``size`` entries (a size
    of 0 keeps nothing)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: K, value: V) -> None:
        if not self.size:
            return
        if key not in self and len(self) >= self.size:
            self.popitem(last=False)
        self[key] = value
