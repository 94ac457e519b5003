"""Shared state in Redis, for several workers or machines: one server, a primary managed by
Sentinel, or a Redis Cluster.

Install with ``pip install 'fastapi-authkit[redis]'``.

Every decision is one Lua script, so it is atomic in Redis: two workers rotating the same
refresh token at once see one ``rotated`` and one ``replay``, never two successors. Every
key a script touches is passed in KEYS and all of them are in one slot (the session
family's; see :mod:`~fastapi_authkit.stores.redis_keys`), so the scripts run unchanged on a
cluster. Times are passed in by the caller (the store's injected clock); Redis key expiry
is only a backstop that cleans up after them.

Replication is asynchronous: a write the primary acknowledged can be lost when it dies and
a replica is promoted. With ``wait_replicas=N`` every rotation, revocation and new session
is followed by ``WAIT N`` on the connection that wrote it; if fewer replicas confirm within
``wait_timeout``, the request gets :class:`~fastapi_authkit.errors.ReplicaConfirmationError`
(a store outage: 503, nothing cleared) and a rotation is undone, rather than a successor
being handed out that a failover may take back.

Every script that revokes a family PUBLISHes its id on ``{prefix}rev`` in the same script,
and each process keeps a view of live families current from that channel (see
:mod:`~fastapi_authkit.stores.subscriber`), so an authenticated request needs no round trip
while that view is provably current, and asks Redis whenever it is not. On a cluster the
view listens to every primary, with Sentinel to the primary every Sentinel names
(:meth:`~fastapi_authkit.stores.redis_topology.Topology.subscriptions`).

Any Redis error (down, slow past the client's ``socket_timeout``) becomes
:class:`~fastapi_authkit.errors.StoreUnavailableError`, on which the kit fails closed.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar, cast

from ..clientinfo import ClientInfo
from ..errors import (
    ConfigurationError,
    ReplicaConfirmationError,
    ServerSettingError,
    StoreUnavailableError,
)
from .base import (
    FlightState,
    RotateOutcome,
    RotateStatus,
    SessionInfo,
    ThrottleRule,
    ThrottleState,
)
from .listeners import RevocationListeners
from .redis_keys import KeyLayout
from .view import RevocationView

try:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.sentinel import Sentinel
    from redis.commands.core import AsyncScript
    from redis.exceptions import (
        AskError,
        MovedError,
        NoScriptError,
        RedisClusterException,
        RedisError,
        ResponseError,
    )

    from .eviction import EvictionPolicy
    from .redis_topology import Command, Topology
    from .redis_urls import client_from_url
    from .subscriber import RevocationSubscriber
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("RedisStore needs redis-py: pip install 'fastapi-authkit[redis]'") from exc

__all__ = ["RedisStore"]

logger = logging.getLogger("fastapi_authkit")

T = TypeVar("T")

# Real-time slack on every backstop expiry, beyond the logical expiry it protects.
_BACKSTOP_MS: Final = 60_000

# KEYS: family, token. A new family and its first refresh token.
_CREATE: Final = """
local now = tonumber(ARGV[3])
local abs = now + tonumber(ARGV[5])
local exp = math.min(now + tonumber(ARGV[4]), abs)
redis.call('HSET', KEYS[1], 'sub', ARGV[2], 'abs', tostring(abs), 'cur', ARGV[1], 'rev', '0')
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[5]) * 1000) + tonumber(ARGV[6]))
redis.call('HSET', KEYS[2], 'fam', ARGV[7], 'exp', tostring(exp))
redis.call('PEXPIRE', KEYS[2], math.ceil((exp - now) * 1000) + tonumber(ARGV[6]))
return 1
"""

# KEYS: subject. Remembers a family for "sign out everywhere" as long as it may live.
_ADD_TO_SUBJECT: Final = """
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""

