"""A settable clock for tests, at a fixed "now"."""

from __future__ import annotations

T0 = 1_800_000_000.0  # a fixed "now" for tests; 2027-01-15


class Clock:
    """A settable clock: pass ``clock`` to create_store, move it with ``advance``."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
