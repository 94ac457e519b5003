"""Each process's view of revoked sessions on a real Redis Cluster: one subscription per
primary, a revocation on any primary reaching every other process's view without a round
trip per request, fallback whenever one primary's subscription may have missed something,
and the subscriptions following the cluster's changes (a failover inside the cluster, a
node added and given slots).

Two RedisStore instances on one prefix stand for two worker processes (real uvicorn workers
on the cluster are in test_worker_revocation.py). The session's 3-primary cluster serves the
tests that change nothing; the ones that change the cluster's shape get one of their own
(3 primaries and a replica, module-scoped). Waits are bounded polls.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx2
import jwt
import pytest
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.cluster import LoadBalancingStrategy
from redis.crc import key_slot

from fastapi_authkit import ConfigurationError
from fastapi_authkit.stores import RedisStore
from fastapi_authkit.stores.redis.cluster_state import parse_info, parse_nodes
from fastapi_authkit.stores.redis.keys import KeyLayout

from tests.support.apps import issuer_app
from tests.support.clock import T0, Clock
from tests.support.redis_cluster import RedisClusterServers
from tests.support.round_trips import RoundTrips
from tests.support.views import REVOKE_UNHEARD, Worker, numsub, two_workers
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio


async def families_on_every_primary(
    worker: Worker, cluster: RedisClusterServers, prefix: str
) -> dict[int, tuple[str, str]]:
    """A session family on each primary, by the primary's port."""
    keys = KeyLayout(prefix)
    found: dict[int, tuple[str, str]] = {}
    primaries = {n.port for n in cluster.nodes if n.is_primary()}
    while found.keys() != primaries:
        family = uuid.uuid4().hex
        owner = cluster.owner(key_slot(keys.family(family).encode()))
        if owner.port not in found:
            found[owner.port] = await worker.sign_in(family=family)
    return found


@pytest.fixture
def prefix() -> str:
    return f"cv-{uuid.uuid4().hex}:"


@pytest.fixture
async def two(
    redis_cluster: RedisClusterServers, prefix: str
) -> AsyncIterator[tuple[Worker, Worker]]:
    redis_cluster.wait_settled()  # after another test's slot move, epochs may still spread
    async with two_workers(redis_cluster.url, prefix) as pair:
        yield pair


async def test_a_revocation_on_each_primary_reaches_the_other_processes_view(
    two: tuple[Worker, Worker], redis_cluster: RedisClusterServers, prefix: str
) -> None:
    a, b = two
    families = await families_on_every_primary(a, redis_cluster, prefix)
    assert len(families) == 3
    for family, _ in families.values():
        await eventually(lambda family=family: a.served_from_view(family))
        await eventually(lambda family=family: b.served_from_view(family))
    # One subscription per primary and process.
    for node in redis_cluster.nodes:
        assert numsub(node, f"{prefix}rev") == 2
    for family, refresh in families.values():
        assert await b.revoke(family, refresh) == family
        assert b.known(family) is False
        await eventually(lambda family=family: a.known(family) is False)


