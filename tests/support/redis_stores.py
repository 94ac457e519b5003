"""RedisStores on the test session's shared servers, each isolated by a prefix of its own."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from fastapi_authkit.stores import RedisStore


def redis_store(
    request: pytest.FixtureRequest, kind: str, label: str = "t", **options: Any
) -> RedisStore:
    """A RedisStore with a fresh prefix on the session's server (``redis``) or cluster
    (``cluster``); ``options`` go to ``RedisStore.from_url``."""
    fixture = "redis_server" if kind == "redis" else "redis_cluster"
    server = request.getfixturevalue(fixture)
    return RedisStore.from_url(server.url, prefix=f"{label}-{uuid.uuid4().hex}:", **options)


async def keys_under(store: RedisStore, prefix: str) -> dict[int, list[bytes]]:
    """Every key under ``prefix`` in ``store``'s deployment, by the port of the primary
    that holds it."""
    found: dict[int, list[bytes]] = {}
    for primary in await store.topology.primaries():
        port = primary.connection_pool.connection_kwargs["port"]
        found[port] = [key async for key in primary.scan_iter(match=f"{prefix}*")]
    return found
