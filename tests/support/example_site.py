"""The example app on ``uvicorn --workers 2`` sharing a redis-server, seen from outside: one
pinned keep-alive connection per worker (the example's /api/me names its worker), and the
Redis commands that say whether a request asked Redis or a worker's view."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx2
import redis

from tests.support.example_server import PINNED
from tests.support.http_client import CookieKeeper
from tests.support.redis_servers import RedisServer
from tests.support.waiting import eventually_sync

SECRET = "revocation-test-secret-0123456789abcdef01"
CHANNEL = "authkit:rev"  # RedisStore.from_url's default prefix + "rev"


def site_env(server: RedisServer, **extra: str) -> dict[str, str]:
    return {
        "AUTHKIT_SECRET": SECRET,
        "AUTHKIT_ACCESS_TTL": "120",
        "AUTHKIT_REFRESH_GRACE": "0",  # a rotated-out refresh token presented again is reuse
        "AUTHKIT_REDIS_URL": server.url,
        **extra,
    }


class Site:
    """The example app on two workers: one pinned connection to each, and Redis."""

    def __init__(self, base_url: str, server: RedisServer) -> None:
        self.base_url = base_url
        self.redis = redis.Redis.from_url(server.url)
        self._clients: list[httpx2.Client] = []
        self.workers: dict[int, httpx2.Client] = {}

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self.redis.close()

    def sign_in(self) -> dict[str, str]:
        jar = CookieKeeper()
        with httpx2.Client(base_url=self.base_url, timeout=10.0) as client:
            response = client.post("/login", data={"username": "demo", "password": "demo"})
        assert response.status_code == 303, response.text
        jar.update(response)
        if not self.workers:
            self._pin(jar.values())
        return jar.values()

    def _pin(self, jar: dict[str, str]) -> None:
        for _ in range(100):
            if len(self.workers) == 2:
                return
            client = httpx2.Client(base_url=self.base_url, timeout=10.0, limits=PINNED)
            self._clients.append(client)
            response = client.get("/api/me", headers=cookie_header(jar))
            assert response.status_code == 200, response.text
            self.workers.setdefault(response.json()["worker"], client)
        raise AssertionError(f"only worker(s) {sorted(self.workers)} accepted connections")

    def get(self, worker: int, jar: dict[str, str], path: str = "/api/me") -> httpx2.Response:
        return self.workers[worker].get(path, headers=cookie_header(jar))

    def post(self, worker: int, jar: dict[str, str], path: str) -> httpx2.Response:
        headers = {**cookie_header(jar), "x-csrf-token": jar["_auth_csrf"]}
        return self.workers[worker].post(path, headers=headers)

    def send(
        self, method: str, worker: int, jar: dict[str, str], path: str, **options: Any
    ) -> httpx2.Response:
        """An unsafe-method request with the CSRF header (``options`` as for httpx)."""
        headers = {**cookie_header(jar), "x-csrf-token": jar["_auth_csrf"]}
        return self.workers[worker].request(method, path, headers=headers, **options)

    def store_reads(self) -> int:
        return int(self.redis.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0))

    def asks_redis(self, worker: int, jar: dict[str, str]) -> bool:
        """One request on ``worker``; whether it asked Redis (True) or its view."""
        before = self.store_reads()
        response = self.get(worker, jar)
        assert response.status_code == 200, response.text
        return self.store_reads() > before

    def served_from_views(self, jar: dict[str, str]) -> None:
        """Both workers answer for the session from their views (after a first request
        that taught them, if needed)."""
        for worker in self.workers:
            eventually_sync(lambda worker=worker: not self.asks_redis(worker, jar))

    def refused_by(self, worker: int, jar: dict[str, str]) -> None:
        def refused() -> bool:
            response = self.get(worker, jar)
            assert response.status_code in (200, 401), response.text
            return response.status_code == 401

        eventually_sync(refused)
        response = self.get(worker, jar)  # and it stays refused
        assert response.status_code == 401
        assert all(v.get("max-age") == "0" for v in CookieKeeper().update(response).values())

    def subscribers(self) -> int:
        return int(self.redis.pubsub_numsub(CHANNEL)[0][1])


def cookie_header(jar: dict[str, str]) -> dict[str, str]:
    return {"cookie": "; ".join(f"{k}={v}" for k, v in jar.items())} if jar else {}


def family_of(jar: dict[str, str]) -> str:
    payload = jar["_auth"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["sid"])