# KEYS: token, family[, successor]. ARGV[7] = '1' (replicas are waited for): a replay also
# writes, so that the WAIT behind it covers the rotation it repeats. ARGV[8]: the revocation
# channel; ARGV[9]: whom the offered successor was minted for ('' when not said); ARGV[10]:
# the token's id; ARGV[11]: the late-replay window. The live outcomes answer with the
# family's absolute expiry, for the processes' views. The immediate predecessor of an unused
# successor replays it within the grace window, and once later up to the late-replay window
# (its holder may never have received it: a reply lost, a client gone), the family's 'dup'
# naming the successor so handed out twice, which cannot replay late itself. Both windows
# count from the rotation ('rat'); after them a rotated-out token is reuse.
_ROTATE: Final = """
local now = tonumber(ARGV[1])
local grace, idle, backstop = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[6])
local window = tonumber(ARGV[11])
local r = redis.call('HMGET', KEYS[1], 'fam', 'exp', 'rat', 'succ', 'sealed')
if not r[1] or tonumber(r[2]) <= now then return {'unknown'} end
local f = redis.call('HMGET', KEYS[2], 'sub', 'abs', 'cur', 'rev', 'dup')
if not f[1] then return {'unknown'} end
if f[4] == '1' then return {'revoked', r[1], f[1]} end
if now >= tonumber(f[2]) then
  redis.call('HSET', KEYS[2], 'rev', '1')
  redis.call('PUBLISH', ARGV[8], r[1])
  return {'expired', r[1], f[1]}
end
if not r[3] then
  if ARGV[4] == '' or (ARGV[9] ~= '' and ARGV[9] ~= f[1]) then
    return {'active', r[1], f[1], '', f[2]}
  end
  local keep = math.max(tonumber(r[2]), now + grace, now + window)
  redis.call('HSET', KEYS[1], 'rat', ARGV[1], 'succ', ARGV[4], 'sealed', ARGV[5],
             'exp', tostring(keep))
  redis.call('PEXPIRE', KEYS[1], math.ceil((keep - now) * 1000) + backstop)
  local newexp = math.min(now + idle, tonumber(f[2]))
  redis.call('HSET', KEYS[3], 'fam', r[1], 'exp', tostring(newexp))
  redis.call('PEXPIRE', KEYS[3], math.ceil((newexp - now) * 1000) + backstop)
  redis.call('HSET', KEYS[2], 'cur', ARGV[4])
  return {'rotated', r[1], f[1], '', f[2]}
end
local age = now - tonumber(r[3])
local late = age > grace
if f[3] == r[4] and (not late or (age <= window and f[5] ~= ARGV[10])) then
  if late then redis.call('HSET', KEYS[2], 'dup', r[4]) end
  if ARGV[7] == '1' then redis.call('HSET', KEYS[1], 'rep', ARGV[1]) end
  return {'replay', r[1], f[1], r[5], f[2]}
end
redis.call('HSET', KEYS[2], 'rev', '1')
redis.call('PUBLISH', ARGV[8], r[1])
return {'reuse', r[1], f[1]}
"""

# KEYS: token, family, successor. Undoes a rotation the replicas did not confirm, unless
# the family has moved on since.
_UNROTATE: Final = """
if redis.call('HGET', KEYS[1], 'succ') ~= ARGV[2] then return 0 end
if redis.call('HGET', KEYS[2], 'cur') ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], 'rat', 'succ', 'sealed')
redis.call('DEL', KEYS[3])
redis.call('HSET', KEYS[2], 'cur', ARGV[1])
return 1
"""

# KEYS: family[, token: only if this refresh token exists]. ARGV: confirm, family id, the
# revocation channel. 1 revoked now, 0 already, -1 no such family, -2 no such token (its
# family exists: the token may be forged to name someone else's family, so nothing is
# done). ARGV[1] = '1': an earlier revocation is written again, so that the WAIT behind it
# covers it. A family the store does not hold (flushed, swapped, evicted, expired) is not
# live here, but a process's view may have learned it live before it vanished: its
# revocation is published all the same.
_REVOKE: Final = """
local rev = redis.call('HGET', KEYS[1], 'rev')
if not rev then
  redis.call('PUBLISH', ARGV[3], ARGV[2])
  return -1
end
if KEYS[2] and redis.call('EXISTS', KEYS[2]) == 0 then return -2 end
if rev == '0' then
  redis.call('HSET', KEYS[1], 'rev', '1')
  redis.call('PUBLISH', ARGV[3], ARGV[2])
  return 1
end
if ARGV[1] == '1' then redis.call('HSET', KEYS[1], 'rev', '1') end
return 0
"""

# KEYS: family, session record. ARGV: the offered successor's id, now, user agent, address,
# backstop. Sent right behind _ROTATE in the same pipeline (same slot, same connection), so
# recording a refresh costs no round trip and _ROTATE stays as it is: it records only if
# that rotation made the offered successor current, so a replay, a refused or a forged
# refresh (a junk token naming someone's family) writes nothing.
_RECORD_REFRESH: Final = """
local f = redis.call('HMGET', KEYS[1], 'cur', 'rev', 'abs')
if f[1] ~= ARGV[1] or f[2] ~= '0' then return 0 end
redis.call('HSET', KEYS[2], 't', ARGV[2], 'ua', ARGV[3], 'ip', ARGV[4])
local ttl = math.ceil((tonumber(f[3]) - tonumber(ARGV[2])) * 1000)
redis.call('PEXPIRE', KEYS[2], math.max(ttl, 1) + tonumber(ARGV[5]))
return 1
"""

