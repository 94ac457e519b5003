"""Each process's view of revoked sessions, kept current by a real redis-server: messages
from another process's revocations, fallback to the store whenever the view may be stale
(subscriber connection killed, Redis restarted or paused, subscriber task dead), and
recovery. Two RedisStore instances on one prefix stand for two worker processes; the same
on real uvicorn workers is in test_workers.py.

Waits are bounded polls (a message takes a millisecond or two; the bounds are seconds).
"""

from __future__ import annotations

import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from fastapi_authkit import ConfigurationError, StoreUnavailableError
from fastapi_authkit.stores import MemoryStore, RedisStore
from fastapi_authkit.stores.sealing import token_id

from tests.support.clock import T0
from tests.support.redis_servers import RedisServer
from tests.support.views import ABSOLUTE, REVOKE_UNHEARD, Worker, two_workers
from tests.support.waiting import eventually

pytestmark = pytest.mark.anyio


@pytest.fixture
async def prefix() -> str:
    return f"rv-{uuid.uuid4().hex}:"


@pytest.fixture
async def two(redis_server: RedisServer, prefix: str) -> AsyncIterator[tuple[Worker, Worker]]:
    async with two_workers(redis_server.url, prefix) as pair:
        yield pair


async def test_a_revocation_in_one_process_reaches_the_others_view(
    two: tuple[Worker, Worker],
) -> None:
    a, b = two
    family, refresh = await a.sign_in()
    await eventually(lambda: a.served_from_view(family))
    await eventually(lambda: b.served_from_view(family))
    assert await b.revoke(family, refresh) == family
    assert b.known(family) is False  # the revoking process at once, not on the echo
    await eventually(lambda: a.known(family) is False)  # the other one by the message


async def test_every_kind_of_revocation_is_published(two: tuple[Worker, Worker]) -> None:
    a, b = two
    laptop, _ = await a.sign_in("carol")
    phone, _ = await a.sign_in("carol")
    reused, reused_refresh = await a.sign_in("dave")
    for family in (laptop, phone, reused):
        await eventually(lambda family=family: b.served_from_view(family))
    # "Sign out everywhere": every family of the subject, one message.
    assert await a.store.revoke_subject("carol") == 2
    # Reuse detection: rotate, use the successor, then present the rotated-out token again.
    options: dict[str, Any] = {"grace": 0.0, "idle_ttl": 3600.0, "family_id": reused}
    tid = token_id(reused_refresh, "refresh")
    first = await a.store.rotate(tid, now=T0, successor_id="s1", sealed=b"x", **options)
    assert first.status == "rotated"
    used = await a.store.rotate("s1", now=T0 + 1, successor_id="s2", sealed=b"y", **options)
    assert used.status == "rotated"
    reuse = await a.store.rotate(tid, now=T0 + 2, successor_id="s3", sealed=b"z", **options)
    assert reuse.status == "reuse"
    for family in (laptop, phone, reused):
        await eventually(lambda family=family: b.known(family) is False)


async def test_the_absolute_expiry_is_refused_locally_at_that_instant(
    two: tuple[Worker, Worker],
) -> None:
    a, _ = two
    family, _ = await a.sign_in()
    await eventually(lambda: a.served_from_view(family))
    assert a.store.known_active(family, T0 + ABSOLUTE - 1) is True
    assert a.store.known_active(family, T0 + ABSOLUTE) is False  # no message, no round trip


async def test_killed_subscriber_connection_falls_back_then_recovers(
    two: tuple[Worker, Worker], redis_server: RedisServer, prefix: str
) -> None:
    a, b = two
    family, refresh = await a.sign_in()
    await eventually(lambda: a.served_from_view(family))
    admin = Redis.from_url(redis_server.url)
    try:
        await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        await eventually(lambda: a.known(family) is None)  # dropped at once: fallback
        await eventually(lambda: a.served_from_view(family))  # resubscribed, learned again
        # The new subscription carries revocations again.
        await b.revoke(family, refresh)
        await eventually(lambda: a.known(family) is False)
    finally:
        await admin.aclose()


async def test_a_revocation_published_while_reconnecting_is_not_lost(
    two: tuple[Worker, Worker], redis_server: RedisServer, prefix: str
) -> None:
    a, _ = two
    family, _ = await a.sign_in()
    await eventually(lambda: a.served_from_view(family))
    admin = Redis.from_url(redis_server.url)
    revoke_unheard = admin.register_script(REVOKE_UNHEARD)
    try:
        hit = 0
        for _ in range(200):
            await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            hit = await revoke_unheard(
                keys=[f"{prefix}fam:{family}"], args=[f"{prefix}rev", family]
            )
            if hit:
                break
        assert hit, "never caught the process between two subscriptions"
        # However the process learns of it, it is never "live" again.
        await eventually(lambda: a.known(family) is not True and a.store._view.current)
        assert not await a.store.family_active(family, T0)
        assert a.known(family) is False
    finally:
        await admin.aclose()


