"""RedisStore's configuration: the URLs ``from_url`` takes (one server, a cluster, Sentinel),
the clients the constructor accepts, and every misconfiguration as a ConfigurationError."""

from __future__ import annotations

import logging
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import anyio
import pytest
import redis
from redis.asyncio import Redis, SSLConnection
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedSSLConnection

from fastapi_authkit import ConfigurationError, StoreUnavailableError
from fastapi_authkit.stores import RedisStore
from fastapi_authkit.stores.redis.keys import KeyLayout

from tests.support.clock import Clock
from tests.support.redis_cluster import RedisClusterServers
from tests.support.redis_sentinel import SentinelSet
from tests.support.redis_servers import RedisServer

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://user:pw@127.0.0.1:6380/1",
        "unix:///run/redis.sock?db=2",
        "redis+cluster://127.0.0.1:7000,127.0.0.2:7001",
        "rediss+cluster://127.0.0.1:7000",
        "redis+sentinel://127.0.0.1,127.0.0.2:26380/mymaster/2",
        "rediss+sentinel://127.0.0.1/mymaster",
    ],
)
async def test_no_url_form_warns_when_its_store_is_built(url: str) -> None:
    # Caught explicitly rather than through the suite's warnings-as-errors, so that this
    # test also fails under a runner configured otherwise. A redis-py release once started
    # to warn here on every worker's start (a synchronous Retry given to an asyncio client).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = RedisStore.from_url(url, timeout=0.3)
        await store.aclose()
    assert [str(w.message) for w in caught] == []


async def test_no_deployment_warns_when_its_store_is_used(
    redis_server: RedisServer, redis_cluster: RedisClusterServers, sentinel_set: SentinelSet
) -> None:
    """Connecting and answering, on one server, a cluster and Sentinel: no warning."""
    for url in (redis_server.url, redis_cluster.url, sentinel_set.url):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            store = RedisStore.from_url(url, prefix="warns:")
            assert await store.family_active("no-such-family", now=0.0) is False
            await store.aclose()
        assert [str(w.message) for w in caught] == [], url


async def test_one_server_urls() -> None:
    for url, kind in [
        ("redis://127.0.0.1:6379/0", "single"),
        ("rediss://user:pw@127.0.0.1:6380/1", "single"),
        ("unix:///run/redis.sock?db=2", "single"),
    ]:
        store = RedisStore.from_url(url, timeout=0.3)
        assert store.topology.kind == kind
        assert store.topology.socket_timeout() == 0.3
        await store.aclose()
    store = RedisStore.from_url("rediss://user:pw@127.0.0.1:6380/1")
    client = store.topology.client
    assert isinstance(client, Redis)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["db"]) == ("user", "pw", 1)
    assert client.connection_pool.connection_class is SSLConnection
    await store.aclose()


async def test_cluster_url_lists_its_startup_nodes() -> None:
    store = RedisStore.from_url(
        "redis+cluster://:pw@127.0.0.1:7000,127.0.0.2,[::1]:7002", timeout=0.4
    )
    client = store.topology.client
    assert isinstance(client, RedisCluster)
    assert store.topology.kind == "cluster"
    assert set(client.nodes_manager.startup_nodes) == {
        "127.0.0.1:7000",
        "127.0.0.2:6379",
        "::1:7002",
    }
    assert client.get_connection_kwargs()["password"] == "pw"
    assert store.topology.socket_timeout() == 0.4
    await store.aclose()


async def test_sentinel_url_names_the_service_and_its_sentinels() -> None:
    store = RedisStore.from_url(
        "redis+sentinel://:pw@127.0.0.1,127.0.0.2:26380/mymaster/2?sentinel_password=sp"
    )
    client = store.topology.client
    assert store.topology.kind == "sentinel"
    assert isinstance(client, Redis)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "mymaster"
    assert pool.is_master
    assert (pool.connection_kwargs["password"], pool.connection_kwargs["db"]) == ("pw", 2)
    sentinels = [s.connection_pool.connection_kwargs for s in pool.sentinel_manager.sentinels]
    assert [(s["host"], s["port"], s["password"]) for s in sentinels] == [
        ("127.0.0.1", 26379, "sp"),
        ("127.0.0.2", 26380, "sp"),
    ]
    await store.aclose()
    store = RedisStore.from_url("rediss+sentinel://127.0.0.1/mymaster")
    pool = store.topology.client.connection_pool  # type: ignore[union-attr]
    assert pool.connection_class is SentinelManagedSSLConnection
    await store.aclose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1", "unsupported Redis URL scheme 'http'"),
        ("127.0.0.1:6379", "unsupported Redis URL scheme"),
        ("redis+replica://h", "unsupported"),
        ("unix+cluster:///tmp/s", "over TCP"),
        ("redis+cluster://127.0.0.1:7000/3", "no numbered databases"),
        ("redis+cluster://127.0.0.1:x", "bad port"),
        ("redis+cluster://:pw@", "host is missing"),
        ("redis+sentinel://127.0.0.1:26379", "service name is missing"),
        ("redis+sentinel://127.0.0.1:99999/m", "bad port"),
        ("redis://127.0.0.1:notaport", "bad redis:// URL"),
    ],
)
def test_bad_urls_are_configuration_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisStore.from_url(url)


