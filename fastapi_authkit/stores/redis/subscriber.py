"""Keeping a :class:`~fastapi_authkit.stores.view.RevocationView` current from Redis.

One background task per store and event loop subscribes to the revocation channel (the
revoking Lua scripts PUBLISH each revoked family id in the same script that revokes, so no
revocation exists without its message), sends a heartbeat ``PING`` on that same connection
every ``max_lag / 4`` seconds and hands the view what arrives: revocations, and the send
time of each heartbeat that came back (the proof that every earlier message was seen).

Whatever goes wrong (the connection is killed or reset, Redis restarts, a heartbeat stays
unanswered, the task itself dies) resets the view at once, so the workers ask the store per
request until a new subscription is established and its first heartbeat has come back. A
revocation published while no subscription exists is therefore not lost: it is in the store,
and the store is what every request asks until the view is current again.

The connection itself sits behind a small seam (:class:`Subscription`, opened by a
:data:`SubscriptionOpener`):
:func:`~fastapi_authkit.stores.redis.node_subscription.node_subscription` is the one for a
single Redis node (one server, or the primary Sentinel names), and
:class:`~fastapi_authkit.stores.redis.cluster_subscription.ClusterSubscription` subscribes to
every primary of a cluster. Which one a store uses is the topology's choice
(:meth:`~fastapi_authkit.stores.redis.topology.Topology.subscriptions`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final, Protocol

from redis.exceptions import RedisClusterException, RedisError

from ..view import RevocationView

__all__ = ["LOST", "RevocationSubscriber", "Subscription", "SubscriptionOpener"]

logger = logging.getLogger("fastapi_authkit")

# Reconnect after this, doubling up to _MAX_RETRY (a connect to a Redis that is down is
# refused at once, so this paces the attempts; requests ask Redis meanwhile).
_FIRST_RETRY: Final = 0.05
_MAX_RETRY: Final = 1.0
# What ends a subscription (or an attempt to make one) without being a bug. A cluster
# client's own errors (no node reachable, a slot not covered) are not RedisErrors.
LOST: Final = (RedisError, RedisClusterException, OSError, TimeoutError)


class Subscription(Protocol):
    """One established subscription to the revocation channel."""

    async def ping(self, payload: bytes) -> None:
        """Send a heartbeat; it comes back from :meth:`next` as ``(b"pong", payload)``."""

    async def next(self) -> tuple[bytes, bytes]:
        """The next push: ``(b"message", data)`` or ``(b"pong", payload)`` (other kinds may
        be ignored); raises on a connection error."""

    async def aclose(self) -> None:
        """Drop the connection."""


SubscriptionOpener = Callable[[], Awaitable[Subscription]]


class RevocationSubscriber:
    """The background task that keeps ``view`` current. Started lazily on the running
    event loop by :meth:`ensure_running` (a store call that had to ask Redis), stopped by
    :meth:`aclose` (``RedisStore.aclose``, from the app's lifespan shutdown)."""

    def __init__(
        self,
        view: RevocationView,
        opener: SubscriptionOpener,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._view = view
        self._open = opener
        self._monotonic = monotonic
        self._heartbeat = view.max_lag / 4
        # A heartbeat unanswered this long means the connection is stuck: start over.
        self._stalled_after = max(1.0, 4 * view.max_lag)
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._lost_since: float | None = None  # for one warning per outage

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    def ensure_running(self) -> None:
        """Start the task on the running loop unless it runs there already (it restarts a
        task that died, and one left behind on another, finished loop)."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        task = self._task
        if task is not None and not task.done() and self._loop is loop:
            return
        if task is not None and task.done() and not task.cancelled() and task.exception():
            logger.error("revocation subscriber died; restarting it", exc_info=task.exception())
        self._view.reset()
        self._loop = loop
        self._task = loop.create_task(self._run(), name="fastapi-authkit revocations")

    async def aclose(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None and self._loop is asyncio.get_running_loop():
            task.cancel()
            # A cancellation that arrives while the client library finishes a connect can
            # be lost inside it (redis-py 8.1): ask again until the task has ended (it
            # also checks _closed between its steps).
            while not (await asyncio.wait({task}, timeout=0.5))[0]:
                task.cancel()
            if not task.cancelled() and task.exception() is not None:
                logger.error("revocation subscriber ended with an error", exc_info=task.exception())
        self._view.reset()

    async def _run(self) -> None:
        delay = _FIRST_RETRY
        try:
            while not self._closed:
                try:
                    subscription = await self._open()
                except LOST as exc:
                    self._lost("could not subscribe", exc)
                else:
                    try:
                        # Closed during the await (mypy keeps the loop's narrowing across it).
                        if self._closed:
                            return  # type: ignore[unreachable]
                        self._view.subscribed()
                        if self._lost_since is not None:
                            logger.info("revocation subscription re-established")
                            self._lost_since = None
                        delay = _FIRST_RETRY
                        await self._serve(subscription)
                    except (*LOST, _Stalled) as exc:
                        self._lost("subscription lost", exc)
                    finally:
                        self._view.reset()
                        with contextlib.suppress(*LOST):
                            await subscription.aclose()
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RETRY)
        finally:
            self._view.reset()  # however the task ends: cancelled, or a bug

    def _lost(self, what: str, exc: BaseException) -> None:
        self._view.reset()
        if self._lost_since is None:
            self._lost_since = self._monotonic()
            logger.warning(
                "revocation %s (%s); every request asks Redis until it is back", what, exc
            )
        else:
            logger.debug("revocation %s (%s)", what, exc)

    async def _serve(self, subscription: Subscription) -> None:
        """Read and heartbeat until something fails."""
        sent: dict[bytes, float] = {}
        reader = asyncio.ensure_future(self._read(subscription, sent))
        beater = asyncio.ensure_future(self._beat(subscription, sent))
        try:
            done, _ = await asyncio.wait({reader, beater}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises what ended it
        finally:
            for task in (reader, beater):
                task.cancel()
            await asyncio.gather(reader, beater, return_exceptions=True)

    async def _read(self, subscription: Subscription, sent: dict[bytes, float]) -> None:
        view = self._view
        while True:
            kind, data = await subscription.next()
            if kind == b"message":
                view.revoked(data.decode("ascii", "replace").split())
            elif kind == b"pong":
                at = sent.pop(data, None)
                if at is not None:
                    view.confirm(at)

    async def _beat(self, subscription: Subscription, sent: dict[bytes, float]) -> None:
        counter = 0
        while True:
            now = self._monotonic()
            if sent and now - min(sent.values()) > self._stalled_after:
                raise _Stalled(f"no heartbeat back for {self._stalled_after:.1f} s")
            counter += 1
            payload = b"%d" % counter
            sent[payload] = now
            # Bounded even for a client without socket timeouts: a write that cannot go
            # out is a stuck connection too.
            async with asyncio.timeout(self._stalled_after):
                await subscription.ping(payload)
            await asyncio.sleep(self._heartbeat)


class _Stalled(Exception):
    pass
