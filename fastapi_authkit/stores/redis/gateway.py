"""Every call the store makes to Redis, checked, translated and confirmed.

A call first passes the deployment checks (:mod:`~fastapi_authkit.stores.redis.checks`).
Any Redis error (down, slow past the client's ``socket_timeout``) becomes
:class:`~fastapi_authkit.errors.StoreUnavailableError`, on which the kit fails closed.

Replication is asynchronous: a write the primary acknowledged can be lost when it dies and
a replica is promoted. With ``wait_replicas=N`` a write that hands out or takes away a
session is followed by ``WAIT N`` on the connection that wrote it (``WAIT`` counts only the
writes of its own connection); if fewer replicas confirm within ``wait_timeout``, the
caller raises :class:`~fastapi_authkit.errors.ReplicaConfirmationError` (a store outage:
503, nothing cleared) rather than hand out what a failover may take back.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Awaitable
from typing import Any, TypeVar

from redis.commands.core import AsyncScript
from redis.exceptions import (
    AskError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
)

from ...errors import ConfigurationError, ReplicaConfirmationError, StoreUnavailableError
from ...validation import limit, seconds
from .checks import DeploymentCheck
from .topology import Command, Topology

__all__ = ["Gateway", "eval_command", "text"]

T = TypeVar("T")


def text(value: Any) -> str | None:
    """A reply as text: redis-py answers bytes (None stays None)."""
    return value.decode() if isinstance(value, bytes) else value


def _redirected(error: BaseException) -> bool:
    """Whether Redis answered with a cluster redirection (MOVED or ASK): redis-py raises
    MovedError/AskError, before 6 a plain ResponseError naming it."""
    if isinstance(error, (MovedError, AskError)):
        return True
    return (
        isinstance(error, ResponseError) and re.match(r"(MOVED|ASK) \d+ ", str(error)) is not None
    )


def eval_command(script: AsyncScript, keys: list[str], args: list[Any]) -> Command:
    """``script`` sent by its text, for a batch (a pipeline cannot fall back from a
    NOSCRIPT)."""
    return Command(("EVAL", script.script, len(keys), *keys, *args), keys[0])


def _evalsha_command(script: AsyncScript, keys: list[str], args: list[Any]) -> Command:
    return Command(("EVALSHA", script.sha, len(keys), *keys, *args), keys[0])


class Gateway:
    """The store's way to Redis: ``redis`` is the client, ``replicas`` how many replicas
    confirm each write that must survive a failover (0: none waited for)."""

    __slots__ = (
        "_checks",
        "_topology",
        "_wait_ms",
        "redis",
        "replicas",
        "rewrite_flag",
        "wait_timeout",
    )

    def __init__(self, topology: Topology, *, wait_replicas: object, wait_timeout: object) -> None:
        self._topology = topology
        self.redis = topology.client
        self.replicas, self.wait_timeout = self._wait_settings(wait_replicas, wait_timeout)
        self._wait_ms = math.ceil(self.wait_timeout * 1000)
        # What the scripts are told: '1' when a write is waited for, so that one that finds
        # nothing to change writes all the same, for the WAIT behind it to cover.
        self.rewrite_flag = "1" if self.replicas else "0"
        self._checks = DeploymentCheck(topology, wait_replicas=self.replicas)

    def _wait_settings(self, replicas: object, timeout: object) -> tuple[int, float]:
        replicas = limit("wait_replicas", replicas, minimum=0)
        socket_timeout = self._topology.socket_timeout()
        if timeout is None:
            timeout = socket_timeout / 2 if socket_timeout else 0.25
        wait = seconds("wait_timeout", timeout, positive=True)
        if replicas and socket_timeout is not None and wait >= socket_timeout:
            # WAIT answers only after its timeout; the read would give up first.
            raise ConfigurationError(
                f"wait_timeout ({timeout}s) must be shorter than the client's "
                f"socket_timeout ({socket_timeout}s)"
            )
        return replicas, wait

    async def check(self) -> None:
        """Run the deployment checks now (:meth:`DeploymentCheck.check`)."""
        await self._checks.check()

    async def call(self, awaitable: Awaitable[T]) -> T:
        """Await one call to Redis, after the deployment checks."""
        if not self._checks.passed:
            try:
                await self._checks.ensure()
            except BaseException:
                if inspect.iscoroutine(awaitable):
                    awaitable.close()  # never sent: no "never awaited" warning
                raise
        try:
            return await awaitable
        except (RedisError, RedisClusterException, OSError) as exc:
            if _redirected(exc) and self._topology.kind != "cluster":
                # Only a cluster node redirects: the check could not ask it (INFO refused).
                # (A cluster client follows redirections itself: one that reaches us is an
                # outage like any other.)
                error = self._topology.misdeployed()
                raise self._checks.refuse(error) from error
            # RedisClusterException (no node for a slot, cluster not ready) is not a
            # RedisError, but it is the same outage.
            raise StoreUnavailableError(f"Redis unavailable: {exc}") from exc

    async def run(self, commands: list[Command], *, confirm: bool) -> tuple[list[Any], int]:
        """``commands`` as one pipeline per node
        (:meth:`~fastapi_authkit.stores.redis.topology.Topology.run`), with ``confirm`` each
        node's part confirmed by ``WAIT``. Returns the replies and how many replicas
        confirmed."""
        wait = self.replicas if confirm else 0
        return await self.call(
            self._topology.run(commands, wait_replicas=wait, wait_ms=self._wait_ms)
        )

    async def script(
        self, script: AsyncScript, keys: list[str], args: list[Any]
    ) -> tuple[Any, int]:
        """One script; with ``wait_replicas``, pipelined with its WAIT. Returns the reply
        and how many replicas confirmed."""
        if not self.replicas:
            return await self.call(script(keys=keys, args=args)), 0
        (reply,), acked = await self.run([eval_command(script, keys, args)], confirm=True)
        return reply, acked

    async def script_before(
        self, script: AsyncScript, keys: list[str], args: list[Any], behind: list[Command]
    ) -> tuple[list[Any], int]:
        """One script and ``behind`` right after it in one pipeline (one round trip: every
        key in the script's slot); with ``wait_replicas``, the WAIT after them all. The
        script is sent by its SHA, as a lone script call is; a server that does not hold it
        (restarted, SCRIPT FLUSH) refuses it unrun, and the batch is sent again with the
        text, so ``behind`` must be safe to run once without the script before it."""

        async def attempt() -> tuple[list[Any], int]:
            wait, wait_ms = self.replicas, self._wait_ms
            try:
                batch = [_evalsha_command(script, keys, args), *behind]
                return await self._topology.run(batch, wait_replicas=wait, wait_ms=wait_ms)
            except NoScriptError:
                batch = [eval_command(script, keys, args), *behind]
                return await self._topology.run(batch, wait_replicas=wait, wait_ms=wait_ms)

        return await self.call(attempt())

    def unconfirmed(self, operation: str, acked: int) -> ReplicaConfirmationError:
        """The error for a write that too few replicas confirmed."""
        return ReplicaConfirmationError(operation, self.replicas, acked, self.wait_timeout)
