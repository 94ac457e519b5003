"""The Redis key layout on a real 3-primary cluster and a real redis-server: one slot per
session family, families on every primary, "sign out everywhere" across slots, and data
written by the earlier layout (token keys without a family) still working."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jwt
import pytest
import redis.cluster
from redis.crc import key_slot

from fastapi_authkit import RefreshParam
from fastapi_authkit.errors import ReplicaConfirmationError
from fastapi_authkit.issuer import IssuedTokens, Issuer
from fastapi_authkit.stores import RedisStore
from fastapi_authkit.stores.redis.keys import KeyLayout
from fastapi_authkit.stores.sealing import token_id

from tests.support.apps import make_issuer
from tests.support.clock import Clock
from tests.support.redis_cluster import RedisClusterServers
from tests.support.redis_servers import RedisServer
from tests.support.redis_stores import keys_under

pytestmark = pytest.mark.anyio

FAMILIES = 60


async def refresh(issuer: Issuer, token: str) -> Any:
    return await issuer.refresh(RefreshParam(auth_token=None, refresh_token=token))


@asynccontextmanager
async def issuer_on(
    url: str, prefix: str, clock: Clock
) -> AsyncIterator[tuple[Issuer, RedisStore]]:
    """An issuer on a Redis store of ``url`` under ``prefix``, and the store, closed after."""
    store = RedisStore.from_url(url, prefix=prefix)
    try:
        yield make_issuer(store, clock), store
    finally:
        await store.aclose()


def test_key_names_of_one_family_share_the_family_keys_slot() -> None:
    keys = KeyLayout("authkit:")
    slot = key_slot(keys.family("fam1").encode())
    assert key_slot(keys.token("fam1", "a" * 64).encode()) == slot
    assert key_slot(keys.token("fam1", "b" * 64).encode()) == slot
    # Different families: the token keys follow their own family, not a shared tag.
    spread = {key_slot(keys.token(f"f{i}", "a" * 64).encode()) for i in range(50)}
    assert len(spread) > 40
    # The earlier layout's names are unchanged for everything but the token key.
    assert keys.family("F") == "authkit:fam:F"
    assert keys.subject("s") == "authkit:sub:s"
    assert keys.legacy_token("T") == "authkit:rt:T"


async def test_families_land_on_every_primary_and_stay_in_one_slot(
    redis_cluster: RedisClusterServers, clock: Clock
) -> None:
    prefix = f"spread-{uuid.uuid4().hex}:"
    async with issuer_on(redis_cluster.url, prefix, clock) as (issuer, store):
        for i in range(FAMILIES):
            tokens = await issuer.issue(f"user-{i}")
            clock.advance(1)
            assert (await refresh(issuer, tokens.refresh_token)).is_success
        by_primary = await keys_under(store, prefix)
    assert len(by_primary) == 3
    family_nodes: dict[str, set[int]] = defaultdict(set)
    family_slots: dict[str, set[int]] = defaultdict(set)
    for port, keys in by_primary.items():
        for key in keys:
            name = key.decode()[len(prefix) :]
            if name.startswith(("sub:", "epoch")):
                continue  # a subject's families; each primary's epoch key (the views')
            # fam:<family> or rt:{<prefix>fam:<family>}:<token id>
            family = name.split("fam:", 1)[1].split("}", 1)[0]
            family_nodes[family].add(port)
            family_slots[family].add(key_slot(key))
    assert len(family_nodes) == FAMILIES
    # Each family: its record and both token records (first and rotated) in one slot.
    assert all(len(slots) == 1 for slots in family_slots.values())
    spread = Counter(next(iter(ports)) for ports in family_nodes.values())
    print(f"\n{FAMILIES} families over the 3 primaries: {sorted(spread.values())}")
    assert len(spread) == 3, spread  # every primary holds families


async def test_sign_out_everywhere_revokes_families_on_every_primary(
    redis_cluster: RedisClusterServers, clock: Clock
) -> None:
    prefix = f"everywhere-{uuid.uuid4().hex}:"
    async with issuer_on(redis_cluster.url, prefix, clock) as (issuer, store):
        # Family ids are random, so their slots are too: issue sessions until alice's live on
        # all three primaries (15 do with probability ~99 %; the bound makes a miss a failure
        # of the layout, not of luck).
        sessions: list[IssuedTokens] = []
        ports: set[int] = set()
        while len(ports) < 3 and len(sessions) < 200:
            sessions.append(await issuer.issue("alice"))
            ports = {
                port
                for port, keys in (await keys_under(store, prefix)).items()
                for key in keys
                if any(s.family_id in key.decode() for s in sessions)
            }
        assert len(ports) == 3  # alice's sessions live on all three primaries
        other = await issuer.issue("bob")
        assert await issuer.revoke_subject("alice") == len(sessions)
        for session in sessions:
            claims = jwt.decode(session.access_token, options={"verify_signature": False})
            assert not await issuer.is_active(claims)
            assert not (await refresh(issuer, session.refresh_token)).is_success
        assert (await refresh(issuer, other.refresh_token)).is_success
        assert await issuer.revoke_subject("alice") == 0


async def test_sign_out_everywhere_forgets_expired_families(
    redis_server: RedisServer, clock: Clock
) -> None:
    prefix = f"gone-{uuid.uuid4().hex}:"
    async with issuer_on(redis_server.url, prefix, clock) as (issuer, _):
        kept = await issuer.issue("alice")
        expired = await issuer.issue("alice")
        raw = redis_server.control()
        raw.delete(f"{prefix}fam:{expired.family_id}")  # as Redis expiry would
        assert await issuer.revoke_subject("alice") == 1
        assert raw.smembers(f"{prefix}sub:alice") == {kept.family_id}
        raw.close()


# --- data written by the earlier layout ---------------------------------------------------


def write_old_layout(raw: Any, prefix: str, clock: Clock, subject: str) -> str:
    """A session exactly as the earlier layout stored it (its create script, by hand, on
    ``raw``, a synchronous redis-py client):
    an opaque refresh token without a family, its record at <prefix>rt:<id>."""
    family, token = "OldFamily0123456789abc", "OldToken" + "x" * 35
    tid = token_id(token, "refresh")
    now = clock()
    raw.hset(
        f"{prefix}fam:{family}",
        mapping={"sub": subject, "abs": repr(now + 7200), "cur": tid, "rev": "0"},
    )
    raw.hset(f"{prefix}rt:{tid}", mapping={"fam": family, "exp": repr(now + 3600)})
    raw.sadd(f"{prefix}sub:{subject}", family)
    return token


async def test_sessions_of_the_earlier_layout_keep_working(
    redis_server: RedisServer, clock: Clock
) -> None:
    prefix = f"old-{uuid.uuid4().hex}:"
    with redis_server.control() as raw:
        old_token = write_old_layout(raw, prefix, clock, "alice")
    async with issuer_on(redis_server.url, prefix, clock) as (issuer, _):
        # The old access token's session check reads the (unchanged) family key.
        assert await issuer.is_active({"sid": "OldFamily0123456789abc"})
        first = await refresh(issuer, old_token)
        assert first.is_success
        # The successor is in the new layout: it names its family.
        assert first.new_refresh_token.startswith("OldFamily0123456789abc.")
        clock.advance(5)
        assert await refresh(issuer, old_token) == first  # grace-window replay, as before
        clock.advance(1)
        second = await refresh(issuer, first.new_refresh_token)
        assert second.is_success
        clock.advance(20)
        # Reuse detection spans the two layouts: the old token after grace revokes all.
        assert not (await refresh(issuer, old_token)).is_success
        assert not (await refresh(issuer, second.new_refresh_token)).is_success


async def test_revocations_reach_sessions_of_the_earlier_layout(
    redis_server: RedisServer, clock: Clock
) -> None:
    prefix = f"old-{uuid.uuid4().hex}:"
    async with issuer_on(redis_server.url, prefix, clock) as (issuer, _):
        with redis_server.control() as raw:
            signed_out = write_old_layout(raw, prefix, clock, "bob")
        assert await issuer.revoke(signed_out)  # sign-out with an old refresh token
        assert not await issuer.is_active({"sid": "OldFamily0123456789abc"})
        assert not await issuer.revoke("NeverIssued" + "y" * 32)
    prefix = f"old-{uuid.uuid4().hex}:"
    async with issuer_on(redis_server.url, prefix, clock) as (issuer, _):
        with redis_server.control() as raw:
            write_old_layout(raw, prefix, clock, "carol")
        new = await issuer.issue("carol")
        assert await issuer.revoke_subject("carol") == 2  # the old family and the new one
        assert not (await refresh(issuer, new.refresh_token)).is_success


async def test_cluster_with_a_tagged_prefix_keeps_the_earlier_layout_working(
    redis_cluster: RedisClusterServers, clock: Clock
) -> None:
    """``{tag}:`` prefixes were the way to run the earlier layout on a cluster: every key in
    one slot. They still work, earlier tokens included (but nothing shards)."""
    prefix = f"{{tag-{uuid.uuid4().hex}}}:"
    assert KeyLayout(prefix).one_slot
    async with issuer_on(redis_cluster.url, prefix, clock) as (issuer, _):
        control = redis.cluster.RedisCluster(host="127.0.0.1", port=redis_cluster.nodes[0].port)
        with control:
            old_token = write_old_layout(control, prefix, clock, "dave")
        result = await refresh(issuer, old_token)
        assert result.is_success
        tokens = await issuer.issue("dave")
        assert (await refresh(issuer, tokens.refresh_token)).is_success
        assert await issuer.revoke_subject("dave") == 2


async def test_earlier_tokens_are_unknown_on_a_sharded_cluster(
    redis_cluster: RedisClusterServers, clock: Clock
) -> None:
    # The earlier layout could not be written to a cluster without a tagged prefix, so a
    # token without a family is not looked for (and is no error).
    async with issuer_on(redis_cluster.url, f"t-{uuid.uuid4().hex}:", clock) as (issuer, _):
        assert not (await refresh(issuer, "NoFamilyInThisToken" + "z" * 24)).is_success
        assert not await issuer.revoke("NoFamilyInThisToken" + "z" * 24)


async def test_a_slot_moved_under_a_waiting_write_is_followed(
    redis_cluster: RedisClusterServers, clock: Clock
) -> None:
    """A slot moves to another primary after the client learnt the slot map (resharding,
    failover): a write that waits for replicas is not redirected behind its WAIT's back but
    resent, whole, to the new owner."""
    prefix = f"moved-{uuid.uuid4().hex}:"
    store = RedisStore.from_url(
        redis_cluster.url, prefix=prefix, wait_replicas=1, wait_timeout=0.05
    )
    try:
        await store.family_active("warm-up", clock())  # the client caches the slot map
        family = uuid.uuid4().hex
        slot = key_slot(KeyLayout(prefix).family(family).encode())
        owner, target = _owner_and_other(redis_cluster, slot)
        with target.control() as control:
            control.execute_command("CLUSTER", "BUMPEPOCH")
            target_id = control.execute_command("CLUSTER", "MYID")
        for node in (target, owner, *redis_cluster.nodes):
            with node.control() as control:
                control.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        with pytest.raises(ReplicaConfirmationError):  # no replicas: written, unconfirmed
            await store.create_family(
                family_id=family,
                subject="mover",
                token_id="t1",
                now=clock(),
                idle_ttl=60,
                absolute_ttl=120,
            )
        with target.control() as control:
            assert control.exists(KeyLayout(prefix).family(family)) == 1
    finally:
        await store.aclose()


def _owner_and_other(cluster: RedisClusterServers, slot: int) -> tuple[RedisServer, RedisServer]:
    with cluster.nodes[0].control() as control:
        ranges = control.execute_command("CLUSTER", "SLOTS")
    for first, last, primary, *_ in ranges:
        if first <= slot <= last:
            owner = next(n for n in cluster.nodes if n.port == int(primary[1]))
            return owner, next(n for n in cluster.nodes if n is not owner)
    raise AssertionError(f"slot {slot} is not served")