_FLIGHT_CLAIM: Final = """
local x = redis.call('HGET', KEYS[1], 'x')
if x and tonumber(x) > tonumber(ARGV[2]) then return redis.call('HGET', KEYS[1], 'v') end
redis.call('DEL', KEYS[1])
local expires = tostring(tonumber(ARGV[2]) + tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'v', 'P:' .. ARGV[1], 'x', expires)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return false
"""

_FLIGHT_FINISH: Final = """
if redis.call('HGET', KEYS[1], 'v') ~= 'P:' .. ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'x', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

_FLIGHT_RELEASE: Final = """
if redis.call('HGET', KEYS[1], 'v') == 'P:' .. ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

# A published result only: a claim still pending belongs to a refresh in progress.
_FLIGHT_DROP: Final = """
local v = redis.call('HGET', KEYS[1], 'v')
if v and string.sub(v, 1, 2) ~= 'P:' then redis.call('DEL', KEYS[1]) end
return 1
"""

# KEYS: a login-guard counter. ARGV: now, limit, base delay, max delay, forget after (s),
# backstop (ms). Refused while locked (nothing counted); else one more attempt, and the one
# reaching the limit, or let in after a lock ran out, locks for base * 2^(n - limit), at
# most max. 'x' is when the counter is forgotten, by the caller's clock (the key's own
# expiry is the backstop behind it). Answers {allowed, count, locked until, locked now};
# times as strings (a Lua number in a reply is cut to an integer).
_THROTTLE_TAKE: Final = """
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local r = redis.call('HMGET', KEYS[1], 'n', 'u', 'x')
local n = tonumber(r[1]) or 0
local u = tonumber(r[2]) or 0
if (tonumber(r[3]) or 0) <= now then n, u = 0, 0 end
if u > now then return {0, n, tostring(u), 0} end
n = n + 1
local locked = 0
u = 0
if n >= limit then
  u = now + math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ math.min(n - limit, 64))
  locked = 1
end
local x = math.max(u, now) + tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'n', n, 'u', tostring(u), 'l', limit, 'x', tostring(x))
redis.call('PEXPIRE', KEYS[1], math.ceil((x - now) * 1000) + tonumber(ARGV[6]))
return {1, n, tostring(u), locked}
"""

# KEYS: a login-guard counter. ARGV: '1' to drop it, else one attempt fewer (and no lock
# below the limit); now. HSET keeps the key's expiry.
_THROTTLE_GIVE: Final = """
local r = redis.call('HMGET', KEYS[1], 'n', 'l', 'x')
local n = tonumber(r[1])
if ARGV[1] == '1' or (n and (tonumber(r[3]) or 0) <= tonumber(ARGV[2])) then
  redis.call('DEL', KEYS[1])
  return 1
end
if not n then return 0 end
n = math.max(n - 1, 0)
if n < (tonumber(r[2]) or 0) then
  redis.call('HSET', KEYS[1], 'n', n, 'u', '0')
else
  redis.call('HSET', KEYS[1], 'n', n)
end
return 1
"""

# The outcomes that hand out or take away a session: with wait_replicas, confirmed.
_CONFIRMED: Final = frozenset({"rotated", "replay", "expired", "reuse"})
# Families read per pipeline when listing a subject's sessions.
_LIST_BATCH: Final = 256


def _ms(seconds: float) -> int:
    return math.ceil(seconds * 1000) + _BACKSTOP_MS


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _client_fields(client: ClientInfo | None) -> tuple[str, str]:
    # "" for unknown: a hash field holds a string.
    if client is None:
        return "", ""
    return client.user_agent or "", client.ip or ""


def _number(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, b"") else None
    except ValueError:
        return None


def _redirected(error: BaseException) -> bool:
    """Whether Redis answered with a cluster redirection (MOVED or ASK): redis-py raises
    MovedError/AskError, before 6 a plain ResponseError naming it."""
    if isinstance(error, (MovedError, AskError)):
        return True
    return (
        isinstance(error, ResponseError) and re.match(r"(MOVED|ASK) \d+ ", str(error)) is not None
    )


