"""The shared-state protocol behind the built-in issuer and cross-process single flight.

Two backends implement it: :class:`~fastapi_authkit.stores.memory.MemoryStore` (embedded,
one process) and :class:`~fastapi_authkit.stores.redis.RedisStore` (several workers or
machines). Each operation that decides something is atomic in the backend (plain Python
between awaits in memory, one Lua script in Redis), so correctness never rests on a lock
whose lease can run out mid-call.

Nothing stored is a plaintext token: refresh tokens are known by an HMAC-derived id, and a
cached successor pair is sealed with a key derived from its predecessor token, so only a
holder of that predecessor can read it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from ..clientinfo import ClientInfo

__all__ = [
    "FlightState",
    "RotateOutcome",
    "SessionInfo",
    "SessionStore",
    "ThrottleRule",
    "ThrottleState",
]

RotateStatus = Literal["active", "rotated", "replay", "reuse", "unknown", "revoked", "expired"]


@dataclass(frozen=True, slots=True)
class RotateOutcome:
    """What :meth:`SessionStore.rotate` decided.

    ``active``: the token is current and no successor was offered (peek), or one was offered
    for another subject than the family's (the hint did not match); mint one for
    ``family_id`` and ``subject`` and call again. ``rotated``: the offered successor is now
    current. ``replay``: the token was
    rotated and is the immediate predecessor of a successor nobody has used yet, within the
    grace window or, once, within the late-replay window (its holder may never have received
    the successor); ``sealed`` holds the same successor as before. ``reuse``: a rotated-out
    token whose successor has been used, an older one, or one presented after both windows;
    the family is now revoked. ``unknown``/``revoked``/
    ``expired``: no session (expired revokes it). ``absolute_expiry`` is the family's
    absolute expiry when it is live (``active``, ``rotated``, ``replay``).
    """

    status: RotateStatus
    family_id: str | None = None
    subject: str | None = None
    sealed: bytes | None = None
    absolute_expiry: float | None = None


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One live session of a subject, as a "your sessions" page shows it.

    ``id`` is the session's family id: the ``sid`` claim of its access tokens, not a secret
    (a refresh token names its family, but the family id is not enough to refresh or to
    read anything). ``created_at`` is when it was signed in, ``refreshed_at`` its last
    refresh (None before the first; requests in between do not reach the store, so this
    is as precise as the access token's lifetime), ``expires_at`` when it ends unless it is
    refreshed (``idle_ttl`` after the last refresh, at most its absolute lifetime).
    ``user_agent`` and ``ip`` are the client's at the last refresh (or at sign-in),
    ``signed_in_user_agent`` and ``signed_in_ip`` at sign-in: what the client said and the
    address the server saw (see :mod:`fastapi_authkit.clientinfo`), None when unknown (a
    session signed in before this was recorded). ``current`` marks the session of the
    request that asked. Times are seconds since the epoch.
    """

    id: str
    created_at: float | None
    refreshed_at: float | None
    expires_at: float
    user_agent: str | None
    ip: str | None
    signed_in_user_agent: str | None
    signed_in_ip: str | None
    current: bool = False


@dataclass(frozen=True, slots=True)
class FlightState:
    """A cross-process refresh flight: claimed by us, pending elsewhere, or done."""

    status: Literal["claimed", "pending", "done"]
    value: bytes | None = None


@dataclass(frozen=True, slots=True)
class ThrottleRule:
    """How one attempt counter locks (the login guard's, per account or per address).

    The counter holds the attempts that have not succeeded. An attempt is let in while the
    counter is not locked; the one that brings it to ``limit`` (and each one let in after a
    lock ran out) locks it for ``base_delay * 2 ** (count - limit)`` seconds, at most
    ``max_delay``, from the moment it is let in, so that concurrent attempts cannot slip past
    the limit while a password is being checked. ``forget_after`` seconds after its last
    lock ends (or its last attempt, before any lock), the counter is dropped.
    """

    limit: int
    base_delay: float
    max_delay: float
    forget_after: float

    def delay(self, count: int) -> float:
        """The lock the attempt counted as ``count`` starts: 0 below the limit."""
        if count < self.limit:
            return 0.0
        # The exponent is capped: 2.0 ** 1024 overflows, and 2 ** 64 outgrows any max_delay.
        return min(self.max_delay, self.base_delay * 2.0 ** min(count - self.limit, 64))


@dataclass(frozen=True, slots=True)
class ThrottleState:
    """What :meth:`SessionStore.throttle_take` decided for one counter: ``allowed`` (the
    attempt was let in and counted), ``count`` (attempts not succeeded, this one included
    when let in), ``locked_until`` (0 when not locked) and ``locked_now`` (this attempt
    started a lock)."""

    allowed: bool
    count: int
    locked_until: float
    locked_now: bool = False