def test_a_bad_url_does_not_echo_its_password() -> None:
    for url in (
        "redis+sentinel://:hunter2@127.0.0.1/",
        "redis+cluster://:hunter2@127.0.0.1:x",
        "redis://:hunter2@h:x",
    ):
        with pytest.raises(ConfigurationError) as raised:
            RedisStore.from_url(url)
        assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    "client",
    [object(), "redis://127.0.0.1", redis.Redis()],
    ids=["object", "url", "sync-client"],
)
def test_the_constructor_takes_async_clients_only(client: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"redis\.asyncio client"):
        RedisStore(client)


async def test_a_sentinel_replica_client_is_refused() -> None:
    sentinel = Sentinel([("127.0.0.1", 26379)])
    replica = sentinel.slave_for("mymaster")
    with pytest.raises(ConfigurationError, match="master_for"):
        RedisStore(replica)
    store = RedisStore(sentinel.master_for("mymaster"))
    assert store.topology.kind == "sentinel"
    await store.aclose()
    await replica.aclose()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"wait_replicas": -1}, "wait_replicas"),
        ({"wait_replicas": True}, "wait_replicas"),
        ({"wait_replicas": "1"}, "wait_replicas"),
        ({"wait_replicas": 1, "wait_timeout": 0}, "wait_timeout"),
        ({"wait_replicas": 1, "wait_timeout": float("nan")}, "wait_timeout"),
        ({"wait_replicas": 1, "wait_timeout": 0.5}, "shorter than the client's socket_timeout"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": "1"}, "timeout"),
        ({"prefix": ""}, "non-empty"),
        ({"prefix": "auth{kit:"}, "not a complete hash tag"),
        ({"prefix": "auth}kit:"}, "not a complete hash tag"),
        ({"prefix": "{}:"}, "not a complete hash tag"),
    ],
)
def test_store_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisStore.from_url("redis://127.0.0.1", **options)


async def test_wait_timeout_defaults_to_half_the_store_timeout() -> None:
    store = RedisStore.from_url("redis://127.0.0.1", timeout=0.4, wait_replicas=1)
    assert store._gateway.wait_timeout == pytest.approx(0.2)
    await store.aclose()
    # A client without a socket timeout: a fixed default, nothing to be shorter than.
    store = RedisStore(Redis(socket_timeout=None), wait_replicas=1)
    assert store.topology.socket_timeout() is None
    assert store._gateway.wait_timeout == 0.25
    await store.aclose()


def test_a_prefix_with_its_own_hash_tag_pins_one_slot() -> None:
    assert KeyLayout("{authkit}:").one_slot
    assert KeyLayout("a{b}c{:").one_slot  # the first complete tag decides
    assert not KeyLayout("authkit:").one_slot


async def test_cluster_url_to_a_server_without_cluster_mode_is_a_store_outage(
    redis_server: RedisServer, clock: Clock
) -> None:
    """redis-py's cluster errors are not RedisErrors; they must still fail closed."""
    store = RedisStore.from_url(f"redis+cluster://127.0.0.1:{redis_server.port}", timeout=0.5)
    try:
        with pytest.raises(StoreUnavailableError):
            await store.family_active("f", clock())
    finally:
        await store.aclose()


async def test_primaries_of_one_server_is_the_client_itself(redis_server: RedisServer) -> None:
    store = RedisStore.from_url(redis_server.url)
    assert await store.topology.primaries() == [store.topology.client]
    await store.aclose()


def _cluster_node_url(cluster: RedisClusterServers, user: str = "") -> str:
    """A one-server URL to the first node of ``cluster``: the mistake of the next tests."""
    return f"redis://{user}127.0.0.1:{cluster.nodes[0].port}"


def _errors_naming_cluster_url(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR and "redis+cluster://" in r.getMessage()
    ]


