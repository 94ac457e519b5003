"""Two uvicorn workers sharing Redis, behind the real oidc-provider.

Provider tokens as the session (issue 16): a storm of requests on both workers refreshes
once; the provider rotates the refresh token but its access token does not verify here
(wrong audience); every response carries the same successor, no worker presents the
rotated-out token again, and once the provider is fixed the session continues with the
successor.

Social sign-in into the issuer's sessions (issue 24): started on one worker, completed on
the other, the callback replayed on the first refused before the token endpoint; the
session refreshes on either worker and sign-out on one ends it on both."""

from __future__ import annotations

import time
from http.cookiejar import CookieJar, DefaultCookiePolicy
from pathlib import Path

import anyio
import httpx2
import pytest

from tests.support.example_server import PINNED, run_example_app
from tests.support.http_client import CookieKeeper
from tests.support.oidc_flow import at_provider, code_flow
from tests.support.oidc_server import API, OIDCProviderServer
from tests.support.redis_servers import RedisServer

pytestmark = pytest.mark.realserver

# The provider's access tokens: alive through the sign-in and its first /api/me, then
# waited out for real before the storm.
ACCESS_TTL = 8
SECRET = "oidc-workers-test-secret-0123456789abcdef"
N = 12
ISSUER_ACCESS_TTL = 2  # short: waited out for real, within the server's keep-alive
REDIRECT = "https://app.test/auth/callback"


def _app_env(provider: OIDCProviderServer, redis: RedisServer, **mode: str) -> dict[str, str]:
    """tests/support/oidc_worker_app.py's environment; ``mode`` chooses the deployment."""
    return {
        "AUTHKIT_SECRET": SECRET,
        "AUTHKIT_REDIS_URL": redis.url,
        "AUTHKIT_OIDC_ISSUER": provider.issuer,
        "AUTHKIT_OIDC_CLIENT_ID": provider.client_options["client_id"],
        "AUTHKIT_OIDC_CLIENT_SECRET": provider.client_options["client_secret"],
        **mode,
    }


async def _storm(base_url: str, fresh: dict[str, str], stale_after: float) -> list[httpx2.Response]:
    """``N`` requests at once on keep-alive connections known to be held by both workers,
    with cookies whose access token has expired by then. The connections are opened once it
    has expired, on a route without authentication: no request before the storm depends on
    how long the token still lives (the provider's restart before it can take seconds on a
    busy machine), and none has been idle long enough for uvicorn's keep-alive to close it."""
    by_worker: dict[int, list[httpx2.AsyncClient]] = {}
    clients: list[httpx2.AsyncClient] = []
    try:
        await anyio.sleep(max(0.0, stale_after - time.time()))
        for _ in range(10 * N):
            if len(by_worker) == 2 and min(len(c) for c in by_worker.values()) >= N // 2:
                break
            client = httpx2.AsyncClient(base_url=base_url, timeout=20.0, limits=PINNED)
            clients.append(client)
            response = await client.get("/health")
            assert response.status_code == 200, response.text
            by_worker.setdefault(int(response.headers["x-worker"]), []).append(client)
        assert len(by_worker) == 2, f"only worker {set(by_worker)} accepted connections"
        chosen = [c for pair in zip(*by_worker.values(), strict=False) for c in pair][:N]
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
    env = _app_env(provider, own_redis, AUTHKIT_OIDC_AUDIENCE=API)
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


