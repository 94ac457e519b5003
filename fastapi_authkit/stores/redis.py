"""Shared state in Redis, for several workers or machines.

Install with ``pip install 'fastapi-authkit[redis]'``.

Every decision is one Lua script, so it is atomic in Redis: two workers rotating the same
refresh token at once see one ``rotated`` and one ``replay``, never two successors. Times
are passed in by the caller (the store's injected clock); Redis key expiry is only a
backstop that cleans up after them.

Keys (``prefix`` defaults to ``authkit:``)::

    {prefix}rt:{token id}   hash  fam, exp, rat (rotated at), succ, sealed
    {prefix}fam:{family}    hash  sub, abs (absolute expiry), cur (current token id), rev
    {prefix}sub:{subject}   set   family ids, for "sign out everywhere"
    {prefix}fl:{flight}     hash  v (P:<owner> or the sealed result), x (expires at)
    {prefix}fla:{alias}     str   the flight key a successor's result is stored under

Channel ``{prefix}rev``: every script that revokes a family PUBLISHes its id there in the
same script, and each process keeps a view of live families current from it (see
:mod:`~fastapi_authkit.stores.subscriber`), so an authenticated request needs no round trip
while that view is provably current, and asks Redis whenever it is not.

Any Redis error (down, slow past ``socket_timeout``) becomes
:class:`~fastapi_authkit.errors.StoreUnavailableError`, on which the kit fails closed.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar, cast

from ..errors import ConfigurationError, StoreUnavailableError
from .base import FlightState, RotateOutcome, RotateStatus
from .view import RevocationView

try:
    from redis.asyncio import Redis
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("RedisStore needs redis-py: pip install 'fastapi-authkit[redis]'") from exc

from .subscriber import RevocationSubscriber, node_subscription

__all__ = ["RedisStore"]

T = TypeVar("T")

# Real-time slack on every backstop expiry, beyond the logical expiry it protects.
_BACKSTOP_MS: Final = 60_000

_CREATE: Final = """
local now = tonumber(ARGV[3])
local abs = now + tonumber(ARGV[5])
local exp = math.min(now + tonumber(ARGV[4]), abs)
redis.call('HSET', KEYS[1], 'sub', ARGV[2], 'abs', tostring(abs), 'cur', ARGV[1], 'rev', '0')
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[5]) * 1000) + tonumber(ARGV[6]))
redis.call('HSET', KEYS[2], 'fam', ARGV[7], 'exp', tostring(exp))
redis.call('PEXPIRE', KEYS[2], math.ceil((exp - now) * 1000) + tonumber(ARGV[6]))
redis.call('SADD', KEYS[3], ARGV[7])
local ttl = redis.call('PTTL', KEYS[3])
local want = math.ceil(tonumber(ARGV[5]) * 1000) + tonumber(ARGV[6])
if ttl < want then redis.call('PEXPIRE', KEYS[3], want) end
return 1
"""

_ROTATE: Final = """
local p, now = ARGV[1], tonumber(ARGV[2])
local grace, idle, backstop = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[7])
local r = redis.call('HMGET', KEYS[1], 'fam', 'exp', 'rat', 'succ', 'sealed')
if not r[1] or tonumber(r[2]) <= now then return {'unknown'} end
local famkey = p .. 'fam:' .. r[1]
local f = redis.call('HMGET', famkey, 'sub', 'abs', 'cur', 'rev')
if not f[1] then return {'unknown'} end
if f[4] == '1' then return {'revoked', r[1], f[1]} end
if now >= tonumber(f[2]) then
  redis.call('HSET', famkey, 'rev', '1')
  redis.call('PUBLISH', ARGV[8], r[1])
  return {'expired', r[1], f[1]}
end
if not r[3] then
  if ARGV[5] == '' or (ARGV[9] ~= '' and (ARGV[9] ~= r[1] or ARGV[10] ~= f[1])) then
    return {'active', r[1], f[1], '', f[2]}
  end
  local keep = math.max(tonumber(r[2]), now + grace)
  redis.call('HSET', KEYS[1], 'rat', ARGV[2], 'succ', ARGV[5], 'sealed', ARGV[6],
             'exp', tostring(keep))
  redis.call('PEXPIRE', KEYS[1], math.ceil((keep - now) * 1000) + backstop)
  local newexp = math.min(now + idle, tonumber(f[2]))
  local newkey = p .. 'rt:' .. ARGV[5]
  redis.call('HSET', newkey, 'fam', r[1], 'exp', tostring(newexp))
  redis.call('PEXPIRE', newkey, math.ceil((newexp - now) * 1000) + backstop)
  redis.call('HSET', famkey, 'cur', ARGV[5])
  return {'rotated', r[1], f[1], '', f[2]}
