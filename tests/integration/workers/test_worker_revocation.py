"""Revocation across real ``uvicorn --workers 2`` processes sharing a real redis-server (the
example app): each worker answers from its own view of revoked sessions, so these check
that the view never outlives a revocation made elsewhere, and that it falls back to asking
Redis whenever it could be stale.

Which worker answers is pinned by keep-alive connections (the example's /api/me names its
worker). Whether a request was answered from a worker's view or by asking Redis is read
from Redis itself: the session check is an HMGET of the session's family, counted in
``INFO commandstats`` (no refresh runs in these tests, so no script adds to the count).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.example_server import run_example_app
from tests.support.example_site import CHANNEL, Site, family_of, site_env
from tests.support.http_client import CookieKeeper
from tests.support.redis_servers import RedisServer
from tests.support.waiting import eventually_sync

pytestmark = pytest.mark.realserver

BOUND = 5.0  # seconds any wait here may take (a message takes a millisecond or two)


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("revocation-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, module_redis: RedisServer) -> Iterator[Site]:
    directory = tmp_path_factory.mktemp("revocation-site")
    with run_example_app(directory, site_env(module_redis), workers=2) as base_url:
        site = Site(base_url, module_redis)
        try:
            yield site
        finally:
            site.close()


def test_sign_out_in_one_worker_is_refused_by_the_other(site: Site) -> None:
    jar = site.sign_in()
    site.served_from_views(jar)
    revoking, other = sorted(site.workers)
    assert site.post(revoking, jar, "/logout").json()["revoked"] is True
    site.refused_by(other, jar)
    site.refused_by(revoking, jar)


def test_sign_out_everywhere_in_one_worker_is_refused_by_the_other(site: Site) -> None:
    laptop, phone = site.sign_in(), site.sign_in()
    site.served_from_views(laptop)
    site.served_from_views(phone)
    other, revoking = sorted(site.workers)
    assert site.post(revoking, phone, "/logout-everywhere").json()["revoked"] is True
    site.refused_by(other, laptop)
    site.refused_by(other, phone)


def test_reuse_detected_in_one_worker_is_refused_by_the_other(site: Site) -> None:
    jar = site.sign_in()
    site.served_from_views(jar)
    revoking, other = sorted(site.workers)
    stale = {k: v for k, v in jar.items() if k != "_auth"}  # refresh: no access token
    rotated = site.get(revoking, stale)
    assert rotated.status_code == 200
    keeper = CookieKeeper()
    assert "_auth_refresh" in keeper.update(rotated)
    successor = {k: v for k, v in {**stale, **keeper.values()}.items() if k != "_auth"}
    assert site.get(revoking, successor).status_code == 200  # the successor is used...
    assert site.get(revoking, stale).status_code == 401  # ...so the old token again: theft
    site.refused_by(other, jar)  # its access token is unexpired, but the family is revoked


def test_a_session_revoked_by_id_in_one_worker_is_refused_by_the_other(site: Site) -> None:
    laptop, phone = site.sign_in(), site.sign_in()
    site.served_from_views(laptop)
    site.served_from_views(phone)
    revoking, other = sorted(site.workers)
    listed = site.get(revoking, laptop, "/api/sessions").json()
    assert family_of(phone) in {session["id"] for session in listed}
    # From the laptop, on one worker: "revoke" on the phone's row of the sessions page.
    response = site.send("DELETE", revoking, laptop, f"/api/sessions/{family_of(phone)}")
    assert response.json() == {"revoked": True, "signed_out": False}
    site.refused_by(other, phone)  # its access token is unexpired, but the family is revoked
    site.refused_by(revoking, phone)
    for worker in site.workers:  # the laptop is untouched
        assert site.get(worker, laptop).status_code == 200
    listed = site.get(other, laptop, "/api/sessions").json()
    assert family_of(phone) not in {session["id"] for session in listed}


def test_the_demos_failure_switch_is_shared_by_the_workers(site: Site) -> None:
    jar = site.sign_in()
    first, second = sorted(site.workers)
    stale = {k: v for k, v in jar.items() if k != "_auth"}  # no access token: must refresh
    try:
        switched = site.send("PUT", first, jar, "/api/token-endpoint", json={"failing": True})
        assert switched.json() == {"failing": True}
        failed = site.get(second, stale)
        assert failed.status_code == 503
        assert failed.headers["retry-after"] == "5"
        assert failed.headers.get_list("set-cookie") == []  # nothing cleared
    finally:
        site.send("PUT", second, jar, "/api/token-endpoint", json={"failing": False})
    recovered = site.get(first, stale)
    assert recovered.status_code == 200
    assert "_auth_refresh" in CookieKeeper().update(recovered)  # the same session, rotated


def test_killed_subscriber_connections_fall_back_then_recover(site: Site) -> None:
    jar = site.sign_in()
    site.served_from_views(jar)
    site.redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    eventually_sync(lambda: site.subscribers() == 2)  # both workers subscribed again
    for worker in site.workers:
        # What each knew before the connection was lost is gone: it asks Redis...
        assert site.asks_redis(worker, jar)
    site.served_from_views(jar)  # ...until its new subscription proves its view current


def test_a_revocation_published_while_the_workers_reconnect_is_not_lost(site: Site) -> None:
    jar = site.sign_in()
    site.served_from_views(jar)
    # Revokes and publishes in one script, and only while no worker is subscribed: this
    # revocation's message reaches nobody, by construction.
    revoke_unheard = site.redis.register_script(
        """
        if redis.call('PUBSUB', 'NUMSUB', ARGV[1])[2] > 0 then return 0 end
        redis.call('HSET', KEYS[1], 'rev', '1')
        redis.call('PUBLISH', ARGV[1], ARGV[2])
        return 1
        """
    )
    family = family_of(jar)
    for _ in range(500):
        site.redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        if revoke_unheard(keys=[f"authkit:fam:{family}"], args=[CHANNEL, family]):
            break
    else:
        pytest.fail("never caught both workers between two subscriptions")
    for worker in site.workers:
        site.refused_by(worker, jar)


def test_redis_restarted_leaves_no_stale_live_answer(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    with run_example_app(tmp_path, site_env(own_redis), workers=2) as base_url:
        site = Site(base_url, own_redis)
        try:
            jar = site.sign_in()
            site.served_from_views(jar)
            site.redis.close()
            own_redis.kill()
            own_redis.start()
            site.redis = redis.Redis.from_url(own_redis.url)
            # Revoked in the restarted Redis with no message at all, as if it had happened
            # where the workers could not hear it: only asking Redis can find out.
            site.redis.hset(f"authkit:fam:{family_of(jar)}", "rev", "1")
            for worker in site.workers:

                def refused(worker: int = worker) -> bool:
                    response = site.get(worker, jar)
                    assert response.status_code in (401, 503), response.text  # never 200
                    return response.status_code == 401

                eventually_sync(refused)
        finally:
            site.close()


def test_the_absolute_lifetime_ends_in_every_worker_without_a_message(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    """A session ends at its absolute lifetime (6 s here) in every worker, by each worker's
    own view (the end is known with the session), though its access token is still valid."""
    env = site_env(
        own_redis,
        AUTHKIT_ACCESS_TTL="5",  # refreshed in its last second
        AUTHKIT_REFRESH_TTL="6",
        AUTHKIT_ABSOLUTE_TTL="6",
        AUTHKIT_REFRESH_GRACE="1",
    )
    with run_example_app(tmp_path, env, workers=2) as base_url:
        site = Site(base_url, own_redis)
        try:
            started = time.time()
            jar = site.sign_in()
            ends = started + 6  # the session's absolute end is no earlier than this
            time.sleep(max(0.0, started + 3 - time.time()))
            worker = next(iter(site.workers))
            refreshed = site.get(worker, {k: v for k, v in jar.items() if k != "_auth"})
            assert refreshed.status_code == 200
            keeper = CookieKeeper()
            assert "_auth" in keeper.update(refreshed)
            jar = {**jar, **keeper.values()}  # valid until t+8 at least, due at t+7
            site.served_from_views(jar)
            assert time.time() < ends - 0.5, "too slow to observe the end"
            for worker in site.workers:
                site.refused_by(worker, jar)  # (the first 401s come at the end)
            assert time.time() >= ends - 0.1
            assert time.time() < ends + BOUND
        finally:
            site.close()
