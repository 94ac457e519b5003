"""Shared state in Redis, for several workers or machines: one server, Sentinel or a Cluster.

Install with ``pip install 'fastapi-authkit[redis]'``.

Every decision is one Lua script, atomic in Redis, its keys in one slot so that it runs
unchanged on a cluster (:mod:`~fastapi_authkit.stores.redis.scripts`,
:mod:`~fastapi_authkit.stores.redis.keys`). Every script that revokes a family PUBLISHes its
id on ``{prefix}rev`` in the same script, and each process keeps a view of live families
current from that channel (:mod:`~fastapi_authkit.stores.redis.subscriber`), so an
authenticated request needs no round trip while that view is provably current, and asks
Redis whenever it is not. With ``wait_replicas`` the writes that hand out or take away a
session are confirmed by replicas, and any Redis error fails closed
(:mod:`~fastapi_authkit.stores.redis.gateway`).

The modules, from the store down:

* ``store``: :class:`RedisStore`, composed of one collaborator per concern:
  ``families`` (creation, rotation, liveness), ``revocations``, ``sessions`` (a subject's
  list), ``flights`` (the cross-process refresh flight), ``throttles`` (the login guard's
  counters), with ``subjects`` (a subject's set of families) and ``legacy`` (tokens of the
  earlier key layout) beneath them;
* ``scripts`` and ``keys``: the Lua behind each of those concerns, and the keys it
  touches (each family's in one slot);
* ``gateway``: every call to Redis, after ``checks`` (the deployment fits) and
  ``eviction`` (``maxmemory-policy noeviction``);
* ``topology``: one server, Sentinel or a cluster, and what differs between them;
  ``urls``: clients from URLs;
* ``subscriber``: the task that keeps this process's
  :class:`~fastapi_authkit.stores.view.RevocationView` current, on the subscription
  ``node_subscription`` (one server, Sentinel's primary) or ``cluster_subscription`` (every
  primary, watching ``cluster_state``) opens, with ``epoch`` telling when the data was
  replaced.
"""

from __future__ import annotations

try:
    from .store import RedisStore
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    if not (exc.name or "").startswith("redis"):
        raise
    raise ImportError("RedisStore needs redis-py: pip install 'fastapi-authkit[redis]'") from exc

__all__ = ["RedisStore"]
