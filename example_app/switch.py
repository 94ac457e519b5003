"""The demo's "make the token endpoint fail" switch.

While it is on, every refresh fails the way a real outage of the token endpoint does: the
store's rotation raises :class:`~fastapi_authkit.StoreUnavailableError`, so the kit keeps
every cookie, the still-valid access token keeps working, protected routes answer 503 with
``Retry-After`` once it has expired, and the first request after the switch goes off
refreshes the same session. Only rotations fail: sign-in, sign-out, the session check and
the session list work as usual.

The switch lives where the sessions do, so that every worker sees it: in Redis (one ``GET``
before each rotation, the demo's price for it) or in this process's memory. It turns itself
off after ten minutes, so a forgotten switch does not leave the demo broken.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from fastapi_authkit import StoreUnavailableError
from fastapi_authkit.stores import MemoryStore, RedisStore
from fastapi_authkit.stores.base import RotateOutcome

SWITCH_TTL = 600  # seconds
_KEY = "authkit-example:token-endpoint-failing"


class FailureSwitch:
    """On or off, in Redis (``client``) or in this process."""

    def __init__(self, clock: Callable[[], float], client: Redis | RedisCluster | None = None):
        self._clock = clock
        self._client = client
        self._until = 0.0

    async def is_on(self) -> bool:
        if self._client is None:
            return self._clock() < self._until
        try:
            return bool(await self._client.exists(_KEY))
        except Exception as exc:  # Redis down: the real outage, reported as such
            raise StoreUnavailableError(f"Redis unavailable: {exc}") from exc

    async def turn(self, on: bool) -> None:
        if self._client is None:
            self._until = self._clock() + SWITCH_TTL if on else 0.0
        elif on:
            await self._client.set(_KEY, "1", ex=SWITCH_TTL)
        else:
            await self._client.delete(_KEY)


class _Switched:
    """A store whose rotation (the token endpoint of the built-in issuer) fails while the
    switch is on. Mixed into the kit's own stores, so everything else is theirs."""

    switch: FailureSwitch

    async def rotate(self, token_id: str, **options: Any) -> RotateOutcome:
        if await self.switch.is_on():
            raise StoreUnavailableError("the demo's token endpoint is switched to fail")
        outcome: RotateOutcome = await super().rotate(token_id, **options)  # type: ignore[misc]
        return outcome


class SwitchedMemoryStore(_Switched, MemoryStore):
    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__()
        self.switch = FailureSwitch(clock)


class SwitchedRedisStore(_Switched, RedisStore):
    @classmethod
    def connect(
        cls, url: str, *, wait_replicas: int, clock: Callable[[], float]
    ) -> SwitchedRedisStore:
        store = cast(SwitchedRedisStore, cls.from_url(url, wait_replicas=wait_replicas))
        store.switch = FailureSwitch(clock, store.topology.client)
        return store
