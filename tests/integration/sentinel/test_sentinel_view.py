"""Each process's view of revoked sessions on a Sentinel-managed primary (real primary,
replica and Sentinel processes): the subscription is on the primary Sentinel names, every
heartbeat asks Sentinel whether it still is, and a failover ends it (the view falls back
to asking Redis per request) until it is subscribed again on the promoted replica.

Two RedisStore instances on one prefix stand for two worker processes. Waits are bounded
polls.
"""

from __future__ import annotations

import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator

import anyio
import pytest

from fastapi_authkit.errors import StoreUnavailableError

from tests.support.clock import T0
from tests.support.redis_sentinel import SENTINEL_SERVICE, SentinelSet
from tests.support.round_trips import RoundTrips
from tests.support.views import Worker, numsub, two_workers
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio


@pytest.fixture
async def two(sentinel_set: SentinelSet) -> AsyncIterator[tuple[Worker, Worker]]:
    # b's revocations confirmed by the replica: one made on the old primary in the middle
    # of the failover (and then lost with it) is an error, not a success.
    confirmed = {"timeout": 1.0, "wait_replicas": 1, "wait_timeout": 0.5}
    async with two_workers(sentinel_set.url, f"sv-{uuid.uuid4().hex}:", **confirmed) as pair:
        yield pair


async def test_a_revocation_reaches_the_other_process_with_no_round_trip_per_request(
    two: tuple[Worker, Worker], sentinel_set: SentinelSet
) -> None:
    a, b = two
    family, refresh = await a.sign_in()
    await eventually(lambda: a.served_from_view(family))
    assert numsub(sentinel_set.primary(), a.store._channel) >= 1
    commands = RoundTrips(a.store.topology.client)
    for _ in range(100):
        assert a.known(family) is True
        await anyio.sleep(0.002)  # heartbeats (and their Sentinel checks) go on meanwhile
    assert commands.count == 0
    assert await b.revoke(family, refresh) == family
    await eventually(lambda: a.known(family) is False)


async def test_a_failover_falls_back_then_follows_the_new_primary(
    two: tuple[Worker, Worker], sentinel_set: SentinelSet, caplog: pytest.LogCaptureFixture
) -> None:
    """``SENTINEL FAILOVER``: the old primary stays up (it becomes a replica), so no
    connection is lost; Sentinel naming another primary is what ends the subscription. A
    revocation made on the new primary in the middle of it is never answered "live"."""
    a, b = two
    revoked, revoked_refresh = await a.sign_in()
    kept, _ = await a.sign_in()
    for family in (revoked, kept):
        await eventually(lambda family=family: a.served_from_view(family))
    old = sentinel_set.primary()
    channel = a.store._channel
    with caplog.at_level(logging.WARNING, logger="fastapi_authkit"):
        with sentinel_set._sentinel() as sentinel:
            sentinel.execute_command("SENTINEL", "FAILOVER", SENTINEL_SERVICE)
        # Revoke through b as soon as the new primary takes it and its replica confirms it
        # (b follows the failover by itself: a READONLY reply makes it ask Sentinel again).
        deadline = time.monotonic() + 20
        while True:
            if sentinel_set.primary() is not old:
                try:
                    if await b.revoke(revoked, revoked_refresh) == revoked:
                        break
                except StoreUnavailableError:
                    pass
            assert time.monotonic() < deadline, "no failover within 20 s"
            await anyio.sleep(0.02)
        revoked_at = time.monotonic()
        new = sentinel_set.primary()
        assert new is not old
        # From max_lag after the revocation on, never "live" (fallback, or heard).
        seen: set[bool | None] = set()
        while time.monotonic() < revoked_at + 3:
            if time.monotonic() > revoked_at + a.store._view.max_lag:
                seen.add(a.known(revoked))
            await anyio.sleep(0.005)
        assert True not in seen
        assert "names" in caplog.text  # the Sentinel check ended the old subscription
    # (a's own reads may still reach the old primary, demoted now; it has the revocation
    # once it resyncs from the new one.)
    await eventually(lambda: a.known(revoked) is False, within=10)
    await eventually(lambda: a.served_from_view(kept), within=10)  # current again
    await eventually(lambda: numsub(new, channel) >= 1)
    await eventually(lambda: numsub(old, channel) == 0)


async def test_a_sentinel_that_does_not_answer_falls_back_until_it_does(
    two: tuple[Worker, Worker], sentinel_set: SentinelSet
) -> None:
    """Without every Sentinel's word that the node is still the primary, no heartbeat
    counts: "live" answers stop being trusted (the data node itself is fine)."""
    a, _ = two
    family, _ = await a.sign_in()
    await eventually(lambda: a.served_from_view(family))
    process = sentinel_set.sentinel
    assert process is not None
    process.send_signal(signal.SIGSTOP)
    try:
        await eventually(lambda: a.known(family) is None)
        assert await a.store.family_active(family, T0)  # asked of the primary: still live
        await anyio.sleep(0.3)
        assert a.known(family) is None  # and not kept while Sentinel is silent
    finally:
        process.send_signal(signal.SIGCONT)
    await eventually(lambda: a.served_from_view(family), within=10)


async def test_a_flushed_primary_ends_the_trust_in_what_it_held(
    two: tuple[Worker, Worker], sentinel_set: SentinelSet
) -> None:
    """``FLUSHALL`` on the primary (replicated to its replica): no message, but the epoch
    key the views subscribed with is gone, so both reset and ask Redis again."""
    a, b = two
    family, _ = await a.sign_in()
    for worker in (a, b):
        await eventually(lambda worker=worker: worker.served_from_view(family))
    with sentinel_set.primary().control() as control:
        control.flushall()
    for worker in (a, b):
        await eventually(lambda worker=worker: worker.known(family) is None, within=2.0)
        await eventually(lambda worker=worker: worker.current)
        assert not await worker.store.family_active(family, T0)
        assert worker.known(family) is False
