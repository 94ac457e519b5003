"""The embedded default: shared state in this process's memory.

Correct for one process (one uvicorn worker): every method runs without awaiting between its
read and its write, so on one event loop each is atomic. For several workers use
:class:`~fastapi_authkit.stores.redis.RedisStore`. Entries expire lazily and are swept as
the store grows, so memory stays bounded by the live sessions. The login guard's attempt
counters are bounded by count (``max_throttles``, least recently used dropped first) as
well as by time, because their names are the clients' to choose.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..clientinfo import ClientInfo
from ..validation import limit
from .base import FlightState, RotateOutcome, SessionInfo, ThrottleRule, ThrottleState
from .listeners import RevocationListeners

__all__ = ["MemoryStore"]

_SWEEP_EVERY = 1024


_NO_CLIENT = ClientInfo()


@dataclass(slots=True)
class _Family:
    subject: str
    absolute_expires: float
    current: str
    created: float
    signed_in: ClientInfo
    revoked: bool = False
    # The last successor handed out a second time after the grace window (a late replay).
    replayed: str | None = None
    # The last refresh and who made it (for the session list).
    refreshed: float | None = None
    seen: ClientInfo | None = None


@dataclass(slots=True)
class _Token:
    family_id: str
    expires: float
    rotated_at: float | None = None
    successor: str | None = None
    sealed: bytes | None = None


@dataclass(slots=True)
class _Flight:
    value: bytes  # b"P:" + owner while pending, else the published result
    expires: float
    alias: str | None = None


@dataclass(slots=True)
class _Counter:
    count: int
    locked_until: float
    limit: int
    expires: float


@dataclass
class MemoryStore:
    """In-process :class:`~fastapi_authkit.stores.base.SessionStore`.

    ``max_throttles`` bounds the login guard's attempt counters held at once: beyond it the
    least recently used one is dropped (an attacker spraying account names or addresses
    costs memory up to this bound, never more)."""

    max_throttles: int = 100_000
    _throttles: OrderedDict[str, _Counter] = field(default_factory=OrderedDict)
    _families: dict[str, _Family] = field(default_factory=dict)
    _tokens: dict[str, _Token] = field(default_factory=dict)
    _subjects: dict[str, set[str]] = field(default_factory=dict)
    _flights: dict[str, _Flight] = field(default_factory=dict)
    _aliases: dict[str, str] = field(default_factory=dict)
    _writes: int = 0
    # Told of each revocation (this process's open connections of the session end).
    revocation_listeners: RevocationListeners = field(default_factory=RevocationListeners)

    def __post_init__(self) -> None:
        limit("max_throttles", self.max_throttles)

    def _sweep(self, now: float) -> None:
        self._writes += 1
        if self._writes % _SWEEP_EVERY:
            return
        for tid in [t for t, rec in self._tokens.items() if rec.expires <= now]:
            del self._tokens[tid]
        for fid in [f for f, fam in self._families.items() if fam.absolute_expires <= now]:
            fam = self._families.pop(fid)
            members = self._subjects.get(fam.subject)
            if members is not None:
                members.discard(fid)
                if not members:
                    del self._subjects[fam.subject]

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
        self._sweep(now)
        absolute = now + absolute_ttl
        self._families[family_id] = _Family(subject, absolute, token_id, now, client or _NO_CLIENT)
        self._tokens[token_id] = _Token(family_id, min(now + idle_ttl, absolute))
        self._subjects.setdefault(subject, set()).add(family_id)

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
        record = self._record(token_id, family_id)
        if record is None or record.expires <= now:
            return RotateOutcome("unknown")
        family = self._families.get(record.family_id)
        if family is None:
            return RotateOutcome("unknown")
        fid, subject = record.family_id, family.subject
        if family.revoked:
            return RotateOutcome("revoked", fid, subject)
        if now >= family.absolute_expires:
            self._revoke(fid, family)
            return RotateOutcome("expired", fid, subject)
        absolute = family.absolute_expires
        if record.rotated_at is None:
            mismatch = subject_hint is not None and subject_hint != subject
            if successor_id is None or mismatch:
                return RotateOutcome("active", fid, subject, None, absolute)
            self._sweep(now)
            record.rotated_at, record.successor, record.sealed = now, successor_id, sealed
            # Kept until its own expiry, and through both windows even if that comes first
            # (a token rotated just before its idle end still gets its lost reply back):
            # a late replay is recognised, as a replay within the windows while the
            # successor is unused, as reuse otherwise.
            record.expires = max(record.expires, now + grace, now + late_replay)
            self._tokens[successor_id] = _Token(fid, min(now + idle_ttl, family.absolute_expires))
            family.current = successor_id
            if client is not None:
                family.refreshed, family.seen = now, client
            return RotateOutcome("rotated", fid, subject, None, absolute)
        age = now - record.rotated_at
        if family.current == record.successor and (
            age <= grace or (age <= late_replay and family.replayed != token_id)
        ):
            # The immediate predecessor of a successor nobody has used: within the grace
            # window a request that was in flight; after it, a holder that may never have
            # received the successor (a reply lost, a client gone mid-refresh), so it gets
            # the same one again rather than being taken for theft. Only up to late_replay
            # after the rotation: an idle holder leaves its successor unused for hours, and
            # a stale copy of the predecessor must not be worth a session all that time.
            # Once: a successor handed out that way cannot be replayed late itself, or a
            # thief one rotation behind could follow the session for ever.
            if age > grace:
                family.replayed = record.successor
            return RotateOutcome("replay", fid, subject, record.sealed, absolute)
        self._revoke(fid, family)
        return RotateOutcome("reuse", fid, subject)

    def watch_revocations(self) -> RevocationListeners:
        """Who is told of each revocation (this store is the one process's whole truth)."""
        return self.revocation_listeners

    def known_active(self, family_id: str, now: float) -> bool | None:
        # One process: this view is the store itself, always current.
        family = self._families.get(family_id)
        return family is not None and not family.revoked and now < family.absolute_expires

    async def family_active(self, family_id: str, now: float) -> bool:
        return self.known_active(family_id, now) is True

    def _record(self, token_id: str, family_id: str | None) -> _Token | None:
        # As in Redis, where a token is looked up under the family it names.
        record = self._tokens.get(token_id)
        if record is not None and family_id is not None and record.family_id != family_id:
            return None
        return record

    async def revoke_token_family(self, token_id: str, *, family_id: str | None) -> str | None:
        record = self._record(token_id, family_id)
        if record is None:
            return None
        family = self._families.get(record.family_id)
        if family is not None:
            self._revoke(record.family_id, family)
        return record.family_id

    async def revoke_subject(self, subject: str) -> int:
        count = 0
        for fid in self._subjects.get(subject, ()):
            family = self._families.get(fid)
            if family is not None and not family.revoked:
                self._revoke(fid, family)
                count += 1
        return count

    async def sessions(self, subject: str, *, now: float) -> list[SessionInfo]:
        members = self._subjects.get(subject)
        if not members:
            return []
        found = []
        for fid in list(members):
            family = self._families.get(fid)
            if family is None or family.revoked:
                members.discard(fid)  # over for good: no need to list or revoke it again
                continue
            token = self._tokens.get(family.current)
            expires = min(token.expires if token else now, family.absolute_expires)
            if now >= expires:
                continue  # idle or too old: ended, though nobody has revoked it yet
            seen = family.seen or family.signed_in
            found.append(
                SessionInfo(
                    id=fid,
                    created_at=family.created,
                    refreshed_at=family.refreshed,
                    expires_at=expires,
                    user_agent=seen.user_agent,
                    ip=seen.ip,
                    signed_in_user_agent=family.signed_in.user_agent,
                    signed_in_ip=family.signed_in.ip,
                )
            )
        if not members:
            del self._subjects[subject]
        return found

    async def revoke_family(self, family_id: str, *, subject: str) -> bool:
        family = self._families.get(family_id)
        if family is None or family.subject != subject or family.revoked:
            return False
        self._revoke(family_id, family)
        return True

    def _revoke(self, family_id: str, family: _Family) -> None:
        family.revoked = True
        if self.revocation_listeners:
            self.revocation_listeners.notify((family_id,))

    # --- refresh flights (one process only, so mainly a reference for RedisStore) ----------

    def _flight(self, key: str, now: float) -> _Flight | None:
        flight = self._flights.get(key)
        if flight is not None and flight.expires <= now:
            del self._flights[key]
            if flight.alias is not None:
                self._aliases.pop(flight.alias, None)
            return None
        return flight

    async def flight_claim(self, key: str, owner: str, *, now: float, lease: float) -> FlightState:
        flight = self._flight(key, now)
        if flight is None:
            self._flights[key] = _Flight(b"P:" + owner.encode(), now + lease)
            return FlightState("claimed")
        if flight.value.startswith(b"P:"):
            return FlightState("pending")
        return FlightState("done", flight.value)

    async def flight_finish(
        self, key: str, owner: str, value: bytes, *, now: float, ttl: float, alias: str | None
    ) -> None:
        flight = self._flights.get(key)
        if flight is None or flight.value != b"P:" + owner.encode():
            return
        self._flights[key] = _Flight(value, now + ttl, alias)
        if alias is not None:
            self._aliases[alias] = key
        if len(self._flights) > _SWEEP_EVERY:
            for k in list(self._flights):
                self._flight(k, now)

    async def flight_release(self, key: str, owner: str) -> None:
        flight = self._flights.get(key)
        if flight is not None and flight.value == b"P:" + owner.encode():
            del self._flights[key]

    async def flight_forget(self, alias: str) -> None:
        key = self._aliases.pop(alias, None)
        if key is not None:
            self._flights.pop(key, None)

    # --- login guard counters --------------------------------------------------------------

    async def throttle_take(
        self, counters: Sequence[tuple[str, ThrottleRule]], *, now: float
    ) -> list[ThrottleState]:
        return [self._take(name, rule, now) for name, rule in counters]

    def _take(self, name: str, rule: ThrottleRule, now: float) -> ThrottleState:
        held = self._throttles.get(name)
        if held is not None and held.expires <= now:
            del self._throttles[name]
            held = None
        if held is not None and held.locked_until > now:
            # Refused: not counted, and not moved up either (a refusal costs nothing).
            return ThrottleState(False, held.count, held.locked_until)
        count = (held.count if held is not None else 0) + 1
        delay = rule.delay(count)
        until = now + delay if delay else 0.0
        expires = max(until, now) + rule.forget_after
        if held is None:
            held = self._throttles[name] = _Counter(count, until, rule.limit, expires)
            while len(self._throttles) > self.max_throttles:
                self._throttles.popitem(last=False)
        else:
            held.count, held.locked_until, held.limit, held.expires = (
                count,
                until,
                rule.limit,
                expires,
            )
            self._throttles.move_to_end(name)
        return ThrottleState(True, count, until, bool(delay))

    async def throttle_give(self, counters: Sequence[tuple[str, bool]], *, now: float) -> None:
        for name, reset in counters:
            held = self._throttles.get(name)
            if held is None:
                continue
            if reset or held.expires <= now:
                del self._throttles[name]
                continue
            held.count = max(held.count - 1, 0)
            if held.count < held.limit:
                held.locked_until = 0.0

    async def aclose(self) -> None:
        return None