class Workers:
    """Keep-alive connections by the worker that holds them: ``on(pid)`` is a client whose
    connection that worker answered just now (so the next request lands there too)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.clients: list[httpx2.Client] = []

    def _open(self) -> tuple[httpx2.Client, int]:
        client = httpx2.Client(
            base_url=self.base_url,
            timeout=20.0,
            limits=PINNED,
            # The test's CookieKeeper is the browser's jar: a client keeping cookies of its
            # own would send stale ones with its pings, refreshing with rotated-out tokens.
            cookies=CookieJar(DefaultCookiePolicy(allowed_domains=[])),
        )
        self.clients.append(client)
        return client, int(client.get("/health").headers["x-worker"])

    def pids(self) -> tuple[int, int]:
        seen: set[int] = set()
        for _ in range(60):
            seen.add(self._open()[1])
            if len(seen) == 2:
                a, b = sorted(seen)
                return a, b
        raise AssertionError(f"only worker {seen} accepted connections")

    def on(self, pid: int) -> httpx2.Client:
        for client in self.clients:  # an open connection to it, still alive
            if int(client.get("/health").headers["x-worker"]) == pid:
                return client
        for _ in range(60):
            client, answered = self._open()
            if answered == pid:
                return client
        raise AssertionError(f"worker {pid} accepted no new connection")

    def close(self) -> None:
        for client in self.clients:
            client.close()


def _server_log(tmp_path: Path) -> str:
    return "".join(f"\n{log.read_text()}" for log in sorted(tmp_path.glob("uvicorn-*.log")))


def _landed(response: httpx2.Response, pid: int) -> httpx2.Response:
    assert int(response.headers["x-worker"]) == pid, "the request landed on the other worker"
    return response


def test_social_sign_in_across_two_workers(tmp_path: Path, own_redis: RedisServer) -> None:
    provider = OIDCProviderServer(tmp_path, redirect_uris=[REDIRECT])
    provider.settings["apiByDefault"] = False  # oidc-provider's default policy
    provider.start()
    env = _app_env(provider, own_redis, AUTHKIT_ISSUER_ACCESS_TTL=str(ISSUER_ACCESS_TTL))
    try:
        with run_example_app(
            tmp_path, env, workers=2, app="tests.support.oidc_worker_app:app", ready_path="/health"
        ) as base_url:
            workers = Workers(base_url)
            try:
                a, b = workers.pids()
                jar = CookieKeeper()
                start = workers.on(a).get("/auth/login", params={"next": "/api/me"})
                jar.update(_landed(start, a))
                assert start.status_code == 302, start.text
                transaction = jar.headers()
                query = at_provider(provider, start.headers["location"], redirect=REDIRECT)

                done = workers.on(b).get(f"/auth/callback?{query}", headers=jar.headers())
                assert _landed(done, b).status_code == 303, done.text
                assert done.headers["location"] == "/api/me"
                jar.update(done)
                # The same callback, its transaction cookie brought back, on the first worker:
                # the state was claimed in Redis, so it never reaches the token endpoint.
                replay = workers.on(a).get(f"/auth/callback?{query}", headers=transaction)
                assert _landed(replay, a).status_code == 400
                assert "already used" in replay.json()["detail"]
                exchanges = [
                    e for e in provider.log() if e.get("grant_type") == "authorization_code"
                ]
                assert [e["event"] for e in exchanges] == ["grant.success"]

                me = workers.on(a).get("/api/me", headers=jar.headers())
                assert _landed(me, a).status_code == 200, me.text
                assert me.json()["user"] == {"email": "alice@example.test"}
                jar.update(me)  # a slow machine may have refreshed already
                # Past the issuer's access-token expiry, three times, on alternating workers.
                for pid in (b, a, b):
                    before = jar.values()["_auth_refresh"]
                    time.sleep(ISSUER_ACCESS_TTL + 0.5)
                    me = workers.on(pid).get("/api/me", headers=jar.headers())
                    assert _landed(me, pid).status_code == 200, me.text + _server_log(tmp_path)
                    assert "_auth_refresh" in jar.update(me)
                    assert jar.values()["_auth_refresh"] != before  # rotated

                refresh = jar.values()["_auth_refresh"]
                csrf = {"x-csrf-token": jar.values()["_auth_csrf"]}
                out = workers.on(a).post("/logout", headers=jar.headers(csrf))
                assert _landed(out, a).status_code == 200, out.text
                jar.update(out)
                assert workers.on(b).get("/api/me", headers=jar.headers()).status_code == 401
                # The refresh token is revoked in Redis: on the other worker it signs no one in.
                alone = {"Cookie": f"_auth_refresh={refresh}"}
                assert _landed(workers.on(b).get("/api/me", headers=alone), b).status_code == 401
            finally:
                workers.close()
    finally:
        provider.stop()