async def test_redis_restarted_leaves_no_stale_live_answer(own_redis: RedisServer) -> None:
    prefix = "restart:"
    a = Worker(RedisStore.from_url(own_redis.url, prefix=prefix, timeout=0.3))
    admin = None
    try:
        family, _ = await a.sign_in()
        await eventually(lambda: a.served_from_view(family))
        own_redis.kill()
        await eventually(lambda: a.known(family) is None)  # the lost connection drops it
        own_redis.start()
        # Revoked in the restarted Redis without any message (as if the revocation had
        # happened where this process could not hear it): only the store can say so.
        admin = Redis.from_url(own_redis.url)
        await admin.hset(f"{prefix}fam:{family}", "rev", "1")
        await eventually(lambda: a.store._view.current)  # subscribed again
        assert a.known(family) is None  # what it knew before the restart is gone
        answers: list[bool] = []

        async def asked() -> bool:
            try:  # the first call may find the pool's connection closed by the restart
                answers.append(await a.store.family_active(family, T0))
            except StoreUnavailableError:
                return False
            return True

        await eventually(asked)
        assert answers == [False]
        assert a.known(family) is False
    finally:
        if admin is not None:
            await admin.aclose()
        await a.store.aclose()


async def test_heartbeats_that_stop_coming_back_end_the_trust(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis that stops answering (paused: no connection error at all) is noticed by the
    heartbeat alone: after max_lag the view says "ask", and the store then fails closed."""
    a = Worker(RedisStore.from_url(own_redis.url, prefix="paused:", timeout=0.3))
    try:
        family, _ = await a.sign_in()
        await eventually(lambda: a.served_from_view(family))
        assert own_redis.process is not None
        subscriber = a.store._subscriber
        assert subscriber is not None
        task = subscriber.task
        own_redis.process.send_signal(signal.SIGSTOP)
        try:
            paused = time.monotonic()
            await eventually(lambda: a.known(family) is None, within=2.0)
            assert time.monotonic() - paused < 1.0  # bounded by max_lag, not by a timeout
            # Still no heartbeat back (the heartbeat's epoch read timing out first, or after
            # a second the heartbeat itself): the connection counts as stuck and is replaced
            # (the new one waits for Redis like every other call).
            with caplog.at_level(logging.WARNING, logger="fastapi_authkit"):
                await eventually(
                    lambda: "no heartbeat back" in caplog.text or "Timeout" in caplog.text,
                    within=3.0,
                )
        finally:
            own_redis.process.send_signal(signal.SIGCONT)
        await eventually(lambda: a.served_from_view(family))
        assert subscriber.task is task  # the same task, reconnected
    finally:
        await a.store.aclose()


async def test_a_dead_subscriber_task_falls_back_then_is_restarted(
    two: tuple[Worker, Worker],
) -> None:
    a, _ = two
    family, _ = await a.sign_in()
    await eventually(lambda: a.served_from_view(family))
    subscriber = a.store._subscriber
    assert subscriber is not None
    task = subscriber.task
    assert task is not None
    task.cancel()  # whatever killed it
    await eventually(lambda: task.done())
    assert a.known(family) is None
    await eventually(lambda: a.served_from_view(family))  # the next store call restarts it
    assert subscriber.task is not task


async def test_a_subscriber_that_crashes_is_logged_and_restarted(
    two: tuple[Worker, Worker], caplog: pytest.LogCaptureFixture
) -> None:
    a, _ = two
    subscriber = a.store._subscriber
    assert subscriber is not None
    real_open = subscriber._open
    opened: list[str] = []

    async def crashing() -> Any:
        opened.append("crash")
        raise ValueError("a bug in the subscriber")

    subscriber._open = crashing  # the seam the connection sits behind
    family, _ = await a.sign_in()
    task = subscriber.task
    assert task is not None
    await eventually(lambda: task.done())
    assert a.known(family) is None  # nothing trusted from a dead subscriber
    subscriber._open = real_open
    with caplog.at_level(logging.ERROR, logger="fastapi_authkit"):
        assert await a.store.family_active(family, T0)  # the next call restarts it
    assert "revocation subscriber died; restarting it" in caplog.text
    await eventually(lambda: a.served_from_view(family))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_lag": 0}, "max_lag"),
        ({"max_lag": float("inf")}, "max_lag"),
        ({"max_lag": True}, "max_lag"),
        ({"view_size": -1}, "view_size"),
        ({"view_size": 1.5}, "view_size"),
    ],
)
async def test_the_view_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisStore.from_url("redis://127.0.0.1:9/0", **options)


async def test_without_a_view_every_check_asks_redis(
    redis_server: RedisServer, prefix: str
) -> None:
    worker = Worker(RedisStore.from_url(redis_server.url, prefix=prefix, view_size=0))
    try:
        family, _ = await worker.sign_in()
        for _ in range(3):
            assert await worker.store.family_active(family, T0)
            assert worker.known(family) is None
        assert worker.store._subscriber is None
    finally:
        await worker.store.aclose()


async def test_aclose_stops_the_subscriber(redis_server: RedisServer, prefix: str) -> None:
    store = RedisStore.from_url(redis_server.url, prefix=prefix)
    assert not await store.family_active("nobody", T0)
    subscriber = store._subscriber
    assert subscriber is not None
    task = subscriber.task
    assert task is not None
    await store.aclose()
    assert task.done()
    assert subscriber.task is None


async def test_the_memory_store_view_is_the_store_itself() -> None:
    store = MemoryStore()
    await store.create_family(
        family_id="f", subject="s", token_id="t", now=T0, idle_ttl=10, absolute_ttl=100
    )
    assert store.known_active("f", T0) is True
    assert store.known_active("f", T0 + 100) is False
    assert store.known_active("unknown", T0) is False
    await store.revoke_token_family("t", family_id="f")
    assert store.known_active("f", T0) is False
