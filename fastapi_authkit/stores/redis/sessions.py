"""A subject's list of live sessions, read from Redis (what a "your sessions" page shows).

Each session is a family record (its subject, whether revoked, its absolute expiry, its
current refresh token), a session record beside it (when and by whom it was signed in and
last refreshed) and the current token's record (its idle expiry): read in batches, one
pipeline per node each.
"""

from __future__ import annotations

from typing import Any, Final

from ..base import SessionInfo
from .gateway import Gateway, text
from .keys import KeyLayout
from .legacy import LegacyTokens
from .subjects import SubjectSets
from .topology import Command

__all__ = ["SessionList"]

# Families read per pipeline when listing a subject's sessions.
_BATCH: Final = 256


def _number(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, b"") else None
    except ValueError:
        return None


class SessionList:
    """Lists a subject's live sessions."""

    __slots__ = ("_gateway", "_keys", "_legacy", "_subjects")

    def __init__(
        self, gateway: Gateway, keys: KeyLayout, legacy: LegacyTokens, subjects: SubjectSets
    ) -> None:
        self._gateway = gateway
        self._keys = keys
        self._legacy = legacy
        self._subjects = subjects

    async def of(self, subject: str, *, now: float) -> list[SessionInfo]:
        """``SessionStore.sessions``."""
        families = await self._subjects.families(subject)
        found: list[SessionInfo] = []
        revoked: list[str] = []
        for start in range(0, len(families), _BATCH):
            batch = families[start : start + _BATCH]
            found += await self._live_in(subject, batch, now, revoked)
        if revoked:
            # Revocation is for good: no list or "sign out everywhere" needs them again.
            # (A family not found is not dropped: it may be one being signed in right now,
            # listed under its subject a moment before its own record is written.)
            await self._subjects.forget(subject, revoked)
        return found

    async def _live_in(
        self, subject: str, families: list[str], now: float, revoked: list[str]
    ) -> list[SessionInfo]:
        """The live sessions among ``families`` (a batch of ``subject``'s set): their family
        and session records, then the current refresh token of each that is still live
        (its expiry is the session's idle expiry), one pipeline per node each."""
        k, g = self._keys, self._gateway
        commands = []
        for family in families:
            family_key, record = k.family(family), k.session(family)
            commands.append(Command(("HMGET", family_key, "sub", "rev", "abs", "cur"), family_key))
            commands.append(Command(("HMGET", record, "c", "t", "ua", "ip", "ua0", "ip0"), record))
        replies, _ = await g.run(commands, confirm=False)
        live: list[tuple[str, float, str, list[Any]]] = []
        for i, family in enumerate(families):
            sub, rev, absolute, current = (text(v) for v in replies[2 * i])
            until = _number(absolute)
            if rev == "1":
                revoked.append(family)
            elif sub == subject and rev == "0" and until is not None and now < until and current:
                live.append((family, until, current, replies[2 * i + 1]))
        if not live:
            return []
        legacy = self._legacy.enabled
        tokens = []
        for family, _until, current, _record in live:
            key = k.token(family, current)
            tokens.append(Command(("HGET", key, "exp"), key))
            if legacy:  # a session not refreshed since the earlier layout
                legacy_key = self._legacy.key(current)
                tokens.append(Command(("HGET", legacy_key, "exp"), legacy_key))
        expiries, _ = await g.run(tokens, confirm=False)
        step = 2 if legacy else 1
        found = []
        for i, (family, until, _current, fields) in enumerate(live):
            idle = next(
                (e for e in map(_number, expiries[step * i : step * i + step]) if e is not None),
                None,
            )
            if idle is None or now >= idle:
                continue  # idle for too long: ended, though nobody has revoked it yet
            created, refreshed, user_agent, ip, signed_in_ua, signed_in_ip = (
                text(v) or None for v in fields
            )
            found.append(
                SessionInfo(
                    id=family,
                    created_at=_number(created),
                    refreshed_at=_number(refreshed),
                    expires_at=min(idle, until),
                    user_agent=user_agent if refreshed else signed_in_ua,
                    ip=ip if refreshed else signed_in_ip,
                    signed_in_user_agent=signed_in_ua,
                    signed_in_ip=signed_in_ip,
                )
            )
        return found