async def test_requests_are_answered_without_a_round_trip(
    redis_cluster: RedisClusterServers, prefix: str, clock: Clock
) -> None:
    """Through the app: once the view is current, authenticated requests send no command
    to the cluster; a sign-out in another process is refused at once after its message."""
    redis_cluster.wait_settled()
    store = RedisStore.from_url(redis_cluster.url, prefix=prefix)
    other = Worker(RedisStore.from_url(redis_cluster.url, prefix=prefix))
    commands = RoundTrips(store.topology.client)
    app = issuer_app(store, clock)
    transport = httpx2.ASGITransport(app=app)
    try:
        async with httpx2.AsyncClient(transport=transport, base_url="https://testserver") as http:
            assert (await http.post("/login?as=alice")).status_code == 200

            async def from_view() -> bool:
                before = commands.count
                assert (await http.get("/me")).status_code == 200
                return commands.count == before

            await eventually(from_view)

            family = jwt.decode(http.cookies["_auth"], options={"verify_signature": False})["sid"]

            def current() -> bool:
                return store.known_active(family, clock()) is True

            # Requests made while the view is current (before and after them) send nothing
            # to the cluster. While a heartbeat is late (a loaded machine delays the event
            # loop) the view lapses and requests ask the cluster, as they must; how often
            # that happens is the peers benchmark's to measure, not this test's.
            answered = asked = 0
            async with asyncio.timeout(30):
                while answered < 50:
                    if not current():
                        await asyncio.sleep(0.005)
                        continue
                    before = commands.count
                    assert (await http.get("/me")).status_code == 200
                    if current():
                        answered += 1
                        asked += commands.count - before
            # A lapse can begin between the check and the request's own look at the view
            # (well under a millisecond): at most one such request in a run.
            assert asked <= 1
            assert await other.store.revoke_subject("alice") == 1  # "sign out everywhere"
            await eventually(lambda: store.known_active(family, clock()) is False)
            before = commands.count
            assert (await http.get("/me")).status_code == 401
            assert commands.count == before  # refused by the view
    finally:
        await store.aclose()
        await other.store.aclose()


async def test_one_primarys_subscription_killed_falls_back_then_recovers(
    two: tuple[Worker, Worker], redis_cluster: RedisClusterServers, prefix: str
) -> None:
    a, b = two
    families = await families_on_every_primary(a, redis_cluster, prefix)
    for family, _ in families.values():
        await eventually(lambda family=family: a.served_from_view(family))
    assert await b.store.family_active("unknown", T0) is False  # b subscribes too
    killed = redis_cluster.nodes[1]
    await eventually(lambda: numsub(killed, f"{prefix}rev") == 2)
    with killed.control() as control:
        control.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    # Whatever the others still hear, one primary's messages may be missed: all dropped.
    await eventually(lambda: all(a.known(f) is None for f, _ in families.values()))
    for family, _ in families.values():
        await eventually(lambda family=family: a.served_from_view(family))
    await eventually(lambda: numsub(killed, f"{prefix}rev") == 2)  # both subscribed again
    family, refresh = families[killed.port]
    await b.revoke(family, refresh)  # executed on the primary whose subscription was killed
    await eventually(lambda: a.known(family) is False)


async def test_a_revocation_made_while_resubscribing_is_not_lost(
    two: tuple[Worker, Worker], redis_cluster: RedisClusterServers, prefix: str
) -> None:
    a, _ = two
    family, _ = await a.sign_in()
    await eventually(lambda: a.served_from_view(family))
    keys = KeyLayout(prefix)
    owner = redis_cluster.owner(key_slot(keys.family(family).encode()))
    admin = owner.control()
    # On the family's own primary (its copies over the cluster bus are not ordered with
    # anything a process can check, so they prove nothing either way).
    revoke_unheard = admin.register_script(REVOKE_UNHEARD)
    try:
        for _ in range(200):
            admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            if revoke_unheard(keys=[keys.family(family)], args=[f"{prefix}rev", family]):
                break
        else:
            pytest.fail("never caught the process between two subscriptions")
        await eventually(lambda: a.known(family) is not True and a.current)
        assert not await a.store.family_active(family, T0)
        assert a.known(family) is False
    finally:
        admin.close()


