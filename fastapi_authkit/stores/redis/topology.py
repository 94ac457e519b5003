"""Which kind of Redis deployment a client talks to, and what differs between the kinds.

* ``single``: one server, a ``redis.asyncio.Redis``.
* ``sentinel``: the ``Redis`` that ``Sentinel(...).master_for(name)`` returns. It asks
  Sentinel for the current primary whenever it connects, so after a failover it reaches
  the promoted replica; to the store it is one server.
* ``cluster``: a ``redis.asyncio.cluster.RedisCluster``, which sends each command to the
  primary that holds its key's slot.

The store issues single-key-slot commands through the client as usual. What needs to know
the kind lives here: sending a batch of commands as one pipeline per node, optionally with
``WAIT`` behind each node's part, listing the primaries (one per shard), for anything
that has to reach all of them, and subscribing to the revocation channel where every
revocation is heard: on the one server, on whichever primary Sentinel names now, or on
every primary of a cluster (:mod:`~fastapi_authkit.stores.redis.cluster_subscription`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import (
    AskError,
    MovedError,
    ResponseError,
    SlotNotCoveredError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from ...errors import ConfigurationError
from .cluster_subscription import ClusterOpener
from .node_subscription import SentinelCheck, node_subscription
from .subscriber import SubscriptionOpener

__all__ = ["Command", "Kind", "Topology"]

Kind = Literal["single", "sentinel", "cluster"]

# How Redis refuses WAIT on a replica (the same words from Redis 5 to 8).
_REPLICA_REFUSAL = "WAIT cannot be used with replica instances"


@dataclass(frozen=True, slots=True)
class Command:
    """One command of a batch, and a key it touches (its slot decides its node)."""

    args: tuple[Any, ...]
    key: str


class Topology:
    """The client, its kind, and the operations that differ by kind."""

    __slots__ = ("_nodes", "client", "kind")

    def __init__(self, client: object) -> None:
        if isinstance(client, RedisCluster):
            self.kind: Kind = "cluster"
            if client.read_from_replicas or client.load_balancing_strategy is not None:
                # A replica may not have a revocation yet: a "live" read from it could be
                # kept by a process's view for good (see cluster_subscription).
                raise ConfigurationError(
                    "RedisStore reads sessions from the primaries: use a RedisCluster "
                    "without read_from_replicas / load_balancing_strategy"
                )
        elif isinstance(client, Redis):
            pool = client.connection_pool
            if isinstance(pool, SentinelConnectionPool) and not pool.is_master:
                raise ConfigurationError(
                    "RedisStore needs the primary: use Sentinel(...).master_for(name), "
                    "not slave_for/replica_for (replicas refuse writes)"
                )
            self.kind = "sentinel" if isinstance(pool, SentinelConnectionPool) else "single"
        else:
            raise ConfigurationError(
                "RedisStore needs a redis.asyncio client: Redis (one server, or "
                "Sentinel(...).master_for(name)) or redis.asyncio.cluster.RedisCluster, "
                f"got {type(client).__name__}"
            )
        self.client: Redis | RedisCluster = client
        self._nodes: _ClusterNodes | None = None

    async def check(self) -> None:
        """Raise :class:`ConfigurationError` when the deployment cannot be used as
        configured: a one-server client that reached a Redis Cluster node (``INFO cluster``
        says ``cluster_enabled:1``). Where ``INFO`` is refused (an ACL, a proxy), nothing
        is known here; the node's first ``MOVED`` reply tells instead (see
        :meth:`misdeployed`). A Redis that cannot be reached raises redis-py's error."""
        client = self.client
        if self.kind != "single" or isinstance(client, RedisCluster):
            return  # a Sentinel-managed primary cannot be a cluster node
        try:
            info = await client.info("cluster")
        except ResponseError:
            return
        if str(info.get("cluster_enabled")) == "1":
            raise self.misdeployed()

    def misdeployed(self) -> ConfigurationError:
        """The error for a one-server client talking to a Redis Cluster node (the URL's
        host and port in it, never its password)."""
        kwargs = self.client.get_connection_kwargs()
        path = kwargs.get("path")
        where = path or f"{kwargs.get('host')}:{kwargs.get('port')}"
        url = "redis+cluster://host:port" if path else f"redis+cluster://{where}"
        return ConfigurationError(
            f"the Redis at {where} is a Redis Cluster node: a one-server client reaches only "
            "the keys of that node's slots (the others answer MOVED), so RedisStore cannot "
            f"use it; use {url} (rediss+cluster:// with TLS; list more nodes after commas) "
            "or a redis.asyncio.cluster.RedisCluster client"
        )

    def socket_timeout(self) -> float | None:
        """The client's per-call timeout, when it has one."""
        client = self.client
        kwargs = (
            client.get_connection_kwargs()
            if isinstance(client, RedisCluster)
            else client.connection_pool.connection_kwargs
        )
        value = kwargs.get("socket_timeout")
        return float(value) if isinstance(value, int | float) else None

    async def run(
        self, commands: Sequence[Command], *, wait_replicas: int = 0, wait_ms: int = 0
    ) -> tuple[list[Any], int]:
        """Send ``commands`` as one pipeline per node (in order within a node), not as a
        transaction. With ``wait_replicas``, each node's part ends with ``WAIT``, on the
        same connection as the writes it confirms (``WAIT`` counts only the writes of its
        own connection). Returns the replies and the fewest replicas any node confirmed
        (``wait_replicas`` when not waiting). Commands must be safe to send twice: a batch
        that met a redirection is sent again.
        """
        if not isinstance(self.client, RedisCluster):
            pipe = self.client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command.args)
            if wait_replicas:
                pipe.execute_command("WAIT", wait_replicas, wait_ms)
            try:
                replies = await pipe.execute()
            except ResponseError as exc:
                await self._left_behind(exc)
                raise
            acked = replies.pop() if wait_replicas else wait_replicas
            return replies, int(acked)
        return await self._run_cluster(self.client, commands, wait_replicas, wait_ms)

    async def _left_behind(self, error: ResponseError) -> None:
        """After a failover the old primary rejoins as a replica, and the pool's connections
        to it stay open. redis-py drops them on a ``READONLY`` reply only; a batch that wrote
        nothing there (a script that found nothing to change) gets its ``WAIT`` refused in
        other words, and every later batch on those connections would be refused the same
        way, for as long as they live. Drop them all: the next connection asks Sentinel
        for the primary."""
        pool = getattr(self.client, "connection_pool", None)  # a cluster has one per node
        if isinstance(pool, SentinelConnectionPool) and _REPLICA_REFUSAL in str(error):
            await pool.disconnect()
            raise RedisConnectionError(
                f"the primary moved (a replica answered): {error}"
            ) from error

    async def _run_cluster(
        self, client: RedisCluster, commands: Sequence[Command], wait_replicas: int, wait_ms: int
    ) -> tuple[list[Any], int]:
        await client.initialize()
        for attempt in (1, 2):
            pipe = client.pipeline(transaction=False)
            nodes: dict[str, ClusterNode] = {}
            for command in commands:
                pipe.execute_command(*command.args)
                node = client.get_node_from_key(command.key)
                if node is None:
                    raise SlotNotCoveredError(f"no primary holds the slot of {command.key!r}")
                nodes[node.name] = node
            if wait_replicas:
                for node in nodes.values():
                    pipe.execute_command("WAIT", wait_replicas, wait_ms, target_nodes=node)
            try:
                # A redirected command would be re-sent on another connection, where this
                # node's WAIT no longer covers it: with WAIT, redirections are errors.
                replies = await pipe.execute(allow_redirections=not wait_replicas)
            except (MovedError, AskError):
                if attempt == 2:
                    raise
                # A slot moved (resharding, failover). A plain command follows the
                # redirection and updates the client's slot map; then the batch is resent.
                for command in commands:
                    await client.execute_command("EXISTS", command.key)
                continue
            if not wait_replicas:
                return replies, wait_replicas
            acks = replies[len(commands) :]
            return replies[: len(commands)], min(int(ack) for ack in acks)
        raise AssertionError("unreachable")  # pragma: no cover

    async def primaries(self) -> list[Redis]:
        """A client for each primary: the client itself for one server or Sentinel (which
        follows the failover), one per shard for a cluster (made once, closed by
        :meth:`aclose`)."""
        client = self.client
        if not isinstance(client, RedisCluster):
            return [client]
        await client.initialize()
        nodes = self._cluster_nodes(client)
        return [nodes.client(node.host, int(node.port)) for node in client.get_primaries()]

    def subscriptions(self, channel: str, epoch: str) -> SubscriptionOpener:
        """How to subscribe to ``channel`` so that every revocation is heard, and every
        change of primary, or of the data under ``epoch`` (the epoch key, or on a cluster
        the base of each primary's own: :mod:`~fastapi_authkit.stores.redis.epoch`), ends the
        subscription."""
        client = self.client
        if isinstance(client, RedisCluster):
            nodes = self._cluster_nodes(client)
            return ClusterOpener(nodes.seeds, nodes.client, channel, epoch=epoch)
        pool = client.connection_pool
        if isinstance(pool, SentinelConnectionPool):
            # The subscription's connection asks Sentinel for the primary when it connects;
            # every heartbeat then asks every Sentinel whether that is still the primary.
            check = SentinelCheck(pool)
            return lambda: node_subscription(client, channel, check=check, epoch=epoch)
        return lambda: node_subscription(client, channel, epoch=epoch)

    def _cluster_nodes(self, client: RedisCluster) -> _ClusterNodes:
        if self._nodes is None:
            self._nodes = _ClusterNodes(client)
        return self._nodes

    async def aclose(self) -> None:
        if self._nodes is not None:
            await self._nodes.aclose()
        await self.client.aclose()