async def test_a_one_server_url_to_a_cluster_node_names_the_cluster_url(
    redis_cluster: RedisClusterServers, caplog: pytest.LogCaptureFixture
) -> None:
    """Commands for keys in another node's slots would answer MOVED (a 503 for those
    sessions, forever, and the rest working): the store asks the node at its first call and
    fails closed for every session, the cause logged once and named in each error."""
    url = _cluster_node_url(redis_cluster)
    store = RedisStore.from_url(url, prefix=f"node-{uuid.uuid4().hex}:")
    try:
        with caplog.at_level(logging.ERROR, logger="fastapi_authkit"):
            for family in ("a", "b", "c", "d", "e", "f"):  # slots on every node
                with pytest.raises(StoreUnavailableError, match=r"redis\+cluster://") as raised:
                    await store.family_active(family, now=0.0)
                assert isinstance(raised.value.__cause__, ConfigurationError)
        assert len(_errors_naming_cluster_url(caplog)) == 1, caplog.text
        # The start-up check an app can run in its lifespan says the same.
        with pytest.raises(ConfigurationError, match=r"use redis\+cluster://127\.0\.0\.1:"):
            await store.check()
    finally:
        await store.aclose()


async def test_a_cluster_node_that_refuses_info_is_found_by_its_moved_reply(
    redis_cluster: RedisClusterServers, caplog: pytest.LogCaptureFixture
) -> None:
    """Where INFO is not allowed (an ACL), the first MOVED reply tells instead; from then on
    every call fails closed, also for the sessions on the node the client reached."""
    node = redis_cluster.nodes[0]
    admin = Redis(port=node.port)
    user = f"noinfo{uuid.uuid4().hex[:8]}"
    await admin.acl_setuser(
        user, enabled=True, nopass=True, keys=["*"], channels=["*"], commands=["+@all", "-info"]
    )
    store = RedisStore.from_url(_cluster_node_url(redis_cluster, f"{user}@"), prefix="acl:")
    try:
        refused: list[StoreUnavailableError] = []
        with caplog.at_level(logging.ERROR, logger="fastapi_authkit"):
            for family in (f"f{i}" for i in range(50)):  # the first on another node ends it
                try:
                    assert await store.family_active(family, now=0.0) is False
                except StoreUnavailableError as exc:
                    refused.append(exc)
                    break
            assert len(refused) == 1, "no family of 50 hashed to another node"
            assert "redis+cluster://" in str(refused[0])
            for family in ("f0", "a", "b"):
                with pytest.raises(StoreUnavailableError, match=r"redis\+cluster://"):
                    await store.family_active(family, now=0.0)
        assert len(_errors_naming_cluster_url(caplog)) == 1, caplog.text
    finally:
        await store.aclose()
        await admin.acl_deluser(user)
        await admin.aclose()


async def test_the_start_up_check_passes_on_each_deployment_it_fits(
    redis_server: RedisServer, redis_cluster: RedisClusterServers
) -> None:
    for url in (redis_server.url, redis_cluster.url):
        store = RedisStore.from_url(url, prefix="check:")
        await store.check()
        assert await store.family_active("no-such-family", now=0.0) is False
        await store.aclose()


@pytest.mark.parametrize(("wait", "warned"), [(1, True), (2, False)])
async def test_wait_replicas_below_the_replica_count_is_said_at_the_first_call(
    own_redis: RedisServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    wait: int,
    warned: bool,
) -> None:
    """With two replicas and wait_replicas=1 a failover lost refreshes a replica had
    confirmed (benchmarks/failover.py); the store says so, with the value to set."""
    replicas = [
        RedisServer(tmp_path / f"r{i}", extra=["--replicaof", "127.0.0.1", str(own_redis.port)])
        for i in range(2)
    ]
    try:
        for replica in replicas:
            replica.start()
        with own_redis.control() as control:
            deadline = time.monotonic() + 20
            while int(control.info("replication").get("connected_slaves", 0)) < 2:
                assert time.monotonic() < deadline, "the replicas did not connect within 20 s"
                await anyio.sleep(0.05)
        store = RedisStore.from_url(own_redis.url, prefix="count:", wait_replicas=wait)
        with caplog.at_level(logging.WARNING, logger="fastapi_authkit"):
            assert await store.family_active("none", 0.0) is False
            await store.family_active("none", 0.0)  # said once
        await store.aclose()
        said = [r.getMessage() for r in caplog.records if "wait_replicas" in r.getMessage()]
        assert said == (
            [
                "RedisStore(wait_replicas=1) while the primary has 2 replicas: a failover can "
                "lose refreshes that a replica confirmed; set wait_replicas=2 (docs: "
                "deployments/redis, Failover)"
            ]
            if warned
            else []
        )
    finally:
        for replica in replicas:
            replica.stop()