async def test_a_flushed_primary_ends_every_views_trust_in_what_it_held(
    two: tuple[Worker, Worker], redis_cluster: RedisClusterServers, prefix: str
) -> None:
    """``FLUSHALL`` on one primary sends no message: its epoch key (one per primary, in a
    slot it owns) vanishes, the next heartbeat says so, both views reset and ask the
    cluster, which no longer knows the families that primary held."""
    a, b = two
    families = await families_on_every_primary(a, redis_cluster, prefix)
    for family, _ in families.values():
        await eventually(lambda family=family: a.served_from_view(family))
        await eventually(lambda family=family: b.served_from_view(family))
    flushed = next(node for node in redis_cluster.nodes if node.port in families)
    family, _ = families[flushed.port]
    with flushed.control() as control:
        control.flushall()
    for worker in (a, b):
        await eventually(lambda worker=worker: worker.known(family) is None, within=2.0)
        await eventually(lambda worker=worker: worker.current)  # subscribed anew
        assert not await worker.store.family_active(family, T0)
        assert worker.known(family) is False
    for port, (other, _) in families.items():
        if port != flushed.port:  # the other primaries' families: live, learned again
            await eventually(lambda other=other: a.served_from_view(other))


# --- the cluster changes: a cluster of the module's own -------------------------------------


@pytest.fixture(scope="module")
def changing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """3 primaries; the first one gets a replica."""
    cluster = RedisClusterServers(tmp_path_factory.mktemp("changing-cluster"))
    cluster.start()
    try:
        cluster.add_replica(cluster.nodes[0])
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def two_on_changing(
    changing: RedisClusterServers, prefix: str
) -> AsyncIterator[tuple[Worker, Worker]]:
    changing.wait_settled()
    async with two_workers(changing.url, prefix) as pair:
        yield pair


