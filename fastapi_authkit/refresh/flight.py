"""The in-process single flight: one refresh call per refresh token, shared by every waiter.

Concurrent requests carrying the same refresh token share one call. A success is kept for
``grace_period`` seconds so requests that were already in flight with the old cookies get the
same new cookies instead of a second call (which a rotating auth server would take for token
reuse), and a definitive failure for :data:`ENDED_MEMORY` seconds, so the ended session's
cookies replayed do not ask the auth server again.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Final

import anyio

from ..errors import RefreshError
from .outcomes import ENDED, Ended, Outcome, Unavailable, successor_token

__all__ = ["ENDED_MEMORY", "SingleFlight"]

# Bounds the memory of recent results; entries also expire after the grace period.
_MAX_RECENT: Final = 32_768
# How long a definitive "session over" (is_success=False) is remembered for its refresh
# token: that session's cookies replayed meanwhile (a script, requests still in flight) are
# answered without asking the auth server again. The answer cannot change (it is definitive),
# so the time only bounds the memory.
ENDED_MEMORY: Final = 60.0


class _Flight:
    __slots__ = ("done", "outcome")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.outcome: Outcome = Unavailable(RefreshError("refresh was interrupted"))


class SingleFlight:
    """One callback call per refresh token at a time, shared by every waiting request.

    Keys are SHA-256 digests, so refresh tokens are not kept as dict keys. This is the one
    piece of mutable state in the middleware, and it is per process.
    """

    __slots__ = ("_by_successor", "_clock", "_ended", "_inflight", "_recent")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._inflight: dict[bytes, _Flight] = {}
        # Refresh tokens whose session the callback ended -> until when that is remembered
        # (one lifetime for all, so insertion order is expiry order here too).
        self._ended: OrderedDict[bytes, float] = OrderedDict()
        # Successes kept for the grace period. The grace period is the same for every entry,
        # so insertion order is expiry order: pruning only ever looks at the front.
        # OrderedDict for O(1) pruning at the front (see fifo.py); pruning here is by expiry.
        self._recent: OrderedDict[bytes, tuple[float, Outcome]] = OrderedDict()
        # The successor refresh token's digest -> the key its result is kept under.
        self._by_successor: dict[bytes, bytes] = {}

    async def run(
        self, refresh_token: str, grace: float, call: Callable[[], Awaitable[Outcome]]
    ) -> Outcome:
        key = _digest(refresh_token)
        recent = self._recent.get(key)
        if recent is not None:
            if recent[0] > self._clock():
                return recent[1]
            self._drop(key)
        ended = self._ended.get(key)
        if ended is not None:
            if ended > self._clock():
                return ENDED
            del self._ended[key]
        flight = self._inflight.get(key)
        if flight is not None:
            await flight.done.wait()
            return flight.outcome
        flight = self._inflight[key] = _Flight()
        try:
            # Shielded: a client that disconnects must not throw away an answer the auth
            # server already gave (a rotated refresh token would be lost with it).
            with anyio.CancelScope(shield=True):
                flight.outcome = await call()
        finally:
            del self._inflight[key]
            flight.done.set()
        successor = successor_token(flight.outcome)
        if successor is not None and grace > 0:
            self._remember(key, grace, flight.outcome, successor)
        elif isinstance(flight.outcome, Ended):
            self._remember_ended(key)
        return flight.outcome

    def forget(self, refresh_token: str) -> None:
        """Drop remembered results that lead to ``refresh_token``'s session (sign-out):
        a rotated-out predecessor must not revive a session that was just ended."""
        digest = _digest(refresh_token)
        self._drop(digest)
        predecessor = self._by_successor.get(digest)
        if predecessor is not None:
            self._drop(predecessor)

    def _drop(self, key: bytes) -> None:
        entry = self._recent.pop(key, None)
        if entry is not None:
            self._by_successor.pop(_digest(successor_token(entry[1]) or ""), None)

    def _remember_ended(self, key: bytes) -> None:
        now = self._clock()
        ended = self._ended
        while ended:
            oldest = next(iter(ended))
            if ended[oldest] > now and len(ended) < _MAX_RECENT:
                break
            del ended[oldest]
        ended.pop(key, None)
        ended[key] = now + ENDED_MEMORY

    def _remember(self, key: bytes, grace: float, outcome: Outcome, successor: str) -> None:
        now = self._clock()
        # Expired entries sit at the front; each is dropped once (amortized constant work).
        while self._recent:
            oldest = next(iter(self._recent))
            if self._recent[oldest][0] > now and len(self._recent) < _MAX_RECENT:
                break
            self._drop(oldest)
        self._drop(key)
        # The presented token has just been rotated out, so its own predecessor is now a
        # grandparent: it must reach the callback (which may take it for theft), not get
        # the remembered answer of the previous rotation.
        predecessor = self._by_successor.get(key)
        if predecessor is not None:
            self._drop(predecessor)
        self._recent[key] = (now + grace, outcome)
        self._by_successor[_digest(successor)] = key


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()
