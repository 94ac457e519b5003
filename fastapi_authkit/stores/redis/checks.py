"""Whether the Redis deployment fits the store, asked before the first call that needs it.

A one-server client must not reach a Redis Cluster node
(:meth:`~fastapi_authkit.stores.redis.topology.Topology.check`), and the server must run
with ``maxmemory-policy noeviction`` (:mod:`~fastapi_authkit.stores.redis.eviction`). A
deployment that does not fit makes every call fail closed with
:class:`~fastapi_authkit.errors.StoreUnavailableError` (503, nothing cleared) for as long as
the process runs, and the operator's
:class:`~fastapi_authkit.errors.ConfigurationError` is logged once; a server that may evict
is refused until its policy is right (a
:class:`~fastapi_authkit.errors.ServerSettingError`), with no restart needed.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisClusterException, RedisError

from ...errors import ConfigurationError, ServerSettingError, StoreUnavailableError
from .eviction import EvictionPolicy
from .topology import Topology

__all__ = ["DeploymentCheck"]

logger = logging.getLogger("fastapi_authkit")


class DeploymentCheck:
    """The server checks of the store's first call; ``passed`` once they all have."""

    __slots__ = ("_checked", "_eviction", "_topology", "_unusable", "_wait")

    def __init__(self, topology: Topology, *, wait_replicas: int) -> None:
        self._topology = topology
        self._wait = wait_replicas
        # Whether the deployment fits the client, asked by the first call that reaches
        # Redis: the store's constructor does no I/O. Once it does not fit, _unusable says
        # why and every call fails closed without asking Redis again.
        self._checked = False
        self._unusable: ConfigurationError | None = None
        # Read before the first command: a server that may evict keys is refused.
        self._eviction = EvictionPolicy(topology.primaries)

    @property
    def passed(self) -> bool:
        return self._checked and self._eviction.ok

    async def check(self) -> None:
        """Run the checks now (see :meth:`~fastapi_authkit.stores.redis.RedisStore.check`):
        an unusable deployment raises its :class:`ConfigurationError` here, not the store
        outage the calls get."""
        try:
            await self.ensure()
        except ServerSettingError:
            raise
        except StoreUnavailableError:
            if self._unusable is None:
                raise
            raise ConfigurationError(str(self._unusable)) from None

    async def ensure(self) -> None:
        """The checks of the first call: the deployment once, the eviction policy until it
        is known to be ``noeviction`` (while refused, at most once a second)."""
        if self._unusable is not None:
            raise self.refuse(self._unusable) from self._unusable
        try:
            if not self._checked:
                await self._topology.check()
                await self._check_replica_count()
                self._checked = True
            await self._eviction.check()
        except ServerSettingError:
            raise  # a store outage already (503), logged by the check; not for good
        except ConfigurationError as exc:
            raise self.refuse(exc) from exc
        except (RedisError, RedisClusterException, OSError) as exc:
            raise StoreUnavailableError(f"Redis unavailable: {exc}") from exc

    async def _check_replica_count(self) -> None:
        """``wait_replicas`` below the primary's replica count protects nothing in a
        failover: after Sentinel promotes one replica, the old primary (back from a pause)
        still takes writes that another replica confirms, then drops as it follows the
        promoted one (docs: deployments/redis, How long a Sentinel failover lasts). Said
        once, at the first call; the count may change later, which only the operator knows
        of."""
        if not self._wait or self._topology.kind == "cluster":
            return
        info = await self._topology.client.info("replication")
        replicas = int(info.get("connected_slaves", 0))
        if replicas > self._wait:
            logger.warning(
                "RedisStore(wait_replicas=%d) while the primary has %d replicas: a failover "
                "can lose refreshes that a replica confirmed; set wait_replicas=%d "
                "(docs: deployments/redis, Failover)",
                self._wait,
                replicas,
                replicas,
            )

    def refuse(self, error: ConfigurationError) -> StoreUnavailableError:
        """The store outage for an unusable deployment: a 503 to users, nothing cleared,
        for as long as the process runs; the operator's error logged the first time."""
        if self._unusable is None:
            self._unusable = error
            self._checked = False
            logger.error("RedisStore cannot work: %s", error)
        return StoreUnavailableError(f"Redis unusable as configured: {error}")
