"""The example app under a real ``uvicorn --workers 2`` sharing a real redis-server (and a
real 3-primary Redis Cluster): exactly-once refresh across processes, reuse detection, and
a Redis outage mid-run."""

from __future__ import annotations

import time
from itertools import zip_longest
from pathlib import Path

import anyio
import httpx2
import pytest

from tests.support.example_server import PINNED, run_example_app
from tests.support.http_client import CookieKeeper, until_unavailable
from tests.support.redis_cluster import RedisClusterServers
from tests.support.redis_servers import RedisServer

pytestmark = pytest.mark.realserver

ACCESS_TTL = 2
GRACE = 2
SECRET = "workers-test-secret-0123456789abcdef0123"
AUTH_COOKIES = {"_auth", "_auth_type", "_auth_state", "_auth_refresh", "_auth_csrf"}


def _env(redis: RedisServer | RedisClusterServers) -> dict[str, str]:
    return {
        "AUTHKIT_SECRET": SECRET,
        "AUTHKIT_ACCESS_TTL": str(ACCESS_TTL),
        "AUTHKIT_REFRESH_GRACE": str(GRACE),
        "AUTHKIT_REDIS_URL": redis.url,
    }


def _server_logs(tmp_path: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-4000:] for p in tmp_path.glob("uvicorn-*.log"))


def _login(client: httpx2.Client, cookies: CookieKeeper) -> None:
    response = client.post("/login", data={"username": "demo", "password": "demo"})
    assert response.status_code == 303, response.text
    cookies.update(response)


async def _sign_in(base_url: str) -> CookieKeeper:
    cookies = CookieKeeper()
    async with httpx2.AsyncClient(base_url=base_url, timeout=10.0) as client:
        response = await client.post("/login", data={"username": "demo", "password": "demo"})
    assert response.status_code == 303, response.text
    cookies.update(response)
    return cookies


async def _storm_on_both_workers(
    base_url: str, n: int
) -> tuple[list[httpx2.Response], CookieKeeper, dict[str, str], dict[str, str]]:
    """``n`` concurrent requests with the same expired access token, on keep-alive
    connections known to be held by both workers; returns the responses, the session's
    cookies before the storm and the (stale) request headers.

    Connections are opened first, one at a time, and each is asked which worker holds it:
    a burst of new connections would be accepted by whichever worker wakes first (asyncio
    accepts a whole backlog at once), so both workers are only certain to take part this
    way. A scout session asks, following its own refreshes as a browser does: on a busy
    machine this can outlast the 2 s access token, and a session whose refresh token was
    rotated in the meantime would meet the storm as a reused token. Then the storm's own
    session signs in, its access token expires (the example refreshes only then: interval
    min(10, ttl // 3) = 0), and the storm runs.
    """
    scout = await _sign_in(base_url)
    by_worker: dict[int, list[httpx2.AsyncClient]] = {}
    clients: list[httpx2.AsyncClient] = []
    try:
        for _ in range(10 * n):
            if len(by_worker) == 2 and min(len(c) for c in by_worker.values()) >= n // 2:
                break
            client = httpx2.AsyncClient(base_url=base_url, timeout=20.0, limits=PINNED)
            clients.append(client)
            response = await client.get("/api/me", headers=scout.headers())
            client.cookies.clear()
            assert response.status_code == 200, response.text
            scout.update(response)
            by_worker.setdefault(response.json()["worker"], []).append(client)
        assert len(by_worker) == 2, f"only worker {set(by_worker)} accepted connections"
        # Alternating between the workers.
        chosen = [c for pair in zip_longest(*by_worker.values()) for c in pair if c is not None][:n]
        cookies = await _sign_in(base_url)
        before = cookies.values()
        await anyio.sleep(ACCESS_TTL + 0.5)  # the access token expires (the keeper drops it)
        stale = cookies.headers()
        responses: list[httpx2.Response] = []

        async def one(client: httpx2.AsyncClient) -> None:
            responses.append(await client.get("/api/me", headers=stale))

        async with anyio.create_task_group() as tg:
            for client in chosen:
                tg.start_soon(one, client)
        return responses, cookies, before, stale
    finally:
        for client in clients:
            await client.aclose()


