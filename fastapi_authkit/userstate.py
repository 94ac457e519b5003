"""The signed user-state cookie: session id plus the app's user state; pure.

Signed with itsdangerous (tamper-proof, not secret: the payload is readable base64, which is
why the cookie is HttpOnly). A salt keeps signatures from other purposes (CSRF, the app's
own itsdangerous use) from being replayed here, and ``max_age`` is always passed because
itsdangerous accepts any age otherwise. The clock is injected.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

from .errors import UserStateError

__all__ = ["SessionData", "StateCodec"]


class SessionData(NamedTuple):
    sid: str
    user_state: Any


def _clocked_signer(clock: Callable[[], float]) -> type[TimestampSigner]:
    class ClockedTimestampSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(clock())

    return ClockedTimestampSigner


class StateCodec:
    """Signs and reads the state cookie for one configuration."""

    __slots__ = ("_cache", "_cache_size", "_clock", "_max_age", "_serializer")

    def __init__(
        self,
        secret_keys: Sequence[bytes],
        *,
        max_age: int,
        clock: Callable[[], float],
        cache_size: int = 100_000,
    ) -> None:
        self._max_age = max_age
        self._clock = clock
        # value -> (sid, user state as JSON, signed at): a cookie that verified once is
        # not verified again; its age still is, on every read.
        self._cache: dict[str, tuple[str, str, int]] = {}
        self._cache_size = cache_size
        self._serializer = URLSafeTimedSerializer(
            list(secret_keys),
            salt="fastapi-authkit.state",
            signer=_clocked_signer(clock),
            signer_kwargs={"digest_method": hashlib.sha256},
        )

    def dumps(self, sid: str, user_state: Any) -> str:
        try:
            return self._serializer.dumps({"s": sid, "u": user_state})
        except (TypeError, ValueError) as exc:
            raise UserStateError(f"user state must be JSON-serializable: {exc}") from exc

    def loads(self, value: str) -> SessionData | None:
        """The session data, or None when the value is tampered, foreign or too old."""
        cached = self._cache.get(value)
        if cached is not None:
            sid, user_json, signed_at = cached
            # The same rule as itsdangerous: 0 <= age <= max_age, in whole seconds.
            if 0 <= int(self._clock()) - signed_at <= self._max_age:
                # Parsed afresh each time, so a route that edits its user state cannot
                # change what the next request sees.
                return SessionData(sid, None if user_json == "null" else json.loads(user_json))
            del self._cache[value]
            return None
        try:
            data, signed = self._serializer.loads(
                value, max_age=self._max_age, return_timestamp=True
            )
        except (BadData, ValueError, TypeError, RecursionError, json.JSONDecodeError):
            return None
        if not isinstance(data, dict) or set(data) != {"s", "u"} or not isinstance(data["s"], str):
            return None
        if self._cache_size:
            if len(self._cache) >= self._cache_size:
                del self._cache[next(iter(self._cache))]
            user_json = json.dumps(data["u"], separators=(",", ":"))
            self._cache[value] = (data["s"], user_json, int(signed.timestamp()))
        return SessionData(data["s"], data["u"])
