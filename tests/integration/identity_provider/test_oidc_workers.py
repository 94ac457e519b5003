"""Issue 16 on two uvicorn workers sharing Redis, behind the real oidc-provider: a storm of
requests on both workers refreshes once; the provider rotates the refresh token but its
access token does not verify here (wrong audience); every response carries the same
successor, no worker presents the rotated-out token again, and once the provider is fixed
the session continues with the successor."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import httpx2
import pytest

from tests.support.example_server import run_example_app
from tests.support.http_client import CookieKeeper
from tests.support.oidc_flow import code_flow
from tests.support.oidc_server import API, OIDCProviderServer
from tests.support.redis_servers import RedisServer

pytestmark = pytest.mark.realserver

# Long enough for the warm-up (opening connections held by both workers) on a busy machine:
# the token must expire only once every connection is open.
ACCESS_TTL = 8
SECRET = "oidc-workers-test-secret-0123456789abcdef"
N = 12


async def _storm(base_url: str, fresh: dict[str, str], stale_after: float) -> list[httpx2.Response]:
    """``N`` requests at once on keep-alive connections known to be held by both workers,
    with cookies whose access token has expired by then."""
    by_worker: dict[int, list[httpx2.AsyncClient]] = {}
    clients: list[httpx2.AsyncClient] = []
    try:
        for _ in range(10 * N):
            if len(by_worker) == 2 and min(len(c) for c in by_worker.values()) >= N // 2:
                break
            client = httpx2.AsyncClient(
                base_url=base_url, timeout=20.0, limits=httpx2.Limits(max_connections=1)
            )
            clients.append(client)
            response = await client.get("/api/me", headers=fresh)
            assert response.status_code == 200, response.text
            by_worker.setdefault(response.json()["worker"], []).append(client)
        assert len(by_worker) == 2, f"only worker {set(by_worker)} accepted connections"
        chosen = [c for pair in zip(*by_worker.values(), strict=False) for c in pair][:N]
        await anyio.sleep(max(0.0, stale_after - time.time()))
        responses: list[httpx2.Response] = []

        async def one(client: httpx2.AsyncClient) -> None:
            responses.append(await client.get("/api/me", headers=fresh))

        async with anyio.create_task_group() as tg:
            for client in chosen:
                tg.start_soon(one, client)
        return responses
    finally:
        for client in clients:
            await client.aclose()


def test_two_workers_keep_the_rotated_refresh_token(tmp_path: Path, own_redis: RedisServer) -> None:
    provider = OIDCProviderServer(
        tmp_path, redirect_uris=["https://app.test/auth/callback"], access_ttl=ACCESS_TTL
    )
    provider.start()
    env = {
        "AUTHKIT_SECRET": SECRET,
        "AUTHKIT_REDIS_URL": own_redis.url,
        "AUTHKIT_OIDC_ISSUER": provider.issuer,
        "AUTHKIT_OIDC_CLIENT_ID": provider.client_options["client_id"],
        "AUTHKIT_OIDC_CLIENT_SECRET": provider.client_options["client_secret"],
        "AUTHKIT_OIDC_AUDIENCE": API,
    }
    try:
        with (
            run_example_app(
                tmp_path,
                env,
                workers=2,
                app="tests.support.oidc_worker_app:app",
                ready_path="/health",
            ) as base_url,
            httpx2.Client(base_url=base_url, timeout=10.0) as browser,
        ):
            assert code_flow(browser, provider).status_code == 303
            signed_in_at = time.time()
            cookies = dict(browser.cookies.items())
            header = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
            assert browser.get("/api/me").status_code == 200
            browser.cookies.clear()

            provider.restart(audience="https://another-api.test")  # misconfigured
            responses = anyio.run(_storm, base_url, header, signed_in_at + ACCESS_TTL + 0.5)
            assert {r.status_code for r in responses} == {503}
            successors = set()
            for response in responses:
                written = CookieKeeper().update(response)
                assert set(written) == {"_auth_state", "_auth_refresh", "_auth_csrf"}
                successors.add(written["_auth_refresh"]["value"])
            assert len(successors) == 1  # one refresh, one successor, on both workers
            (successor,) = successors
            assert successor != cookies["_auth_refresh"]
            assert provider.presented_refresh_tokens() == [cookies["_auth_refresh"]]

            provider.restart(audience=API)  # fixed
            jar = CookieKeeper()
            jar._cookies = {k: (v, time.monotonic() + 3600) for k, v in cookies.items()}
            jar.update(responses[0])
            for _ in range(6):
                response = browser.get("/api/me", headers=jar.headers())
                browser.cookies.clear()
                assert response.status_code == 200, response.text
                jar.update(response)
            presented = provider.presented_refresh_tokens()
            assert presented == [cookies["_auth_refresh"], successor]
            assert [e for e in provider.log() if e["event"] == "grant.error"] == []
    finally:
        provider.stop()