@pytest.mark.parametrize("deployment", ["own_redis", "redis_cluster"])
def test_two_workers_refresh_exactly_once(
    tmp_path: Path, request: pytest.FixtureRequest, deployment: str
) -> None:
    redis: RedisServer | RedisClusterServers = request.getfixturevalue(deployment)
    with (
        run_example_app(tmp_path, _env(redis), workers=2) as base_url,
        httpx2.Client(base_url=base_url, timeout=10.0) as client,
    ):
        responses, cookies, before, stale = anyio.run(_storm_on_both_workers, base_url, 40)

        codes = [r.status_code for r in responses]
        assert codes == [200] * 40, (codes, responses[0].text, _server_logs(tmp_path))
        workers = {r.json()["worker"] for r in responses}
        assert len(workers) == 2, f"expected both workers to answer, got {workers}"
        refresh_cookies = set()
        for response in responses:
            set_cookie = CookieKeeper().update(response)
            assert set(set_cookie) == AUTH_COOKIES  # nobody emitted a deletion or less
            assert all(attrs["max-age"] != "0" for attrs in set_cookie.values())
            refresh_cookies.add(set_cookie["_auth_refresh"]["value"])
        assert len(refresh_cookies) == 1  # exactly one successor
        # Byte for byte the same cookies from both workers (the one that rotated and the one
        # that got its sealed pair), Max-Age and the state cookie's timestamp included.
        assert len({tuple(r.headers.get_list("set-cookie")) for r in responses}) == 1
        (successor,) = refresh_cookies
        assert successor != before["_auth_refresh"]

        # The successor works, and rotates in turn once its access token has expired.
        cookies.update(responses[0])
        works = client.get("/api/me", headers=cookies.headers())
        client.cookies.clear()
        assert works.status_code == 200
        # Kept as a browser would: on a busy machine the 2 s access cookie may have run out
        # since the storm, and then this request has rotated the successor already.
        cookies.update(works)
        time.sleep(max(ACCESS_TTL, GRACE) + 0.5)
        rotated = client.get("/api/me", headers=cookies.headers())
        client.cookies.clear()
        assert rotated.status_code == 200
        cookies.update(rotated)
        assert cookies.headers() != stale

        # The rotated-out refresh token after its successor was used: theft. Family revoked.
        reuse = client.get("/api/me", headers=stale)
        client.cookies.clear()
        assert reuse.status_code == 401
        cleared = CookieKeeper().update(reuse)
        assert set(cleared) == AUTH_COOKIES
        assert all(attrs["max-age"] == "0" for attrs in cleared.values())
        # And the legitimate successor died with its family.
        assert client.get("/api/me", headers=cookies.headers()).status_code == 401


def test_redis_killed_mid_run_then_restarted(tmp_path: Path, own_redis: RedisServer) -> None:
    with (
        run_example_app(tmp_path, _env(own_redis), workers=2) as base_url,
        httpx2.Client(base_url=base_url, timeout=10.0) as client,
    ):
        cookies = CookieKeeper()
        _login(client, cookies)
        signed_in = client.get("/api/me", headers=cookies.headers())
        client.cookies.clear()
        assert signed_in.status_code == 200
        # On a busy machine the 2 s access cookie may have run out since the sign-in, and
        # this request refreshed: the browser keeps the rotated cookies.
        cookies.update(signed_in)
        own_redis.kill()
        until_unavailable(lambda: client.get("/api/me", headers=cookies.headers()))
        for _ in range(4):  # both workers, whichever answers
            response = client.get("/api/me", headers=cookies.headers())
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "5"
            assert response.headers.get_list("set-cookie") == []
        assert client.get("/login").status_code == 200  # public pages still answer
        time.sleep(ACCESS_TTL + 0.5)  # a refresh falls due while Redis is down
        response = client.get("/api/me", headers=cookies.headers())
        assert response.status_code == 503
        assert response.headers.get_list("set-cookie") == []
        own_redis.start()
        response = client.get("/api/me", headers=cookies.headers())
        assert response.status_code == 200, response.text
        assert "_auth_refresh" in CookieKeeper().update(response)
