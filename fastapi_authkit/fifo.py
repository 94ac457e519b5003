"""A dictionary bounded in size, oldest entry out first: the kit's per-process caches.

A plain dict and the order its keys arrived in (a deque, one pointer a key), rather than
an OrderedDict, whose links and second table cost several times that per key
(docs/performance.md), in caches that hold tens of thousands of sessions. Evicting the
oldest from the dict alone (``del d[next(iter(d))]``) would scan the slots its earlier
deletions left, O(n) per eviction once it is full; the deque's front is O(1).

The deque is not told of deletions: a key deleted, or deleted and added again, leaves its
old place behind. Eviction skips a place whose key is gone; a key added again may go out
at its earlier place, a little before its turn, which only shortens that one entry's stay.
Places left behind are bounded: once they outnumber the entries, the order is rebuilt
from the dict's own (insertion) order.
"""

from __future__ import annotations

from collections import deque
from typing import TypeVar

__all__ = ["Fifo"]

K = TypeVar("K")
V = TypeVar("V")


class Fifo(dict[K, V]):
    """Read it as a dict, delete from it as from one; add with :meth:`put`, which keeps at
    most ``size`` entries (a size of 0 keeps nothing)."""

    __slots__ = ("_order", "size")

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self._order: deque[K] = deque()

    def put(self, key: K, value: V) -> None:
        if not self.size:
            return
        if key not in self:
            if len(self) >= self.size:
                self.pop_oldest()
            order = self._order
            if len(order) > 2 * len(self) + 16:
                order = self._order = deque(self)  # the dict's order: insertion, as the deque's
            order.append(key)
        self[key] = value

    def oldest(self) -> V | None:
        """The oldest entry's value (None when empty)."""
        order = self._order
        while order:
            if order[0] in self:
                return self[order[0]]
            order.popleft()  # a place its key left (see the module docstring)
        return None

    def pop_oldest(self) -> tuple[K, V]:
        """Remove and return the oldest entry; KeyError when empty."""
        order = self._order
        while order:
            key = order.popleft()
            if key in self:
                return key, self.pop(key)
        raise KeyError("pop_oldest(): the cache is empty")

    def clear(self) -> None:
        super().clear()
        self._order.clear()