class _ClusterNodes:
    """Clients for single nodes of a cluster, with the cluster client's settings (one per
    address, made on first use): for the commands that go to every primary."""

    def __init__(self, cluster: RedisCluster) -> None:
        self._cluster = cluster
        self._clients: dict[str, Redis] = {}

    def client(self, host: str, port: int) -> Redis:
        """The client for ``host:port`` (after the cluster client's address remapping).
        ``CLUSTER INFO`` and ``CLUSTER NODES`` answer raw bytes."""
        cluster = self._cluster
        host, port = cluster.nodes_manager.remap_host_port(host, port)
        kwargs: dict[str, Any] = dict(cluster.get_connection_kwargs())
        node = ClusterNode(host, port, **kwargs)
        found = self._clients.get(node.name)
        if found is None:
            pool = ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
            found = self._clients[node.name] = Redis.from_pool(pool)
            for command in ("CLUSTER INFO", "CLUSTER NODES"):
                found.set_response_callback(command, _raw)
        return found

    async def seeds(self) -> list[tuple[str, int]]:
        """Nodes to ask for the cluster's node table: the primaries in the client's slot
        map first, then the other nodes it knows, then the ones it started from."""
        cluster = self._cluster
        await cluster.initialize()
        primaries = cluster.get_primaries()
        others = [n for n in cluster.get_nodes() if n not in primaries]
        startup = list(cluster.nodes_manager.startup_nodes.values())
        seen: dict[tuple[str, int], None] = {}
        for node in (*primaries, *others, *startup):
            seen.setdefault((node.host, int(node.port)), None)
        return list(seen)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


def _raw(response: Any, **kwargs: Any) -> Any:
    return response
