"""Helpers for the tests of each process's view of revoked sessions: a store standing for
one worker process, two of them on one prefix, subscribers counted on a server (bounded
waits are tests.support.waiting's, round trips are counted with tests.support.round_trips)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi_authkit.stores import RedisStore
from fastapi_authkit.stores.sealing import token_id

from tests.support.clock import T0
from tests.support.redis_servers import RedisServer

ABSOLUTE = 7200.0

# Revokes and publishes in one script, as the kit's scripts do, but only while nobody is
# subscribed on that server: the message of this revocation reaches no process directly.
# KEYS: the family. ARGV: the channel, the family id.
REVOKE_UNHEARD = """
if redis.call('PUBSUB', 'NUMSUB', ARGV[1])[2] > 0 then return 0 end
redis.call('HSET', KEYS[1], 'rev', '1')
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
"""


def numsub(node: RedisServer, channel: str) -> int:
    """Subscribers to ``channel`` on ``node`` itself (on a cluster, one node's)."""
    with node.control() as control:
        return int(control.pubsub_numsub(channel)[0][1])


@contextlib.asynccontextmanager
async def two_workers(
    url: str, prefix: str, **b_options: Any
) -> AsyncIterator[tuple[Worker, Worker]]:
    """Two RedisStores on ``url`` and one prefix, standing for two worker processes."""
    a = RedisStore.from_url(url, prefix=prefix)
    b = RedisStore.from_url(url, prefix=prefix, **b_options)
    try:
        yield Worker(a), Worker(b)
    finally:
        await a.aclose()
        await b.aclose()


class Worker:
    """One process's RedisStore, and families it created."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store

    async def sign_in(self, subject: str = "alice", family: str | None = None) -> tuple[str, str]:
        family, refresh = family or uuid.uuid4().hex, uuid.uuid4().hex
        await self.store.create_family(
            family_id=family,
            subject=subject,
            token_id=token_id(refresh, "refresh"),
            now=T0,
            idle_ttl=3600,
            absolute_ttl=ABSOLUTE,
        )
        return family, refresh

    async def revoke(self, family: str, refresh: str) -> str | None:
        return await self.store.revoke_token_family(token_id(refresh, "refresh"), family_id=family)

    def known(self, family: str) -> bool | None:
        return self.store.known_active(family, T0)

    @property
    def current(self) -> bool:
        """Whether the view trusts its "live" answers now."""
        return self.store._view.current

    async def refuses(self, family: str) -> bool:
        """Whether a request would be refused now: the view says revoked, or it cannot say
        (reset by a change of the cluster's shape) and the store does. Never while the view
        still answers "live"."""
        known = self.known(family)
        if known is None:
            return not await self.store.family_active(family, T0)
        return not known

    async def served_from_view(self, family: str) -> bool:
        """Ask as a request would: the view, else the store (which teaches the view);
        True once the view answers "live" by itself."""
        if self.known(family) is True:
            return True
        assert await self.store.family_active(family, T0)
        return False
