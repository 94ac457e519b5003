"""Keeping a revocation view current on a Redis Cluster: one subscription per primary, and
the cluster's shape checked with every heartbeat.

A script that revokes runs on the primary that holds its family's slot, and its
``PUBLISH`` reaches that primary's own subscribers in execution order (it also travels the
cluster bus to every other node, but that path is not ordered with anything a client can
see). So the proof of currency is per primary: a heartbeat ``PING`` on a primary's
subscription that has come back proves that every revocation that primary executed before
it was sent has been seen. :class:`ClusterSubscription` holds one subscription per
primary and reports a heartbeat as back only when it is back from *every* primary. The
copies of each message that arrive over the bus from the other primaries are harmless:
revocation is idempotent.

That proof covers only the primaries subscribed to. A node that starts executing writes
afterwards (a replica promoted by a failover, a node added and given slots, a slot being
imported by a node that was not a primary before) would publish where nobody listens. So
each heartbeat round also asks every subscribed primary for its ``CLUSTER INFO`` and
compares the part that changes with the cluster's shape (its state, the current epoch,
this node's config epoch, the known nodes, the failed slots) with what it said right after
the subscriptions were made; any difference ends the subscription (the view is reset, the
primaries are found again and subscribed to anew). The heartbeat counts only when that
check came back unchanged too. Why that suffices:

* a failover (automatic or ``CLUSTER FAILOVER`` [``FORCE``]) needs the votes of a majority
  of the primaries, and each voter raises its current epoch *before* it votes, so before
  the promoted replica executes anything, most subscribed primaries report a new epoch;
* a node joins by a handshake that raises every node's known-node count, and can only be
  given slots (migrated to it) by a primary that knows it. The count rises when the
  handshake begins; its end (the node answers, and is listed as a primary under its own
  id) changes nothing ``CLUSTER INFO`` says, so no subscription is made while any primary
  lists a node in its handshake;
* a migration between subscribed primaries needs nothing: the importing node is
  subscribed to, and it publishes in order on its own subscribers too;
* a primary that dies or is cut off stops answering heartbeats, and one on the minority
  side of a partition reports ``cluster_state:fail``.

What is left is what the cluster bus itself leaves open: ``CLUSTER FAILOVER TAKEOVER``
(no vote) announces the new primary only by the bus, and a change made just before the
first check can be missed until the next one (see the module's callers' docs).

Each primary's data may also be flushed on its own (``FLUSHALL`` there): the same probe
reads back that primary's epoch key (:mod:`~fastapi_authkit.stores.redis.epoch`, in a slot it
owns), and a key vanished or changed ends the subscription too.

The primaries are listed from ``CLUSTER NODES``, not from the slot map, so that a primary
that holds no slots yet (a node just added, about to import some) is subscribed to as well.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from .cluster_state import NodeTable, Primary, describe_change, parse_info, parse_nodes
from .epoch import check as check_epoch
from .epoch import establish, key_on
from .node_subscription import node_subscription
from .subscriber import LOST, Subscription

__all__ = ["ClusterOpener", "ClusterSubscription", "TopologyChanged"]


class TopologyChanged(RedisError):
    """The set of primaries is not (or no longer) what the subscriptions cover."""


class _Round:
    __slots__ = ("checked", "waiting")

    def __init__(self, count: int) -> None:
        self.waiting = set(range(count))  # the primaries whose PING has not come back
        self.checked = False  # the shape check came back unchanged


@dataclass(frozen=True, slots=True)
class _Node:
    client: Redis  # for the shape checks (the subscription's connection takes no commands)
    subscription: Subscription
    shape: tuple[bytes, ...]  # its CLUSTER INFO right after subscribing
    epoch: tuple[str, bytes] | None  # its epoch key and value (None: it holds no slots)


class ClusterSubscription:
    """The subscriptions to every primary, seen as one :class:`Subscription`: messages from
    any of them, and a heartbeat back once every primary has answered it and none has
    reported a new shape of the cluster."""

    def __init__(self, nodes: Sequence[_Node]) -> None:
        self._nodes = list(nodes)
        self._queue: asyncio.Queue[tuple[bytes, bytes] | BaseException] = asyncio.Queue()
        self._rounds: dict[bytes, _Round] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        for index, node in enumerate(self._nodes):
            self._spawn(self._read(index, node.subscription))

    @property
    def primaries(self) -> int:
        return len(self._nodes)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def ping(self, payload: bytes) -> None:
        self._rounds[payload] = _Round(len(self._nodes))
        for node in self._nodes:
            await node.subscription.ping(payload)
        self._spawn(self._check(payload))

    async def next(self) -> tuple[bytes, bytes]:
        item = await self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for node in self._nodes:
            with contextlib.suppress(*LOST):
                await node.subscription.aclose()

    async def _read(self, index: int, subscription: Subscription) -> None:
        try:
            while True:
                kind, data = await subscription.next()
                if kind == b"message":
                    self._queue.put_nowait((kind, data))
                elif kind == b"pong":
                    round_ = self._rounds.get(data)
                    if round_ is not None:
                        # Every message this primary sent before its PONG is queued
                        # already, so the heartbeat is reported after them.
                        round_.waiting.discard(index)
                        self._complete(data, round_)
        except Exception as exc:  # a lost connection, or a bug: next() raises it
            self._queue.put_nowait(exc)

    async def _check(self, payload: bytes) -> None:
        try:
            replies = await asyncio.gather(*(_probe(node) for node in self._nodes))
            for node, (reply, _) in zip(self._nodes, replies, strict=True):
                shape = parse_info(reply)
                if shape != node.shape:
                    raise TopologyChanged(
                        f"the cluster changed shape: {describe_change(node.shape, shape)}"
                    )
            for node, (_, epoch) in zip(self._nodes, replies, strict=True):
                if isinstance(epoch, Exception):
                    raise epoch
                if node.epoch is not None:
                    check_epoch(*node.epoch, epoch)  # this primary's data: flushed?
        except Exception as exc:
            self._queue.put_nowait(exc)
            return
        round_ = self._rounds.get(payload)
        if round_ is not None:
            round_.checked = True
            self._complete(payload, round_)

    def _complete(self, payload: bytes, round_: _Round) -> None:
        if round_.checked and not round_.waiting:
            del self._rounds[payload]
            self._queue.put_nowait((b"pong", payload))


async def _probe(node: _Node) -> tuple[bytes, Any]:
    """One primary's ``CLUSTER INFO`` and epoch, in one pipeline."""
    pipe = cast(Any, node.client).pipeline(transaction=False)
    pipe.execute_command("CLUSTER INFO")
    if node.epoch is not None:
        pipe.get(node.epoch[0])
    # Errors as replies: a changed shape is the reason to report, when there is one (the
    # epoch read of a primary that was just demoted answers MOVED).
    replies = await pipe.execute(raise_on_error=False)
    if isinstance(replies[0], Exception):
        raise replies[0]
    return replies[0], replies[1] if node.epoch is not None else None