@runtime_checkable
class SessionStore(Protocol):
    """Async shared state. Every method raises ``StoreUnavailableError`` when the backend
    cannot be reached; callers fail closed on it."""

    async def create_family(
        self,
        *,
        family_id: str,
        subject: str,
        token_id: str,
        now: float,
        idle_ttl: float,
        absolute_ttl: float,
        client: ClientInfo | None = None,
    ) -> None:
        """Start a session family whose first (current) refresh token is ``token_id``,
        signed in by ``client`` (recorded for :meth:`sessions`)."""

    async def rotate(
        self,
        token_id: str,
        *,
        family_id: str | None,
        now: float,
        grace: float,
        idle_ttl: float,
        successor_id: str | None,
        sealed: bytes | None,
        subject_hint: str | None = None,
        client: ClientInfo | None = None,
        late_replay: float = 0.0,
    ) -> RotateOutcome:
        """Atomically rotate ``token_id`` to ``successor_id`` (see :class:`RotateOutcome`).

        ``grace`` and ``late_replay`` count from the rotation of ``token_id``: within
        ``grace`` its unused successor is replayed, after it once more up to ``late_replay``
        (0, the default: never), and after both it is reuse.

        ``family_id`` is the family the presented token names (its slot in a cluster), or
        None for a token that names none (one issued by an earlier version); the successor
        belongs to the same family. ``subject_hint`` says whom the offered successor was
        minted for (taken from the old access token, so that one call suffices); when it is
        not the family's subject, nothing is rotated and the answer is ``active``.
        ``client`` made the request that refreshes: when this call rotates, it is recorded
        as the session's last refresh (in the same round trip)."""

    def known_active(self, family_id: str, now: float) -> bool | None:
        """:meth:`family_active` answered from this process's view, without I/O: True or
        False when certain, None when the store must be asked. Never wrong: a revocation
        anywhere shows here at once or within the store's stated bound."""

    async def family_active(self, family_id: str, now: float) -> bool:
        """Whether the family exists, is not revoked and is within its absolute lifetime
        (asking the backend; the answer also teaches :meth:`known_active`)."""

    async def revoke_token_family(self, token_id: str, *, family_id: str | None) -> str | None:
        """Revoke the family that ``token_id`` belongs to; returns its id if the token is
        known. ``family_id`` as for :meth:`rotate`."""

    async def revoke_subject(self, subject: str) -> int:
        """Revoke every family of ``subject``; returns how many were active."""

    async def sessions(self, subject: str, *, now: float) -> list[SessionInfo]:
        """The live sessions of ``subject`` (not revoked, within their idle and absolute
        lifetimes), in no particular order; ``current`` is False in all of them."""

    async def revoke_family(self, family_id: str, *, subject: str) -> bool:
        """Revoke the family ``family_id`` if it is one of ``subject``'s; True when this
        call revoked it, False when it is unknown, another subject's or already revoked
        (not told apart: the answer says nothing about other subjects' sessions)."""

    async def flight_claim(self, key: str, owner: str, *, now: float, lease: float) -> FlightState:
        """Claim the refresh flight ``key`` for ``owner`` until ``now + lease``, or report
        its state. Times are the caller's clock, so tests can inject it."""

    async def flight_finish(
        self, key: str, owner: str, value: bytes, *, now: float, ttl: float, alias: str | None
    ) -> None:
        """Publish the flight's result for ``ttl`` seconds if ``owner`` still holds it;
        ``alias`` (the successor's id) lets :meth:`flight_forget` find it on sign-out."""

    async def flight_release(self, key: str, owner: str) -> None:
        """Give up a claimed flight without a result, so the next request may try."""

    async def flight_forget(self, alias: str) -> None:
        """Drop a published flight result by its successor's id (sign-out)."""

    async def throttle_take(
        self, counters: Sequence[tuple[str, ThrottleRule]], *, now: float
    ) -> list[ThrottleState]:
        """For each ``(name, rule)``, atomically: refuse if its counter is locked, else count
        one attempt and lock as ``rule`` says (see :class:`ThrottleRule`). Each counter is
        decided on its own (in a cluster they live in different slots); all in one round
        trip. Every counter the store keeps expires (``rule.forget_after``)."""

    async def throttle_give(self, counters: Sequence[tuple[str, bool]], *, now: float) -> None:
        """Give back an attempt counted by :meth:`throttle_take`: for each ``(name, reset)``,
        drop the counter when ``reset``, else count one attempt fewer (a counter below its
        limit is not locked any more). One round trip."""

    async def aclose(self) -> None:
        """Release connections."""
