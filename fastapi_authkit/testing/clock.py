"""A clock the test moves: what ``create_store(clock=)`` and ``create_issuer(clock=)`` read."""

from __future__ import annotations

import time

__all__ = ["Clock"]


class Clock:
    """The current Unix time, as the test sets it: pass the instance as ``clock=`` to
    ``create_store`` and ``create_issuer`` (the app must be built with it, through a
    factory or a fixture), then :meth:`advance` it to bring a session near its expiry or
    past it. Nothing sleeps.

    ``now`` defaults to the real time, in whole seconds, at creation."""

    def __init__(self, now: float | None = None) -> None:
        self.now = float(int(time.time()) if now is None else now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move the clock ``seconds`` forward (never back: tokens and sessions only age)
        and return the new time."""
        if seconds < 0:
            raise ValueError(f"a clock only moves forward; got advance({seconds!r})")
        self.now += seconds
        return self.now

    def __repr__(self) -> str:
        return f"Clock(now={self.now!r})"
