"""The one server setting the issuer's keys need: ``maxmemory-policy noeviction``.

Under any other policy Redis may drop keys when it is full, one by one and without a word
to anyone: a family's record (its session is then unknown: signed out, or, to a process
whose view learned it live, still live), a subject's list of sessions ("sign out
everywhere" then misses them), a rotated-out token's record (its reuse goes unnoticed).
The ``volatile-*`` policies are no safer: every key the store writes has a backstop expiry.
No epoch key can notice that (:mod:`~fastapi_authkit.stores.redis.epoch`): it may be the one key
that stays. So the store reads the policy of every primary before its first command and
refuses to work on a server that may evict (:class:`~fastapi_authkit.errors.ServerSettingError`:
a configuration error that is also a store outage, so requests fail closed, 503, never
500), and reads it again at most once a second while it refuses, so that setting it right
needs no restart.

Managed Redis services often disable ``CONFIG``. Then the policy cannot be read: the store
logs once that it must be ``noeviction`` and works (refusing every managed Redis would be
worse than a warning about a setting the operator can check in the service's console).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from redis.exceptions import ResponseError

from ...errors import ServerSettingError

__all__ = ["EvictionPolicy"]

logger = logging.getLogger("fastapi_authkit")

REQUIRED: Final = "noeviction"
# While refused, the policy is read again at most this often (seconds).
_RECHECK: Final = 1.0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class EvictionPolicy:
    """Checks the primaries' ``maxmemory-policy``; ``ok`` once it is known to be (or
    cannot be told not to be) ``noeviction``."""

    __slots__ = ("_error", "_monotonic", "_primaries", "_retry_at", "ok")

    def __init__(
        self,
        primaries: Callable[[], Awaitable[list[Any]]],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._primaries = primaries
        self._monotonic = monotonic
        self.ok = False
        self._error: ServerSettingError | None = None
        self._retry_at = -math.inf

    async def check(self) -> None:
        """Raise :class:`ServerSettingError` if a primary may evict keys; a Redis error
        (down, slow) propagates as it is."""
        if self.ok:
            return
        if self._error is not None and self._monotonic() < self._retry_at:
            raise self._error
        policies = []
        for client in await self._primaries():
            try:
                reply = await client.config_get("maxmemory-policy")
            except ResponseError as exc:  # CONFIG disabled or not permitted (managed Redis)
                logger.warning(
                    "cannot read Redis's maxmemory-policy (%s): make sure it is %s, or "
                    "evicted keys can leave signed-out sessions live (docs: "
                    "deployments/redis, What Redis must be)",
                    exc,
                    REQUIRED,
                )
                self.ok = True
                return
            found = {_text(k): _text(v) for k, v in dict(reply).items()}
            policies.append(found.get("maxmemory-policy", REQUIRED))
        evicting = sorted({p for p in policies if p != REQUIRED})
        if not evicting:
            if self._error is not None:
                logger.warning(
                    "Redis's maxmemory-policy is %s now: the store works again", REQUIRED
                )
            self.ok, self._error = True, None
            return
        error = ServerSettingError(
            f"Redis has maxmemory-policy {', '.join(evicting)}: it may evict the issuer's "
            f"keys (a revoked session, a subject's sessions) unheard, so the store refuses "
            f"to work on it. Set maxmemory-policy {REQUIRED} (CONFIG SET maxmemory-policy "
            f"{REQUIRED}, and in redis.conf); every request fails closed (503) until then"
        )
        if self._error is None or str(self._error) != str(error):
            logger.error("%s", error)
        self._error = error
        self._retry_at = self._monotonic() + _RECHECK
        raise error
