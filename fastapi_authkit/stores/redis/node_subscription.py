"""The revocation channel's subscription on one Redis node (one server, Sentinel's primary).

With Sentinel, every heartbeat checks that the node is still the one primary.

Its :class:`~fastapi_authkit.stores.redis.subscriber.Subscription` is a dedicated connection
(and a second one for the epoch key, :mod:`~fastapi_authkit.stores.redis.epoch`); a
cluster's (:mod:`~fastapi_authkit.stores.redis.cluster_subscription`) is one of these per
primary.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
from collections.abc import Awaitable, Callable
from typing import Any, Final

from redis.asyncio import Redis
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import RedisError

from .epoch import establish, verify
from .subscriber import Subscription

__all__ = ["PrimaryCheck", "SentinelCheck", "SentinelMoved", "node_subscription"]

# redis-py 8's asyncio connections take maintenance-notification settings (and turn them on
# by default); older ones refuse the keyword.
_MAINT_NOTIFICATIONS: Final = (
    importlib.util.find_spec("redis.asyncio.maint_notifications") is not None
)

# Raises unless the node at (host, port) is the deployment's one primary now (Sentinel).
PrimaryCheck = Callable[[str, int], Awaitable[None]]


class _NodeSubscription:
    """A dedicated connection (not the client's pool, and no hidden reconnects: a silent
    reconnect would hide the gap in which messages were missed)."""

    def __init__(
        self,
        connection: Any,
        check: PrimaryCheck | None,
        reader: Any,
        epoch: tuple[str, bytes] | None,
    ) -> None:
        self._connection = connection
        self._check = check
        self._reader = reader  # a second connection of its own, for the epoch
        self._epoch = epoch

    async def ping(self, payload: bytes) -> None:
        if self._check is not None:
            # Before the PING, and after the subscriber noted the heartbeat's send time:
            # the node was still the only primary after that time, so every revocation
            # executed before it was executed here, and its message precedes the PONG.
            await self._check(self._connection.host, int(self._connection.port))
        if self._epoch is not None:
            # Also after the send time: the data was still the data the view learned from
            # then, so nothing learned before it was flushed or swapped away unheard.
            await verify(self._read, *self._epoch)
        await self._connection.send_command("PING", payload)

    async def next(self) -> tuple[bytes, bytes]:
        reply = await self._connection.read_response(timeout=math.inf)
        if isinstance(reply, list) and len(reply) >= 2:
            kind = reply[0]
            if kind == b"message" and len(reply) == 3:
                return kind, reply[2]
            if kind == b"pong":
                return kind, reply[1]
        return b"other", b""

    async def _read(self, *args: Any) -> Any:
        await self._reader.send_command(*args)
        return await self._reader.read_response()

    async def aclose(self) -> None:
        try:
            await self._connection.disconnect()
        finally:
            await self._reader.disconnect()


async def node_subscription(
    client: Redis,
    channel: str,
    *,
    check: PrimaryCheck | None = None,
    epoch: str | None = None,
) -> Subscription:
    """Subscribe to ``channel`` on the node ``client`` talks to, on a connection of its own
    made with the client's settings (address, credentials, TLS, timeouts for writes).
    ``check``: for a node that may stop being the primary (Sentinel), run before every
    heartbeat; when it raises, the subscription ends. ``epoch``: the epoch key (see
    :mod:`~fastapi_authkit.stores.redis.epoch`), written once subscribed and read back with
    every heartbeat, on a second connection of the subscription's own (requests never
    wait behind it); when it vanishes or changes, the subscription ends."""
    pool = client.connection_pool
    options = dict(pool.connection_kwargs)
    # Bytes in RESP2: pushes then arrive as plain replies, in order with the heartbeats.
    # (Maintenance notifications need RESP3, and belong to the pool's connections anyway.)
    options.pop("maint_notifications_pool_handler", None)
    options.update(decode_responses=False, protocol=2, health_check_interval=0)
    if _MAINT_NOTIFICATIONS:
        options["maint_notifications_config"] = None
    connection: Any = pool.connection_class(**options)
    reader: Any = pool.connection_class(**options)
    try:
        await connection.connect()
        await connection.send_command("SUBSCRIBE", channel)
        reply = await connection.read_response()
        if not (isinstance(reply, list) and reply[:1] == [b"subscribe"]):
            raise RedisError(f"unexpected reply to SUBSCRIBE: {reply!r}")
        subscription = _NodeSubscription(connection, check, reader, None)
        if epoch is not None:
            # After SUBSCRIBE: a flush from here on shows in a heartbeat, one before it
            # here. (With Sentinel, the reader asks for the primary when it connects too;
            # the heartbeat's check covers both connections.)
            await reader.connect()
            subscription._epoch = (epoch, await establish(subscription._read, epoch))
    except BaseException:
        await connection.disconnect()
        await reader.disconnect()
        raise
    return subscription


class SentinelCheck:
    """Whether a node is the primary every Sentinel names (a
    :data:`PrimaryCheck`).

    A promoted replica executes the writes of clients that learned its address from a
    Sentinel (redis-py asks Sentinel whenever it connects, and reconnects on a READONLY
    reply), and a Sentinel that has named a new primary does not go back to the old one
    short of another failover. So while *every* configured Sentinel still names the
    subscribed node, no other node has executed a revocation. Asking only one would not
    do: another process may have asked one that already knows of the failover. A Sentinel
    that does not answer fails the check too (the view falls back until it answers)."""

    def __init__(self, pool: SentinelConnectionPool) -> None:
        self._sentinels = pool.sentinel_manager.sentinels
        self._service = pool.service_name

    async def __call__(self, host: str, port: int) -> None:
        named = await asyncio.gather(
            *(s.sentinel_get_master_addr_by_name(self._service) for s in self._sentinels)
        )
        for address in named:
            if address is None or (_text(address[0]), int(address[1])) != (host, port):
                shown = "none" if address is None else f"{_text(address[0])}:{address[1]}"
                raise SentinelMoved(f"a Sentinel names {shown} as the primary, not {host}:{port}")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SentinelMoved(RedisError):
    """The subscribed node is not (or not only) what Sentinel names as the primary."""
