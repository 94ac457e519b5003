"""The signed user-state cookie: session id plus the app's user state; pure.

Signed with itsdangerous (tamper-proof, not secret: the payload is readable base64, which is
why the cookie is HttpOnly). A salt keeps signatures from other purposes (CSRF, the app's
own itsdangerous use) from being replayed here, and ``max_age`` is always passed because
itsdangerous accepts any age otherwise. The clock is injected.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

from .errors import UserStateError
from .fifo import Fifo
from .jsoncopy import Remembered, remember

__all__ = ["SessionData", "StateCodec", "binding_of"]


_SALT = "fastapi-authkit.state"


class SessionData(NamedTuple):
    sid: str
    user_state: Any
    binding: str  # binding_of() the token the state belongs to


@functools.lru_cache(maxsize=65_536)  # the same tokens come back on every request
def binding_of(token: str) -> str:
    """A short, non-reversible fingerprint of the session token a state cookie belongs to."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def _clocked_signer(clock: Callable[[], float]) -> type[TimestampSigner]:
    class ClockedTimestampSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(clock())

    return ClockedTimestampSigner


class _SignerAt(TimestampSigner):
    """Signs with the timestamp of a given time (the cookies of one refresh are written at
    the time of the process that performed it, in every process that hands them out)."""

    def __init__(self, at: float, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._at = int(at)

    def get_timestamp(self) -> int:
        return self._at


class StateCodec:
    """Signs and reads the state cookie for one configuration."""

    __slots__ = ("_cache", "_clock", "_keys", "_leeway", "_max_age", "_reader", "_serializer")

    def __init__(
        self,
        secret_keys: Sequence[bytes],
        *,
        max_age: int,
        clock: Callable[[], float],
        leeway: float = 0,
        cache_size: int = 100_000,
    ) -> None:
        self._max_age = max_age
        self._clock = clock
        self._leeway = leeway
        # value -> (sid, user state, binding, signed at): a cookie that verified once is
        # not verified again; its age still is, on every read.
        self._cache: Fifo[str, tuple[str, Remembered, str, int]] = Fifo(cache_size)
        self._keys = list(secret_keys)
        options: dict[str, Any] = {
            "salt": _SALT,
            "signer_kwargs": {"digest_method": hashlib.sha256},
        }
        self._serializer = URLSafeTimedSerializer(
            list(secret_keys), signer=_clocked_signer(clock), **options
        )
        # Reads on a clock ``leeway`` ahead: another instance whose clock is that much faster
        # signs timestamps "in the future", which itsdangerous would otherwise refuse.
        self._reader = URLSafeTimedSerializer(
            list(secret_keys), signer=_clocked_signer(lambda: clock() + leeway), **options
        )

    def dumps(self, sid: str, user_state: Any, bound_to: str, now: float | None = None) -> str:
        """Sign the session id and user state, bound to the token ``bound_to``, with the
        timestamp of ``now`` (default: the clock's now)."""
        data = {"s": sid, "u": user_state, "b": binding_of(bound_to)}
        try:
            if now is None:
                return self._serializer.dumps(data)
            # The same bytes as dumps() would sign at ``now``: payload, then a signer whose
            # timestamp is ``now`` (itsdangerous's Serializer.dumps does exactly these steps).
            payload = self._serializer.dump_payload(data)
            signer = _SignerAt(now, self._keys, salt=_SALT, digest_method=hashlib.sha256)
            return signer.sign(payload).decode("utf-8")
        except (TypeError, ValueError) as exc:
            raise UserStateError(f"user state must be JSON-serializable: {exc}") from exc

    def remembered(self, value: str) -> tuple[float, float, Remembered] | None:
        """``(from, until, user state)``: when a remembered state cookie passes its age
        check (0 <= int(now + leeway) - signed_at <= max_age, solved for now), and its user
        state (copy it out, never change it), or None."""
        cached = self._cache.get(value)
        if cached is None:
            return None
        signed_at = cached[3]
        return (
            signed_at - self._leeway,
            signed_at + self._max_age + 1 - self._leeway,
            cached[1],
        )

    def loads(self, value: str) -> SessionData | None:
        """The session data, or None when the value is tampered, foreign or too old."""
        cached = self._cache.get(value)
        if cached is not None:
            sid, user, binding, signed_at = cached
            # The same rule as itsdangerous: 0 <= age <= max_age, in whole seconds, on a clock
            # running ``leeway`` ahead so a cookie from a slightly fast peer is accepted.
            if 0 <= int(self._clock() + self._leeway) - signed_at <= self._max_age:
                # tuple.__new__: the same SessionData without NamedTuple's Python __new__.
                return tuple.__new__(SessionData, (sid, user.copy(), binding))
            del self._cache[value]
            return None
        try:
            data, signed = self._reader.loads(value, max_age=self._max_age, return_timestamp=True)
        except (BadData, ValueError, TypeError, RecursionError, json.JSONDecodeError):
            return None
        if (
            not isinstance(data, dict)
            or set(data) != {"s", "u", "b"}
            or not isinstance(data["s"], str)
            or not isinstance(data["b"], str)
        ):
            return None
        if self._cache.size:
            user = remember(data["u"])
            self._cache.put(value, (data["s"], user, data["b"], int(signed.timestamp())))
        return SessionData(data["s"], data["u"], data["b"])