# A current epoch above every node's config epoch: an election has begun whose winner has
# not yet announced itself, or one that nobody won. Wait this long for it to settle.
_SETTLE: Final = 1.0


class ClusterOpener:
    """Opens a :class:`ClusterSubscription` on every primary (a
    :data:`~fastapi_authkit.stores.redis.subscriber.SubscriptionOpener`). ``seeds`` lists nodes
    to ask for the cluster's nodes (the client's slot map); ``node_client`` gives a client
    for one node, with raw replies for ``CLUSTER INFO`` and ``CLUSTER NODES``.

    Opening raises :class:`TopologyChanged` while the cluster is changing (the primaries
    do not all list the same primaries, a node is in its handshake, or an election is
    under way): the subscriber tries again shortly, and requests ask Redis meanwhile."""

    def __init__(
        self,
        seeds: Callable[[], Awaitable[list[tuple[str, int]]]],
        node_client: Callable[[str, int], Redis],
        channel: str,
        *,
        epoch: str,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._seeds = seeds
        self._node_client = node_client
        self._channel = channel
        self._epoch = epoch
        self._monotonic = monotonic
        self._unsettled: tuple[bytes, float] | None = None  # (current epoch, first seen)
        self._accepted = b""  # a current epoch seen to have settled

    async def __call__(self) -> ClusterSubscription:
        listed = await self._primaries()
        clients = [self._node_client(p.host, p.port) for p in listed]
        opened: list[Subscription] = []
        try:
            for client in clients:
                opened.append(await node_subscription(client, self._channel))
            # Taken after subscribing: a change from here on shows in a later check, and
            # one before it shows here.
            shapes = await asyncio.gather(
                *(_shape(client, p.host) for client, p in zip(clients, listed, strict=True))
            )
            ids = {p.node_id for p in listed}
            for primary, (shape, table) in zip(listed, shapes, strict=True):
                if shape[0] != b"ok":
                    # A node that sees the cluster down (the minority side of a partition,
                    # slots uncovered) may be about to see it change under it.
                    raise TopologyChanged(
                        f"primary {primary.host}:{primary.port} reports cluster_state "
                        f"{shape[0].decode(errors='replace')}"
                    )
                if table.handshake:
                    # Its end changes nothing CLUSTER INFO says: a node left out now would
                    # go unnoticed until it owns slots, after executing what it imported.
                    raise TopologyChanged(
                        f"primary {primary.host}:{primary.port} lists a node in its handshake "
                        "(joining the cluster)"
                    )
                if table.primaries.keys() != ids:
                    raise TopologyChanged(
                        f"primary {primary.host}:{primary.port} lists other primaries than "
                        "the others (the cluster is changing)"
                    )
                self._settled(shape, table)
            # Each primary's epoch key, in a slot of its own (as its own table says).
            epochs: list[tuple[str, bytes] | None] = []
            for client, primary, (_, table) in zip(clients, listed, shapes, strict=True):
                key = key_on(self._epoch, table.primaries[primary.node_id].slots)
                if key is None:
                    epochs.append(None)
                else:
                    run = cast(Any, client).execute_command
                    epochs.append((key, await establish(run, key)))
        except BaseException:
            for subscription in opened:
                with contextlib.suppress(*LOST):
                    await subscription.aclose()
            raise
        return ClusterSubscription(
            [
                _Node(client, subscription, shape, epoch)
                for client, subscription, (shape, _), epoch in zip(
                    clients, opened, shapes, epochs, strict=True
                )
            ]
        )

    async def _primaries(self) -> list[Primary]:
        error: Exception | None = None
        for host, port in await self._seeds():
            try:
                _, table = await _shape(self._node_client(host, port), host)
            except LOST as exc:
                error = exc
                continue
            if table.primaries:
                return sorted(table.primaries.values(), key=lambda p: (p.host, p.port))
        raise error or TopologyChanged("no node of the cluster lists a primary")

    def _settled(self, shape: tuple[bytes, ...], table: NodeTable) -> None:
        """Raise unless the node's current epoch is some node's config epoch, or has stayed
        the same for :data:`_SETTLE` seconds once (an election nobody won, or a primary
        turned into a replica, leaves the current epoch above every config epoch)."""
        epoch = shape[1]
        if not epoch.isdigit() or int(epoch) <= table.top_epoch or epoch == self._accepted:
            return
        now = self._monotonic()
        if self._unsettled is None or self._unsettled[0] != epoch:
            self._unsettled = (epoch, now)
        if now - self._unsettled[1] < _SETTLE:
            raise TopologyChanged(f"an election may be under way (epoch {epoch.decode()})")
        self._accepted = epoch


async def _shape(client: Redis, asked_host: str) -> tuple[tuple[bytes, ...], NodeTable]:
    """One node's shape and node table, in one pipeline (the shape first: a change between
    the two replies shows in the next check)."""
    pipe = client.pipeline(transaction=False)
    pipe.execute_command("CLUSTER INFO")
    pipe.execute_command("CLUSTER NODES")
    info, nodes = await pipe.execute()
    return parse_info(info), parse_nodes(nodes, asked_host)