class RedisStore:
    """:class:`~fastapi_authkit.stores.base.SessionStore` on redis-py's ``redis.asyncio``.

    ``client``: a ``redis.asyncio.Redis`` (one server, or ``Sentinel(...).master_for(name)``,
    which follows a failover) or a ``redis.asyncio.cluster.RedisCluster``. Give it a
    ``socket_timeout``: it bounds every call, so a slow Redis becomes a fast 503.
    ``prefix`` starts every key. ``wait_replicas``: after each rotation, revocation and
    new session, wait for this many replicas to confirm the write (``WAIT``), at most
    ``wait_timeout`` seconds (default: half the client's ``socket_timeout``, and it must be
    shorter than that).

    ``max_lag`` (seconds) bounds how long this process answers "live" from its own view of
    revocations without proof that the view is current: a revocation anywhere is refused
    here as soon as its message arrives (normally within a millisecond or two), and within
    ``max_lag`` even if messages stall. Heartbeats run every ``max_lag / 4``. The view
    holds up to ``view_size`` live and as many revoked families (0: no view). On a cluster
    and with Sentinel too: a failover or any change of the primaries drops the view until
    it is current again, and so does data that changed identity (``FLUSHALL``,
    ``SWAPDB``: :mod:`~fastapi_authkit.stores.epoch`).

    Nothing is sent to Redis before the first call that needs it. That call first checks
    the server: a one-server client must not reach a Redis Cluster node, and the server must
    run with ``maxmemory-policy noeviction``. A deployment that does not fit makes every
    call fail closed with ``StoreUnavailableError`` (503) and logs the
    :class:`~fastapi_authkit.errors.ConfigurationError` once (for the eviction policy a
    :class:`~fastapi_authkit.errors.ServerSettingError`). :meth:`check` runs the same checks
    on demand, for an app's lifespan (docs: deployments/redis).
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
        if (
            not isinstance(max_lag, int | float)
            or isinstance(max_lag, bool)
            or not 0 < max_lag < math.inf
        ):
            raise ConfigurationError(f"max_lag must be a positive number of seconds: {max_lag!r}")
        if not isinstance(view_size, int) or isinstance(view_size, bool) or view_size < 0:
            raise ConfigurationError("view_size must be a non-negative int")
        self._topology = Topology(client)
        # Whether the deployment fits the client (Topology.check), asked by the first call
        # that reaches Redis: from_url and the constructor do no I/O. Once it does not fit,
        # _unusable says why and every call fails closed without asking Redis again.
        self._checked = False
        self._unusable: ConfigurationError | None = None
        self._keys = KeyLayout(prefix)
        self._redis = client
        self._sentinel: Sentinel | None = None
        # Tokens of the earlier layout exist only where that layout could be written:
        # one server, or a cluster whose prefix pins one slot.
        self._legacy = self._topology.kind != "cluster" or self._keys.one_slot
        self._wait, self._wait_timeout = self._check_wait(wait_replicas, wait_timeout)
        self._wait_ms = math.ceil(self._wait_timeout * 1000)
        self._flag = "1" if self._wait else "0"
        self._create = client.register_script(_CREATE)
        self._add_to_subject = client.register_script(_ADD_TO_SUBJECT)
        self._rotate = client.register_script(_ROTATE)
        self._unrotate = client.register_script(_UNROTATE)
        self._revoke = client.register_script(_REVOKE)
        self._claim = client.register_script(_FLIGHT_CLAIM)
        self._finish = client.register_script(_FLIGHT_FINISH)
        self._release = client.register_script(_FLIGHT_RELEASE)
        self._drop = client.register_script(_FLIGHT_DROP)
        self._record_refresh = client.register_script(_RECORD_REFRESH)
        self._throttle_take = client.register_script(_THROTTLE_TAKE)
        self._throttle_give = client.register_script(_THROTTLE_GIVE)
        self._channel = f"{prefix}rev"
        self._view = RevocationView(max_lag=float(max_lag), size=view_size)
        self.known_active = self._view.lookup  # the hot path: no wrapper frame
        self._subscriber = (
            RevocationSubscriber(
                self._view, self._topology.subscriptions(self._channel, self._keys.epoch())
            )
            if view_size
            else None
        )
        # Read before the first command: a server that may evict keys is refused.
        self._eviction = EvictionPolicy(self._topology.primaries)

    def _check_wait(self, replicas: object, timeout: object) -> tuple[int, float]:
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise ConfigurationError(f"wait_replicas must be an int >= 0, got {replicas!r}")
        socket_timeout = self._topology.socket_timeout()
        if timeout is None:
            timeout = socket_timeout / 2 if socket_timeout else 0.25
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not 0 < timeout < math.inf
        ):
            raise ConfigurationError(f"wait_timeout must be a positive number, got {timeout!r}")
        if replicas and socket_timeout is not None and timeout >= socket_timeout:
            # WAIT answers only after its timeout; the read would give up first.
            raise ConfigurationError(
                f"wait_timeout ({timeout}s) must be shorter than the client's "
                f"socket_timeout ({socket_timeout}s)"
            )
        return replicas, float(timeout)

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
        """Connect lazily to ``url``: ``redis://`` / ``rediss://`` / ``unix://`` (one
        server), ``redis+cluster://host:port[,host:port...]`` (a cluster, from any of its
        nodes), ``redis+sentinel://host[:port][,host[:port]...]/service[/db]`` (the
        primary the Sentinels name ``service``); see
        :mod:`~fastapi_authkit.stores.redis_urls`. ``timeout`` bounds each Redis call
        (connect and read); one retry, no backoff: a slow Redis must turn into a fast
        503. The other options are the constructor's."""
        seconds = timeout
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds <= 0:
            raise ConfigurationError(f"timeout must be a positive number, got {timeout!r}")
        client, sentinel = client_from_url(url, timeout=float(seconds))
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

    def _listen(self) -> None:
        """Keep the view's subscription running (started on the first call that asks Redis,
        on the running event loop; restarted if its task died)."""
        if self._subscriber is not None:
            self._subscriber.ensure_running()

    async def check(self) -> None:
        """Ask Redis now whether this store can use it, as its first call would: raises
        :class:`~fastapi_authkit.errors.ConfigurationError` for a deployment that does not
        fit the client (a ``redis://`` URL to a Redis Cluster node: use
        ``redis+cluster://``), :class:`~fastapi_authkit.errors.ServerSettingError` for a
        server that may evict keys, and :class:`~fastapi_authkit.errors.StoreUnavailableError`
        when Redis cannot be reached. Optional: await it in the app's lifespan to fail at
        start-up. Without it, the first call finds out, logs the error once and fails
        closed, so that every request needing the store answers 503."""
        try:
            await self._ensure_checked()
        except ServerSettingError:
            raise
        except StoreUnavailableError:
            if self._unusable is None:
                raise
            raise ConfigurationError(str(self._unusable)) from None

    async def _ensure_checked(self) -> None:
        """The server checks of the first call: the deployment once, the eviction policy
        until it is known to be ``noeviction`` (while refused, at most once a second)."""
        if self._unusable is not None:
            raise self._refuse(self._unusable) from self._unusable
        try:
            if not self._checked:
                await self._topology.check()
                await self._check_replica_count()
                self._checked = True
            await self._eviction.check()
        except ServerSettingError:
            raise  # a store outage already (503), logged by the check; not for good
        except ConfigurationError as exc:
            raise self._refuse(exc) from exc
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
        info = await self._redis.info("replication")
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

    def _refuse(self, error: ConfigurationError) -> StoreUnavailableError:
        """The store outage for an unusable deployment: a 503 to users, nothing cleared,
        for as long as the process runs; the operator's error logged the first time."""
        if self._unusable is None:
            self._unusable = error
            self._checked = False
            logger.error("RedisStore cannot work: %s", error)
        return StoreUnavailableError(f"Redis unusable as configured: {error}")

    async def _call(self, awaitable: Awaitable[T]) -> T:
        if not (self._checked and self._eviction.ok):
            try:
                await self._ensure_checked()
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
                raise self._refuse(error) from error
            # RedisClusterException (no node for a slot, cluster not ready) is not a
            # RedisError, but it is the same outage.
            raise StoreUnavailableError(f"Redis unavailable: {exc}") from exc

    def _eval(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Command:
        return Command(("EVAL", script.script, len(keys), *keys, *args), keys[0])

    def _evalsha(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Command:
        return Command(("EVALSHA", script.sha, len(keys), *keys, *args), keys[0])

    async def _run(self, commands: list[Command], *, confirm: bool) -> tuple[list[Any], int]:
        wait = self._wait if confirm else 0
        return await self._call(
            self._topology.run(commands, wait_replicas=wait, wait_ms=self._wait_ms)
        )

    async def _script(
        self, script: AsyncScript, keys: list[str], args: list[Any]
    ) -> tuple[Any, int]:
        """One script; with ``wait_replicas``, pipelined with its WAIT. Returns the reply
        and how many replicas confirmed."""
        if not self._wait:
            return await self._call(script(keys=keys, args=args)), 0
        (reply,), acked = await self._run([self._eval(script, keys, args)], confirm=True)
        return reply, acked

    def _unconfirmed(self, operation: str, acked: int) -> ReplicaConfirmationError:
        return ReplicaConfirmationError(operation, self._wait, acked, self._wait_timeout)

    async def _legacy_family(self, token_id: str) -> str | None:
        """The family of a refresh token written by the earlier layout, if there is one."""
        if not self._legacy:
            return None
        found = await self._call(self._redis.hget(self._keys.legacy_token(token_id), "fam"))
        return _text(found)

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
        k = self._keys
        # Two slots, one pipeline per node. Listed under the subject first: a family that
        # "sign out everywhere" could miss must never get a token (an error in either
        # write fails the sign-in, so no token is handed out).
        args: list[Any] = [
            token_id,
            subject,
            repr(now),
            repr(idle_ttl),
            repr(absolute_ttl),
            _BACKSTOP_MS,
            family_id,
        ]
        user_agent, ip = _client_fields(client)
        record = k.session(family_id)
        commands = [
            self._eval(self._add_to_subject, [k.subject(subject)], [family_id, _ms(absolute_ttl)]),
            self._eval(self._create, [k.family(family_id), k.token(family_id, token_id)], args),
            # The session record, in the family's slot: for the subject's list of sessions.
            Command(("HSET", record, "c", repr(now), "ua0", user_agent, "ip0", ip), record),
            Command(("PEXPIRE", record, _ms(absolute_ttl)), record),
        ]
        self._listen()
        ticket = self._view.ticket()
        _, acked = await self._run(commands, confirm=True)
        if acked < self._wait:
            raise self._unconfirmed("sign-in", acked)
        # Live until its absolute expiry, unless a revocation says otherwise: the session's
        # first requests need no round trip either.
        self._view.learn(family_id, now + absolute_ttl, ticket)

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
        k = self._keys
        if family_id is None:
            family_id = await self._legacy_family(token_id)
            if family_id is None:
                return RotateOutcome("unknown")
            token_key = k.legacy_token(token_id)
        else:
            token_key = k.token(family_id, token_id)
        keys = [token_key, k.family(family_id)]
        if successor_id:
            keys.append(k.token(family_id, successor_id))
        args: list[Any] = [
            repr(now),
            repr(grace),
            repr(idle_ttl),
            successor_id or "",
            sealed or b"",
            _BACKSTOP_MS,
            self._flag,
            self._channel,
            subject_hint or "",
            token_id,
            repr(late_replay),
        ]
        self._listen()
        ticket = self._view.ticket()
        if successor_id and client is not None:
            user_agent, ip = _client_fields(client)
            record = [k.family(family_id), k.session(family_id)]
            record_args = [successor_id, repr(now), user_agent, ip, _BACKSTOP_MS]
            reply, acked = await self._rotate_and_record(keys, args, record, record_args)
        else:
            reply, acked = await self._script(self._rotate, keys, args)
        status = cast(RotateStatus, _text(reply[0]))
        if status in _CONFIRMED and acked < self._wait:
            error = self._unconfirmed(f"refresh ({status})", acked)
            if status == "rotated" and successor_id:
                await self._undo_rotation(keys, token_id, successor_id, error)
            raise error
        family = _text(reply[1]) if len(reply) > 1 else None
        subject = _text(reply[2]) if len(reply) > 2 else None
        blob = (reply[3] or None) if len(reply) > 3 else None
        absolute = float(reply[4]) if len(reply) > 4 else None
        if family is not None:
            # The script just saw the family: live (with its absolute expiry) or not.
            self._view.learn(family, absolute, ticket)
        return RotateOutcome(status, family, subject, blob, absolute)

    async def _rotate_and_record(
        self, keys: list[str], args: list[Any], record: list[str], record_args: list[Any]
    ) -> tuple[Any, int]:
        """_ROTATE and, right behind it in one pipeline (one round trip: the keys share a
        slot), _RECORD_REFRESH; with wait_replicas, the WAIT after both."""
        wait = self._wait
        recording = self._eval(self._record_refresh, record, record_args)

        async def run(rotation: Command) -> tuple[list[Any], int]:
            return await self._topology.run(
                [rotation, recording], wait_replicas=wait, wait_ms=self._wait_ms
            )

        async def attempt() -> tuple[list[Any], int]:
            # The rotation by its SHA, as a lone script call would be; a server that does
            # not hold it (restarted, SCRIPT FLUSH) refused it unrun, and the recording
            # behind it found no successor of its own to record: resent with the text.
            try:
                return await run(self._evalsha(self._rotate, keys, args))
            except NoScriptError:
                return await run(self._eval(self._rotate, keys, args))

        (reply, _), acked = await self._call(attempt())
        return reply, acked

    async def _undo_rotation(
        self, keys: list[str], token_id: str, successor_id: str, error: Exception
    ) -> None:
        # The successor was never handed out (this request gets a 503, and concurrent
        # requests with the same token wait on this one's refresh flight), so the presented
        # token becomes current again and a retry rotates it anew. Without the undo the
        # retry would find the token rotated out, and after the grace window take it for
        # theft. If the primary is gone, whatever reached the replica stands.
        try:
            await self._call(self._unrotate(keys=keys, args=[token_id, successor_id]))
        except StoreUnavailableError as exc:
            logger.error("unconfirmed rotation could not be undone (%s): %s", error, exc)

    def watch_revocations(self) -> RevocationListeners:
        """Who is told of each revocation this process learns (by message, read or call)."""
        return self._view.listeners

    async def family_active(self, family_id: str, now: float) -> bool:
        self._listen()
        ticket = self._view.ticket()
        rev, absolute = await self._call(
            self._redis.hmget(self._keys.family(family_id), "rev", "abs")
        )
        until = float(absolute) if rev == b"0" and absolute is not None else None
        if until is not None and now >= until:
            until = None
        self._view.learn(family_id, until, ticket)
        return until is not None

    async def revoke_token_family(self, token_id: str, *, family_id: str | None) -> str | None:
        k = self._keys
        if family_id is None:
            family_id = await self._legacy_family(token_id)
            if family_id is None:
                return None
            token_key = k.legacy_token(token_id)
        else:
            token_key = k.token(family_id, token_id)
        reply, acked = await self._script(
            self._revoke, [k.family(family_id), token_key], [self._flag, family_id, self._channel]
        )
        if reply == -2:
            return None
        # This process refuses it now, not on the echo: also a family the store no longer
        # held (-1), which other processes' views may still hold live (published too).
        self._view.revoked((family_id,))
        if acked < self._wait:
            raise self._unconfirmed("sign-out", acked)
        return None if reply == -1 else family_id

    async def revoke_subject(self, subject: str) -> int:
        k = self._keys
        members = await self._call(self._redis.smembers(k.subject(subject)))
        families = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        if not families:
            return 0
        # The families live in many slots: each is revoked in its own (one pipeline per
        # node). A session started meanwhile may or may not be included, as if it had
        # started just before or just after.
        commands = [
            self._eval(self._revoke, [k.family(f)], [self._flag, f, self._channel])
            for f in families
        ]
        replies, acked = await self._run(commands, confirm=True)
        self._view.revoked(families)  # every one: also those the store no longer held (-1)
        if acked < self._wait:
            raise self._unconfirmed("sign-out everywhere", acked)
        gone = [f for f, reply in zip(families, replies, strict=True) if reply == -1]
        if gone:  # expired families: nothing left to revoke, so forget them
            await self._call(self._redis.srem(k.subject(subject), *gone))
        return sum(1 for reply in replies if reply == 1)

    async def sessions(self, subject: str, *, now: float) -> list[SessionInfo]:
        k = self._keys
        members = await self._call(self._redis.smembers(k.subject(subject)))
        families = sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)
        found: list[SessionInfo] = []
        revoked: list[str] = []
        for start in range(0, len(families), _LIST_BATCH):
            batch = families[start : start + _LIST_BATCH]
            found += await self._sessions_of(subject, batch, now, revoked)
        if revoked:
            # Revocation is for good: no list or "sign out everywhere" needs them again.
            # (A family not found is not dropped: it may be one being signed in right now,
            # listed under its subject a moment before its own record is written.)
            await self._call(self._redis.srem(k.subject(subject), *revoked))
        return found

    async def _sessions_of(
        self, subject: str, families: list[str], now: float, revoked: list[str]
    ) -> list[SessionInfo]:
        """The live sessions among ``families`` (a batch of ``subject``'s set): their family
        and session records, then the current refresh token of each that is still live
        (its expiry is the session's idle expiry), one pipeline per node each."""
        k = self._keys
        commands = []
        for family in families:
            family_key, record = k.family(family), k.session(family)
            commands.append(Command(("HMGET", family_key, "sub", "rev", "abs", "cur"), family_key))
            commands.append(Command(("HMGET", record, "c", "t", "ua", "ip", "ua0", "ip0"), record))
        replies, _ = await self._run(commands, confirm=False)
        live: list[tuple[str, float, str, list[Any]]] = []
        for i, family in enumerate(families):
            sub, rev, absolute, current = (_text(v) for v in replies[2 * i])
            until = _number(absolute)
            if rev == "1":
                revoked.append(family)
            elif sub == subject and rev == "0" and until is not None and now < until and current:
                live.append((family, until, current, replies[2 * i + 1]))
        if not live:
            return []
        tokens = []
        for family, _until, current, _record in live:
            key = k.token(family, current)
            tokens.append(Command(("HGET", key, "exp"), key))
            if self._legacy:  # a session not refreshed since the earlier layout
                legacy = k.legacy_token(current)
                tokens.append(Command(("HGET", legacy, "exp"), legacy))
        expiries, _ = await self._run(tokens, confirm=False)
        step = 2 if self._legacy else 1
        found = []
        for i, (family, until, _current, fields) in enumerate(live):
            idle = next(
                (e for e in map(_number, expiries[step * i : step * i + step]) if e is not None),
                None,
            )
            if idle is None or now >= idle:
                continue  # idle for too long: ended, though nobody has revoked it yet
            created, refreshed, user_agent, ip, signed_in_ua, signed_in_ip = (
                _text(v) or None for v in fields
            )
            found.append(
                SessionInfo(
                    id=family,
                    created_at=_number(created),
                    refreshed_at=_number(refreshed),
                    expires_at=min(idle, until),
                    user_agent=user_agent if refreshed else signed_in_ua,
                    ip=ip if refreshed else signed_in_ip,
                    signed_in_user_agent=signed_in_ua,
                    signed_in_ip=signed_in_ip,
                )
            )
        return found

    async def revoke_family(self, family_id: str, *, subject: str) -> bool:
        k = self._keys
        # The subject of a family never changes (its id is random and never reused), so
        # reading it first and revoking after leaves no window that matters.
        owner = _text(await self._call(self._redis.hget(k.family(family_id), "sub")))
        if owner is not None and owner != subject:
            return False
        # Also when the store holds no such family: revoked everywhere all the same (the
        # script publishes it), as a view may have learned it live before it vanished.
        reply, acked = await self._script(
            self._revoke, [k.family(family_id)], [self._flag, family_id, self._channel]
        )
        self._view.revoked((family_id,))  # this process refuses it now, not on the echo
        if acked < self._wait:
            raise self._unconfirmed("revoking a session", acked)
        return bool(reply == 1)

    async def flight_claim(self, key: str, owner: str, *, now: float, lease: float) -> FlightState:
        reply = await self._call(
            self._claim(
                keys=[self._keys.flight(key)], args=[owner, repr(now), repr(lease), _ms(lease)]
            )
        )
        if reply is None:
            return FlightState("claimed")
        if reply.startswith(b"P:"):
            return FlightState("pending")
        return FlightState("done", reply)

    async def flight_finish(
        self, key: str, owner: str, value: bytes, *, now: float, ttl: float, alias: str | None
    ) -> None:
        flight_key = self._keys.flight(key)
        args: list[Any] = [owner, value, repr(now + ttl), _ms(ttl)]
        if alias is None:
            await self._call(self._finish(keys=[flight_key], args=args))
            return
        # The alias is in another slot, so it is its own command, sent first: a sign-out
        # that finds it drops the result whenever that is published (see flight_forget).
        alias_key = self._keys.alias(alias)
        link = Command(("SET", alias_key, flight_key, "PX", _ms(ttl)), alias_key)
        await self._run([link, self._eval(self._finish, [flight_key], args)], confirm=False)

    async def flight_release(self, key: str, owner: str) -> None:
        await self._call(self._release(keys=[self._keys.flight(key)], args=[owner]))

    async def flight_forget(self, alias: str) -> None:
        alias_key = self._keys.alias(alias)
        found = _text(await self._call(self._redis.get(alias_key)))
        if found is None:
            return
        commands = [Command(("DEL", alias_key), alias_key)]
        # Only a flight key of this store's (the value is data read back from Redis).
        if found.startswith(self._keys.flight("")):
            commands.append(self._eval(self._drop, [found], []))
        await self._run(commands, confirm=False)

    async def throttle_take(
        self, counters: Sequence[tuple[str, ThrottleRule]], *, now: float
    ) -> list[ThrottleState]:
        # One script per counter (each its own key, so its own slot), one pipeline per
        # node. The text is sent (EVAL), not the SHA: a pipeline cannot fall back from a
        # NOSCRIPT, and these scripts are small.
        commands = [
            self._eval(
                self._throttle_take,
                [self._keys.throttle(name)],
                [
                    repr(now),
                    rule.limit,
                    repr(rule.base_delay),
                    repr(rule.max_delay),
                    repr(rule.forget_after),
                    _BACKSTOP_MS,
                ],
            )
            for name, rule in counters
        ]
        replies, _ = await self._run(commands, confirm=False)
        return [
            ThrottleState(bool(allowed), int(count), float(until), bool(locked))
            for allowed, count, until, locked in replies
        ]

    async def throttle_give(self, counters: Sequence[tuple[str, bool]], *, now: float) -> None:
        commands = [
            self._eval(
                self._throttle_give, [self._keys.throttle(name)], ["1" if reset else "0", repr(now)]
            )
            for name, reset in counters
        ]
        await self._run(commands, confirm=False)

    async def aclose(self) -> None:
        if self._subscriber is not None:
            await self._subscriber.aclose()
        await self._topology.aclose()
        if self._sentinel is not None:
            # Sentinel.aclose() arrived in redis-py 8; before it, each Sentinel's client is
            # closed on its own.
            for client in self._sentinel.sentinels:
                await client.aclose()