end
if now - tonumber(r[3]) <= grace and f[3] == r[4] then
  return {'replay', r[1], f[1], r[5], f[2]}
end
redis.call('HSET', famkey, 'rev', '1')
redis.call('PUBLISH', ARGV[8], r[1])
return {'reuse', r[1], f[1]}
"""

_REVOKE_FAMILY_OF: Final = """
local fam = redis.call('HGET', KEYS[1], 'fam')
if not fam then return false end
local famkey = ARGV[1] .. 'fam:' .. fam
if redis.call('EXISTS', famkey) == 1 then
  redis.call('HSET', famkey, 'rev', '1')
  redis.call('PUBLISH', ARGV[2], fam)
end
return fam
"""

_REVOKE_SUBJECT: Final = """
local revoked = {}
for _, fam in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local famkey = ARGV[1] .. 'fam:' .. fam
  local rev = redis.call('HGET', famkey, 'rev')
  if rev == '0' then
    redis.call('HSET', famkey, 'rev', '1')
    revoked[#revoked + 1] = fam
  end
end
if #revoked > 0 then redis.call('PUBLISH', ARGV[2], table.concat(revoked, ' ')) end
return revoked
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
if ARGV[5] == '1' then redis.call('SET', KEYS[2], KEYS[1], 'PX', ARGV[4]) end
return 1
"""

_FLIGHT_RELEASE: Final = """
if redis.call('HGET', KEYS[1], 'v') == 'P:' .. ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""

_FLIGHT_FORGET: Final = """
local key = redis.call('GET', KEYS[1])
if key then redis.call('DEL', key) end
redis.call('DEL', KEYS[1])
return 1
"""


def _ms(seconds: float) -> int:
    return math.ceil(seconds * 1000) + _BACKSTOP_MS


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class RedisStore:
    """:class:`~fastapi_authkit.stores.base.SessionStore` on redis-py's ``redis.asyncio``.

    ``max_lag`` (seconds) bounds how long this process answers "live" from its own view
    without proof that the view is current: a revocation anywhere is refused here as soon
    as its message arrives (normally within a millisecond or two), and within ``max_lag``
    even if messages stall. Heartbeats run every ``max_lag / 4``. The view holds up to
    ``view_size`` live and as many revoked families. It needs a plain ``redis.asyncio.Redis``
    client (one node); with any other client every request asks Redis.
    """

    known_active: Callable[[str, float], bool | None]

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "authkit:",
        max_lag: float = 0.1,
        view_size: int = 100_000,
    ) -> None:
        if not isinstance(prefix, str) or not prefix:
            raise ConfigurationError("RedisStore prefix must be a non-empty string")
        if (
            not isinstance(max_lag, int | float)
            or isinstance(max_lag, bool)
            or not 0 < max_lag < math.inf
        ):
            raise ConfigurationError(f"max_lag must be a positive number of seconds: {max_lag!r}")
        if not isinstance(view_size, int) or isinstance(view_size, bool) or view_size < 0:
            raise ConfigurationError("view_size must be a non-negative int")
        self._redis = client
        self._p = prefix
        self._channel = f"{prefix}rev"
        self._view = RevocationView(max_lag=float(max_lag), size=view_size)
        self.known_active = self._view.lookup  # the hot path: no wrapper frame
        channel = self._channel
        self._subscriber = (
            RevocationSubscriber(self._view, lambda: node_subscription(client, channel))
            if isinstance(client, Redis) and view_size
            else None
        )
        self._create = client.register_script(_CREATE)
        self._rotate = client.register_script(_ROTATE)
        self._revoke_token_family = client.register_script(_REVOKE_FAMILY_OF)
        self._revoke_subject = client.register_script(_REVOKE_SUBJECT)
        self._claim = client.register_script(_FLIGHT_CLAIM)
        self._finish = client.register_script(_FLIGHT_FINISH)
        self._release = client.register_script(_FLIGHT_RELEASE)
        self._forget = client.register_script(_FLIGHT_FORGET)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "authkit:",
        timeout: float = 0.5,
        max_lag: float = 0.1,
        view_size: int = 100_000,
    ) -> RedisStore:
        """Connect lazily to ``url``. ``timeout`` bounds each Redis call (connect and
        read); one retry, no backoff: a slow Redis must turn into a fast 503."""
        client = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
        return cls(client, prefix=prefix, max_lag=max_lag, view_size=view_size)

    def _listen(self) -> None:
        """Keep the view's subscription running (started on the first call that asks Redis,
        on the running event loop; restarted if its task died)."""
        if self._subscriber is not None:
            self._subscriber.ensure_running()

    async def _call(self, awaitable: Awaitable[T]) -> T:
        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            raise StoreUnavailableError(f"Redis unavailable: {exc}") from exc

    async def create_family(
        self,
        *,
        family_id: str,
        subject: str,
        token_id: str,
        now: float,
        idle_ttl: float,
        absolute_ttl: float,
    ) -> None:
        p = self._p
        keys = [f"{p}fam:{family_id}", f"{p}rt:{token_id}", f"{p}sub:{subject}"]
        args: list[str | int] = [
            token_id,
            subject,
            repr(now),
            repr(idle_ttl),
            repr(absolute_ttl),
            _BACKSTOP_MS,
            family_id,
        ]
        self._listen()
        ticket = self._view.ticket()
        await self._call(self._create(keys=keys, args=args))
        # Live until its absolute expiry, unless a revocation says otherwise: the session's
        # first requests need no round trip either.
        self._view.learn(family_id, now + absolute_ttl, ticket)

    async def rotate(
        self,
        token_id: str,
        *,
        now: float,
        grace: float,
        idle_ttl: float,
        successor_id: str | None,
        sealed: bytes | None,
        family_hint: str | None = None,
        subject_hint: str | None = None,
    ) -> RotateOutcome:
        self._listen()
        ticket = self._view.ticket()
        reply = await self._call(
            self._rotate(
                keys=[f"{self._p}rt:{token_id}"],
                args=[
                    self._p,
                    repr(now),
                    repr(grace),
                    repr(idle_ttl),
                    successor_id or "",
                    sealed or b"",
                    _BACKSTOP_MS,
                    self._channel,
                    family_hint or "",
                    subject_hint or "",
                ],
            )
        )
        status = cast(RotateStatus, _text(reply[0]))
        family = _text(reply[1]) if len(reply) > 1 else None
        subject = _text(reply[2]) if len(reply) > 2 else None
        blob = reply[3] or None if len(reply) > 3 else None
        absolute = float(reply[4]) if len(reply) > 4 else None
        if family is not None:
            # The script just saw the family: live (with its absolute expiry) or not.
            self._view.learn(family, absolute, ticket)
        return RotateOutcome(status, family, subject, blob, absolute)

    async def family_active(self, family_id: str, now: float) -> bool:
        self._listen()
        ticket = self._view.ticket()
        rev, absolute = await self._call(
            self._redis.hmget(f"{self._p}fam:{family_id}", "rev", "abs")
        )
        until = float(absolute) if rev == b"0" and absolute is not None else None
        if until is not None and now >= until:
            until = None
        self._view.learn(family_id, until, ticket)
        return until is not None

    async def revoke_token_family(self, token_id: str) -> str | None:
        reply = await self._call(
            self._revoke_token_family(
                keys=[f"{self._p}rt:{token_id}"], args=[self._p, self._channel]
            )
        )
        family = _text(reply)
        if family is not None:
            self._view.revoked((family,))  # this process refuses it now, not on the echo
        return family

    async def revoke_subject(self, subject: str) -> int:
        reply = await self._call(
            self._revoke_subject(keys=[f"{self._p}sub:{subject}"], args=[self._p, self._channel])
        )
        families = [_text(family) or "" for family in reply]
        self._view.revoked(families)
        return len(families)

    async def flight_claim(self, key: str, owner: str, *, now: float, lease: float) -> FlightState:
        reply = await self._call(
            self._claim(
                keys=[f"{self._p}fl:{key}"], args=[owner, repr(now), repr(lease), _ms(lease)]
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
        alias_key = f"{self._p}fla:{alias}" if alias else f"{self._p}fla:-"
        await self._call(
            self._finish(
                keys=[f"{self._p}fl:{key}", alias_key],
                args=[owner, value, repr(now + ttl), _ms(ttl), "1" if alias else "0"],
            )
        )

    async def flight_release(self, key: str, owner: str) -> None:
        await self._call(self._release(keys=[f"{self._p}fl:{key}"], args=[owner]))

    async def flight_forget(self, alias: str) -> None:
        await self._call(self._forget(keys=[f"{self._p}fla:{alias}"], args=[]))

    async def aclose(self) -> None:
        if self._subscriber is not None:
            await self._subscriber.aclose()
        await self._redis.aclose()
