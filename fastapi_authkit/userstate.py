"""The signed user-state cookie: the state id plus the app's user state; pure.

Signed with itsdangerous (tamper-proof, not secret: the payload is readable base64, which is
why the cookie is HttpOnly). A salt keeps signatures from other purposes (CSRF, the app's
own itsdangerous use) from being replayed here, and ``max_age`` is always passed because
itsdangerous accepts any age otherwise. The clock is injected.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer

from .errors import UserStateError
from .fifo import Fifo
from .jsoncopy import Copyable, copyable

__all__ = ["SessionData", "StateCodec", "binding_of", "belongs"]


class SessionData(NamedTuple):
    state_id: str
    user_state: Any
    # binding_of() the session's refresh token (its access token, for a session without one).
    binding: str
    # binding_of() each access token the state was issued with (one, or the kept one and an
    # unusable new one); None for a cookie issued by version 0.1.0, which bound only the
    # refresh token.
    access: tuple[str, ...] | None


def binding_of(token: str) -> str:
    """A short, non-reversible fingerprint of the session token a state cookie belongs to.

    Not remembered per token: the tokens it is given are whatever a request sends (a new
    refresh cookie on every request would fill any cache keyed by them), and hashing a
    token costs less than caching it would."""
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def belongs(session: SessionData, access: str | None, refresh_token: str | None) -> bool | None:
    """Whether the state ``session`` was issued with these access and refresh cookies.

    False for another session's state, or an older issue of this session's (an old user
    state next to a newer access token). The refresh token decides alone when the access
    cookie is absent (the browser drops it at its Max-Age; the state carries the session
    into the refresh); without a refresh token the binding is the access token itself. None
    for a cookie from version 0.1.0 with both tokens: it matches the refresh token but cannot
    say which access token it was issued with.
    """
    bound_to = refresh_token if refresh_token is not None else access
    if bound_to is None or session.binding != binding_of(bound_to):
        return False
    if access is None or refresh_token is None:
        return True
    if session.access is None:
        return None
    return binding_of(access) in session.access


# The payload's keys; version 0.1.0 wrote no "a" (access-token bindings).
_FIELDS = frozenset({"s", "u", "b", "a"})
_FIELDS_0_1 = frozenset({"s", "u", "b"})


def _clocked_signer(clock: Callable[[], float]) -> type[TimestampSigner]:
    class ClockedTimestampSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(clock())

    return ClockedTimestampSigner


_SALT = "fastapi-authkit.state"


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
        cache_size: int = 20_000,
    ) -> None:
        self._max_age = max_age
        self._keys = list(secret_keys)
        self._clock = clock
        self._leeway = leeway
        # value -> (state_id, user state, binding, signed at, access bindings): a cookie that
        # verified once is not verified again; its age still is, on every read. A cookie
        # whose session the request reader remembers is taken out of it (:meth:`forget`).
        self._cache: Fifo[str, tuple[str, Copyable, str, int, tuple[str, ...] | None]] = Fifo(
            cache_size
        )
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

    def dumps(
        self,
        state_id: str,
        user_state: Any,
        bound_to: str,
        access: Iterable[str | None] = (),
        *,
        now: float | None = None,
    ) -> str:
        """Sign the state id and user state, bound to the session's token ``bound_to``
        (its refresh token, else its access token) and to the access tokens it is issued
        with (``access``; None entries are skipped), with the timestamp of ``now``
        (default: the clock's now)."""
        data = {
            "s": state_id,
            "u": user_state,
            "b": binding_of(bound_to),
            "a": [binding_of(token) for token in access if token is not None],
        }
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

    def remembered(self, value: str) -> tuple[float, float, str, Copyable] | None:
        """``(from, until, state id, user state)``: when a remembered state cookie passes
        its age check (0 <= int(now + leeway) - signed_at <= max_age, solved for now), its
        state id and its user state (copy it out, never change it), or None."""
        cached = self._cache.get(value)
        if cached is None:
            return None
        signed_at = cached[3]
        return (
            signed_at - self._leeway,
            signed_at + self._max_age + 1 - self._leeway,
            cached[0],
            cached[1],
        )

    def forget(self, value: str) -> None:
        """Drop what is remembered of the state cookie ``value`` (its keeper is now the
        request reader's record of its session)."""
        self._cache.pop(value, None)

    def loads(self, value: str) -> SessionData | None:
        """The session data, or None when the value is tampered, foreign or too old."""
        cached = self._cache.get(value)
        if cached is not None:
            state_id, user, binding, signed_at, access = cached
            # The same rule as itsdangerous: 0 <= age <= max_age, in whole seconds, on a clock
            # running ``leeway`` ahead so a cookie from a slightly fast peer is accepted.
            if 0 <= int(self._clock() + self._leeway) - signed_at <= self._max_age:
                # tuple.__new__: the same SessionData without NamedTuple's Python __new__.
                return tuple.__new__(SessionData, (state_id, user.copy(), binding, access))
            del self._cache[value]
            return None
        try:
            data, signed = self._reader.loads(value, max_age=self._max_age, return_timestamp=True)
        except (BadData, ValueError, TypeError, RecursionError, json.JSONDecodeError):
            return None
        if (
            not isinstance(data, dict)
            or not (data.keys() == _FIELDS or data.keys() == _FIELDS_0_1)
            or not isinstance(data["s"], str)
            or not isinstance(data["b"], str)
        ):
            return None
        access = None
        if "a" in data:
            if not isinstance(data["a"], list) or not all(isinstance(a, str) for a in data["a"]):
                return None
            access = tuple(data["a"])
        if self._cache.size:
            user = copyable(data["u"])
            entry = (data["s"], user, data["b"], int(signed.timestamp()), access)
            self._cache.put(value, entry)
        return SessionData(data["s"], data["u"], data["b"], access)
