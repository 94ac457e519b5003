"""A process's view of which session families are live, kept current by revocation messages;
pure (the clocks are passed in or injected).

The question every authenticated request asks, "is this session family still live?", is
answered here without I/O whenever the answer is certain, and with None ("ask the store")
otherwise. Certainty has two sources:

* **Revocation is terminal.** A revoked (or absolute-expired) family never becomes live
  again, so a "not live" answer is kept unconditionally (bounded, oldest out first).
* **"Live" needs a proof of currency.** A positive answer from the store is kept only while
  the revocation messages are known to be current: they arrive on one subscription, and a
  heartbeat sent on that same subscription comes back after every message published before
  it (Redis delivers a connection's replies in order), so a heartbeat sent at ``s`` that has
  come back proves that every revocation executed before ``s`` has been seen. Positives are
  trusted until ``s + max_lag`` for the latest such ``s``; when the subscription is lost they
  are dropped at once (:meth:`RevocationView.reset`), and when heartbeats stop coming back
  they stop being trusted by themselves.

A positive entry carries the family's absolute expiry, so the end of a session's absolute
lifetime is refused at that instant without any message.

The read/insert race (a store read says "live" while a revocation of that family is on its
way on the subscription) is closed with a ticket: :meth:`RevocationView.ticket` is taken
before the store read, and :meth:`RevocationView.learn` keeps a positive answer only if the
subscription was already established when the ticket was taken and no revocation message,
reset or new subscription arrived in between.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

from ..fifo import Fifo
from .listeners import RevocationListeners

__all__ = ["RevocationView"]


class RevocationView:
    """One process's knowledge of live and revoked session families.

    ``lookup`` is the hot path: a dictionary get, a comparison with the family's absolute
    expiry and one with the proof of currency. ``now`` is the caller's clock (the one the
    store's absolute expiries are written in); currency is measured on ``monotonic``, real
    time, since it is about how late real messages may be.
    """

    __slots__ = (
        "_live",
        "_max_lag",
        "_monotonic",
        "_revoked",
        "_sequence",
        "_subscribed",
        "_trusted_until",
        "listeners",
    )

    def __init__(
        self,
        *,
        max_lag: float,
        size: int = 100_000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_lag = max_lag
        self._monotonic = monotonic
        # family -> absolute expiry (the caller's clock), learned since the subscription
        # began; cleared whenever it is lost.
        self._live: Fifo[str, float] = Fifo(size)
        # Revoked families (terminal: always true once true), oldest forgotten first; a
        # forgotten one is asked of the store again, which still says so.
        self._revoked: Fifo[str, None] = Fifo(size)
        # Bumped by every revocation message, reset and new subscription: a ticket taken
        # before a store read is still good afterwards only if nothing arrived meanwhile.
        self._sequence = 0
        self._subscribed = False
        self._trusted_until = -math.inf  # monotonic
        # Told of every revocation this view learns (the open connections of the session).
        self.listeners = RevocationListeners()

    @property
    def max_lag(self) -> float:
        return self._max_lag

    def lookup(self, family_id: str, now: float) -> bool | None:
        """True: live, certainly. False: revoked or past its absolute expiry, certainly.
        None: not known for certain now; ask the store."""
        live_until = self._live.get(family_id)
        if live_until is not None:
            if now >= live_until:
                return False
            if self._monotonic() < self._trusted_until:
                return True
            return None
        if family_id in self._revoked:
            return False
        return None

    @property
    def current(self) -> bool:
        """Whether positive answers are trusted right now."""
        return self._monotonic() < self._trusted_until

    def ticket(self) -> int | None:
        """Take before a store read whose answer :meth:`learn` may keep; None when nothing
        learned now could be kept (no subscription)."""
        return self._sequence if self._subscribed else None

    def learn(self, family_id: str, live_until: float | None, ticket: int | None) -> None:
        """Keep what a store read said: ``live_until`` is the family's absolute expiry when
        it is live, None when it is not (revoked, expired, unknown)."""
        if live_until is None:
            self.revoked((family_id,))
            return
        if ticket is None or ticket != self._sequence or family_id in self._revoked:
            return  # a message, a reset or a new subscription may have overtaken the read
        self._live.put(family_id, live_until)

    def revoked(self, family_ids: Iterable[str]) -> None:
        """These families were revoked (a message arrived, or this process revoked them)."""
        self._sequence += 1
        if self.listeners:
            family_ids = tuple(family_ids)
        for family_id in family_ids:
            self._live.pop(family_id, None)
            self._revoked.put(family_id, None)
        if self.listeners:
            self.listeners.notify(family_ids)  # type: ignore[arg-type]

    def subscribed(self) -> None:
        """A new subscription is established: revocations from now on will arrive.
        Positives learned from reads after this may be kept, trusted once a heartbeat
        sent on this subscription comes back."""
        self._sequence += 1
        self._subscribed = True

    def confirm(self, sent_at: float) -> None:
        """A heartbeat sent at ``sent_at`` (monotonic) on the current subscription came back:
        every revocation executed before then has been seen."""
        if self._subscribed:
            self._trusted_until = max(self._trusted_until, sent_at + self._max_lag)

    def reset(self) -> None:
        """The subscription is lost (or was never there): anything could have been missed,
        so no positive is trusted or kept; revocations stay known (they are terminal)."""
        self._sequence += 1
        self._subscribed = False
        self._trusted_until = -math.inf
        self._live.clear()
