"""RedisStore: the session store of several workers or machines, one collaborator a concern.

The store checks its arguments and hands each method to the collaborator that owns it: a
family's creation, rotation and liveness (:mod:`~fastapi_authkit.stores.redis.families`),
revocation (:mod:`~fastapi_authkit.stores.redis.revocations`), the list of a subject's
sessions (:mod:`~fastapi_authkit.stores.redis.sessions`), the refresh flight
(:mod:`~fastapi_authkit.stores.redis.flights`) and the login guard's counters
(:mod:`~fastapi_authkit.stores.redis.throttles`). They all reach Redis through one
:class:`~fastapi_authkit.stores.redis.gateway.Gateway` (the deployment checks, errors as
store outages, replica confirmation). The hot path, ``known_active``, is the lookup of this
process's :class:`~fastapi_authkit.stores.view.RevocationView` itself, with no frame of the
store's around it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

from ...clientinfo import ClientInfo
from ...validation import limit, seconds
from ..base import FlightState, RotateOutcome, SessionInfo, ThrottleRule, ThrottleState
from ..listeners import RevocationListeners
from ..view import RevocationView
from .families import Families
from .flights import Flights
from .gateway import Gateway
from .keys import KeyLayout
from .legacy import LegacyTokens
from .revocations import Revocations
from .sessions import SessionList
from .subjects import SubjectSets
from .subscriber import RevocationSubscriber
from .throttles import Throttles
from .topology import Topology
from .urls import client_from_url

__all__ = ["RedisStore"]


class RedisStore:
    """:class:`~fastapi_authkit.stores.base.SessionStore` on redis-py's ``redis.asyncio``.

    Nothing is sent to Redis before the first call that needs it. That call first checks
    the server: a one-server client must not reach a Redis Cluster node, and the server must
    run with ``maxmemory-policy noeviction``. A deployment that does not fit makes every
    call fail closed with ``StoreUnavailableError`` (503) and logs the
    :class:`~fastapi_authkit.errors.ConfigurationError` once (for the eviction policy a
    :class:`~fastapi_authkit.errors.ServerSettingError`). :meth:`check` runs the same checks
    on demand, for an app's lifespan (docs: deployments/redis).

    Args:
        client: A ``redis.asyncio.Redis`` (one server, or ``Sentinel(...).master_for(name)``,
            which follows a failover) or a ``redis.asyncio.cluster.RedisCluster``. Give it a
            ``socket_timeout``: it bounds every call, so a slow Redis becomes a fast 503.
            :meth:`from_url` builds one from a URL.
        prefix: Starts every key (and the revocation channel's name).
        wait_replicas: After each rotation, revocation and new session, wait for this many
            replicas to confirm the write (``WAIT``); unconfirmed, the request answers 503.
        wait_timeout: How long that wait may take, in seconds (default: half the client's
            ``socket_timeout``, and it must be shorter than that).
        max_lag: Bounds how long (seconds) this process answers "live" from its own view of
            revocations without proof that the view is current: a revocation anywhere is
            refused here as soon as its message arrives (normally within a millisecond or
            two), and within ``max_lag`` even if messages stall. Heartbeats run every
            ``max_lag / 4``. On a cluster and with Sentinel too: a failover or any change of
            the primaries drops the view until it is current again, and so does data that
            changed identity (``FLUSHALL``, ``SWAPDB``:
            :mod:`~fastapi_authkit.stores.redis.epoch`).
        view_size: The view holds up to this many live and as many revoked families (0: no
            view; every request asks Redis).
    """

    known_active: Callable[[str, float], bool | None]

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        prefix: str = "authkit:",
        wait_replicas: int = 0,
        wait_timeout: float | None = None,
        max_lag: float = 0.1,
        view_size: int = 100_000,
    ) -> None:
        max_lag = seconds("max_lag", max_lag, positive=True)
        limit("view_size", view_size, minimum=0)
        self._topology = Topology(client)
        self._keys = keys = KeyLayout(prefix)
        self._sentinel: Sentinel | None = None
        self._gateway = gateway = Gateway(
            self._topology, wait_replicas=wait_replicas, wait_timeout=wait_timeout
        )
        # Tokens of the earlier layout exist only where that layout could be written.
        legacy = LegacyTokens(
            gateway, keys, enabled=self._topology.kind != "cluster" or keys.one_slot
        )
        subjects = SubjectSets(gateway, keys)
        self._channel = channel = f"{prefix}rev"
        self._view = view = RevocationView(max_lag=max_lag, size=view_size)
        self.known_active = view.lookup  # what this process's view knows
        self._subscriber = (
            RevocationSubscriber(view, self._topology.subscriptions(channel, keys.epoch()))
            if view_size
            else None
        )
        self._families = Families(gateway, keys, legacy, view, self._subscriber, channel=channel)
        self._revocations = Revocations(gateway, keys, legacy, subjects, view, channel=channel)
        self._sessions = SessionList(gateway, keys, legacy, subjects)
        self._flights = Flights(gateway, keys)
        self._throttles = Throttles(gateway, keys)

    @property
    def topology(self) -> Topology:
        """The deployment behind the client: its kind and its primaries."""
        return self._topology

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "authkit:",
        timeout: float = 0.5,
        wait_replicas: int = 0,
        wait_timeout: float | None = None,
        max_lag: float = 0.1,
        view_size: int = 100_000,
    ) -> RedisStore:
        """A store on a client built from ``url``, connected lazily.

        Args:
            url: ``redis://`` / ``rediss://`` / ``unix://`` (one server),
                ``redis+cluster://host:port[,host:port...]`` (a cluster, from any of its
                nodes), ``redis+sentinel://host[:port][,host[:port]...]/service[/db]`` (the
                primary the Sentinels name ``service``); see
                :mod:`~fastapi_authkit.stores.redis.urls`.
            timeout: Bounds each Redis call (connect and read), in seconds; one retry, no
                backoff: a slow Redis must turn into a fast 503.
            prefix: As for the constructor.
            wait_replicas: As for the constructor.
            wait_timeout: As for the constructor.
            max_lag: As for the constructor.
            view_size: As for the constructor.
        """
        client, sentinel = client_from_url(url, timeout=seconds("timeout", timeout, positive=True))
        store = cls(
            client,
            prefix=prefix,
            wait_replicas=wait_replicas,
            wait_timeout=wait_timeout,
            max_lag=max_lag,
            view_size=view_size,
        )
        store._sentinel = sentinel
        return store

    async def check(self) -> None:
        """Ask Redis now whether this store can use it, as its first call would: raises
        :class:`~fastapi_authkit.errors.ConfigurationError` for a deployment that does not
        fit the client (a ``redis://`` URL to a Redis Cluster node: use
        ``redis+cluster://``), :class:`~fastapi_authkit.errors.ServerSettingError` for a
        server that may evict keys, and :class:`~fastapi_authkit.errors.StoreUnavailableError`
        when Redis cannot be reached. Optional: await it in the app's lifespan to fail at
        start-up. Without it, the first call finds out, logs the error once and fails
        closed, so that every request needing the store answers 503."""
        await self._gateway.check()

    async def create_family(
        self,
        *,
        family_id: str,
        subject: str,
        token_id: str,
        now: float,
        idle_ttl: float,
        absolute_ttl: float,
        client: ClientInfo | None = None,
    ) -> None:
        await self._families.create(
            family_id=family_id,
            subject=subject,
            token_id=token_id,
            now=now,
            idle_ttl=idle_ttl,
            absolute_ttl=absolute_ttl,
            client=client,
        )

    async def rotate(
        self,
        token_id: str,
        *,
        family_id: str | None,
        now: float,
        grace: float,
        idle_ttl: float,
        successor_id: str | None,
        sealed: bytes | None,
        subject_hint: str | None = None,
        client: ClientInfo | None = None,
        late_replay: float = 0.0,
    ) -> RotateOutcome:
        return await self._families.rotate(
            token_id,
            family_id=family_id,
            now=now,
            grace=grace,
            idle_ttl=idle_ttl,
            successor_id=successor_id,
            sealed=sealed,
            subject_hint=subject_hint,
            client=client,
            late_replay=late_replay,
        )

    def watch_revocations(self) -> RevocationListeners:
        """Who is told of each revocation this process learns (by message, read or call)."""
        return self._view.listeners

    async def family_active(self, family_id: str, now: float) -> bool:
        return await self._families.active(family_id, now)

    async def revoke_token_family(self, token_id: str, *, family_id: str | None) -> str | None:
        return await self._revocations.by_token(token_id, family_id=family_id)

    async def revoke_subject(self, subject: str) -> int:
        return await self._revocations.of_subject(subject)

    async def sessions(self, subject: str, *, now: float) -> list[SessionInfo]:
        return await self._sessions.of(subject, now=now)

    async def revoke_family(self, family_id: str, *, subject: str) -> bool:
        return await self._revocations.family(family_id, subject=subject)

    async def flight_claim(self, key: str, owner: str, *, now: float, lease: float) -> FlightState:
        return await self._flights.claim(key, owner, now=now, lease=lease)

    async def flight_finish(
        self, key: str, owner: str, value: bytes, *, now: float, ttl: float, alias: str | None
    ) -> None:
        await self._flights.finish(key, owner, value, now=now, ttl=ttl, alias=alias)

    async def flight_release(self, key: str, owner: str) -> None:
        await self._flights.release(key, owner)

    async def flight_forget(self, alias: str) -> None:
        await self._flights.forget(alias)

    async def throttle_take(
        self, counters: Sequence[tuple[str, ThrottleRule]], *, now: float
    ) -> list[ThrottleState]:
        return await self._throttles.take(counters, now=now)

    async def throttle_give(self, counters: Sequence[tuple[str, bool]], *, now: float) -> None:
        await self._throttles.give(counters, now=now)

    async def aclose(self) -> None:
        if self._subscriber is not None:
            await self._subscriber.aclose()
        await self._topology.aclose()
        if self._sentinel is not None:
            # Sentinel.aclose() arrived in redis-py 8; before it, each Sentinel's client is
            # closed on its own.
            for client in self._sentinel.sentinels:
                await client.aclose()