async def test_a_failover_inside_the_cluster_moves_the_subscription(
    two_on_changing: tuple[Worker, Worker],
    changing: RedisClusterServers,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``CLUSTER FAILOVER``: the old primary stays up (as a replica), so no connection is
    lost; the new epoch is what says that revocations are executed elsewhere now."""
    a, b = two_on_changing
    old, replica = changing.nodes[0], changing.nodes[3]
    families = await families_on_every_primary(a, changing, prefix)
    for family, _ in families.values():
        await eventually(lambda family=family: a.served_from_view(family))
    channel = f"{prefix}rev"
    assert numsub(old, channel) == 1
    assert numsub(replica, channel) == 0
    family, refresh = families[old.port]
    with caplog.at_level(logging.WARNING, logger="fastapi_authkit"):
        await anyio.to_thread.run_sync(changing.failover, replica)
        await eventually(lambda: a.known(family) is None)  # dropped: fallback
        assert "the cluster changed shape" in caplog.text
    await eventually(lambda: a.served_from_view(family))
    assert numsub(replica, channel) >= 1  # subscribed on the new primary...
    await eventually(lambda: numsub(old, channel) == 0)  # ...and no longer on the old one
    await b.revoke(family, refresh)  # executed on the new primary
    await eventually(lambda: a.known(family) is False)


async def test_no_subscription_is_made_while_a_node_is_in_its_handshake(
    two_on_changing: tuple[Worker, Worker],
    changing: RedisClusterServers,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A node being met is counted in every node's ``cluster_known_nodes`` at once, but
    listed (flagged ``handshake``, under a made-up id) as a primary only once it has
    answered, and that answer changes nothing ``CLUSTER INFO`` says. Subscriptions made
    in between would leave the node out, and nothing would tell before it owns slots: none
    are made until it has answered. (The node is paused to hold the handshake open.)"""
    caplog.set_level(logging.DEBUG, logger="fastapi_authkit")
    await anyio.to_thread.run_sync(changing.clear_epoch_zero)
    a, b = two_on_changing
    family, _ = await a.sign_in()
    await eventually(lambda: a.served_from_view(family))
    await eventually(lambda: b.served_from_view(family))
    channel = f"{prefix}rev"

    def logged(words: str) -> int:
        return sum(words in record.getMessage() for record in caplog.records)

    joining = await anyio.to_thread.run_sync(changing.add_node_paused)
    try:
        await eventually(lambda: logged("cluster_known_nodes") >= 2)  # both views reset
        # Both try to subscribe anew, and are refused for as long as the handshake lasts.
        await eventually(lambda: logged("in its handshake") >= 4, within=30)
        assert not a.current
        assert not b.current
    finally:
        await anyio.to_thread.run_sync(changing.resume, joining)
    await eventually(lambda: numsub(joining, channel) == 2, within=30)
    await eventually(lambda: a.served_from_view(family), within=30)
    await eventually(lambda: b.served_from_view(family), within=30)


async def test_a_node_added_is_subscribed_to_before_it_gets_slots(
    two_on_changing: tuple[Worker, Worker],
    changing: RedisClusterServers,
    prefix: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Resharding onto a new node: the node is a primary (with no slots) as soon as it
    joins, and is subscribed to from then on, so the revocations it executes once it owns
    a slot are heard where they happen."""
    # Why each new subscription was refused is logged at DEBUG: shown if this fails.
    caplog.set_level(logging.DEBUG, logger="fastapi_authkit")
    a, b = two_on_changing
    family, refresh = await a.sign_in()
    await eventually(lambda: a.served_from_view(family))
    await eventually(lambda: b.served_from_view(family))
    channel = f"{prefix}rev"
    added = await anyio.to_thread.run_sync(changing.add_node)
    # The subscriptions are made anew only once every primary reports the cluster settled
    # (state ok, one view of who the primaries are), which the new node's gossip can take
    # seconds to reach on a busy machine: a wider bound than the others, the same claim.
    await eventually(lambda: numsub(added, channel) == 2, within=30)  # before it owns anything
    await eventually(lambda: a.served_from_view(family), within=30)
    slot = key_slot(KeyLayout(prefix).family(family).encode())
    await anyio.to_thread.run_sync(changing.move_slot, slot, added)
    assert changing.owner(slot) is added
    await eventually(lambda: a.served_from_view(family), within=30)
    await b.revoke(family, refresh)  # b follows the move (MOVED) to the new node
    assert b.known(family) is False
    # Heard on the new node's subscription; or, when the slot's arrival changed the
    # cluster's shape (cluster_size) at that moment, a's view was reset and asks the store.
    await eventually(lambda: a.refuses(family))


def test_the_node_table_parser_keeps_every_primary_that_can_execute_writes() -> None:
    table = parse_nodes(
        b"a1 127.0.0.1:7000@17000 myself,master - 0 0 3 connected 0-5460 [5461->-b2]\n"
        b"b2 127.0.0.1:7001@17001,host-b master - 0 0 4 connected 5461-16383\n"
        b"c3 :7002@17002 master - 0 0 0 connected\n"  # no slots yet: kept (may import)
        b"d4 127.0.0.1:7003@17003 master,fail - 0 0 1 disconnected\n"  # replaced: left out
        b"e5 127.0.0.1:7004@17004 slave b2 0 0 4 connected\n"
        b"f6 127.0.0.1:7005@17005 master,fail - 0 0 2 connected 100\n"  # failed, owns slots
        b"g7 127.0.0.1:7006@17006 handshake - 0 0 0 connected\n",  # met, not yet answering
        "10.0.0.9",
    )
    assert sorted(table.primaries) == [b"a1", b"b2", b"c3", b"f6"]
    assert table.handshake
    assert not parse_nodes(
        b"a1 127.0.0.1:7000@17000 myself,master - 0 0 3 connected\n", ""
    ).handshake
    assert table.primaries[b"c3"].host == "10.0.0.9"  # an empty address: the node asked
    assert table.primaries[b"b2"].port == 7001
    assert table.top_epoch == 4
    shape = parse_info(b"cluster_state:ok\r\ncluster_current_epoch:4\r\ncluster_size:2\r\n")
    assert shape[:2] == (b"ok", b"4")
    assert b"" in shape


def test_a_cluster_client_reading_from_replicas_is_refused() -> None:
    client = RedisCluster(
        startup_nodes=[ClusterNode("127.0.0.1", 7000)],
        load_balancing_strategy=LoadBalancingStrategy.ROUND_ROBIN,
    )
    with pytest.raises(ConfigurationError, match="primaries"):
        RedisStore(client)
