"""The flight operations of both stores, directly: claim, pending, publish, release, expiry
by the caller's clock, and forgetting a published result by its alias (sign-out)."""

from __future__ import annotations

import pytest

from fastapi_authkit.stores import MemoryStore, SessionStore

pytestmark = pytest.mark.anyio


async def test_claim_then_pending_then_done(backend: SessionStore) -> None:
    assert (await backend.flight_claim("k", "a", now=100, lease=10)).status == "claimed"
    assert (await backend.flight_claim("k", "b", now=101, lease=10)).status == "pending"
    await backend.flight_finish("k", "b", b"Rnot-the-owner", now=101, ttl=5, alias=None)
    assert (await backend.flight_claim("k", "c", now=102, lease=10)).status == "pending"
    await backend.flight_finish("k", "a", b"Rresult", now=102, ttl=5, alias="succ")
    done = await backend.flight_claim("k", "c", now=103, lease=10)
    assert (done.status, done.value) == ("done", b"Rresult")
    # After the result's ttl (by the caller's clock) the flight is free again.
    assert (await backend.flight_claim("k", "d", now=108, lease=10)).status == "claimed"


async def test_lease_expiry_frees_a_crashed_claim(backend: SessionStore) -> None:
    await backend.flight_claim("k", "a", now=100, lease=10)
    assert (await backend.flight_claim("k", "b", now=111, lease=10)).status == "claimed"


async def test_release_only_by_the_owner(backend: SessionStore) -> None:
    await backend.flight_claim("k", "a", now=100, lease=10)
    await backend.flight_release("k", "b")
    assert (await backend.flight_claim("k", "b", now=100, lease=10)).status == "pending"
    await backend.flight_release("k", "a")
    assert (await backend.flight_claim("k", "b", now=100, lease=10)).status == "claimed"


async def test_forget_drops_a_result_by_alias(backend: SessionStore) -> None:
    await backend.flight_claim("k", "a", now=100, lease=10)
    await backend.flight_finish("k", "a", b"Rresult", now=100, ttl=50, alias="succ")
    await backend.flight_forget("succ")
    assert (await backend.flight_claim("k", "b", now=101, lease=10)).status == "claimed"
    await backend.flight_forget("unknown-alias")  # nothing to drop is fine


async def test_memory_store_sweeps_expired_entries() -> None:
    store = MemoryStore()
    for i in range(1100):
        await store.flight_claim(f"k{i}", "a", now=0, lease=1)
        await store.flight_finish(f"k{i}", "a", b"Rx", now=0, ttl=1, alias=f"a{i}")
    await store.flight_claim("late", "a", now=10, lease=1)
    await store.flight_finish("late", "a", b"Rx", now=10, ttl=1, alias=None)
    assert len(store._flights) < 1100  # expired results were swept
    for i in range(1100):  # sessions that end at t=2
        await store.create_family(
            family_id=f"f{i}", subject="s", token_id=f"t{i}", now=0, idle_ttl=1, absolute_ttl=2
        )
    for i in range(1000):  # later sign-ins; every 1024th write sweeps what has expired
        await store.create_family(
            family_id=f"g{i}", subject="s2", token_id=f"u{i}", now=10, idle_ttl=5, absolute_ttl=9
        )
    assert not any(fid.startswith("f") for fid in store._families)
    assert "s" not in store._subjects
    assert not any(tid.startswith("t") for tid in store._tokens)
