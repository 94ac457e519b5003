"""The example app under a real ``uvicorn`` process on loopback, driven over real HTTP.

The auth cookies are ``Secure`` and the server is plain http, so an HTTP client's cookie
jar would never send them back; the test keeps the cookies itself, as a browser would on
https: it reads every ``Set-Cookie``, honours ``Max-Age`` and sends a ``Cookie`` header.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.support.example_server import run_example_app
from tests.support.http_client import CookieKeeper

pytestmark = pytest.mark.realserver

ACCESS_TTL = 2
SECRET = "realserver-test-secret-0123456789abcdef"
AUTH_COOKIES = ("_auth", "_auth_type", "_auth_state", "_auth_refresh", "_auth_csrf")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    env = {"AUTHKIT_SECRET": SECRET, "AUTHKIT_ACCESS_TTL": str(ACCESS_TTL)}
    with run_example_app(tmp_path, env) as base_url:
        yield base_url


def test_login_refresh_logout_against_a_real_uvicorn(server: str) -> None:
    cookies = CookieKeeper()
    with httpx2.Client(base_url=server, timeout=10.0, follow_redirects=False) as client:

        def send(
            method: str,
            path: str,
            *,
            headers: dict[str, str] | None = None,
            data: dict[str, str] | None = None,
        ) -> httpx2.Response:
            response = client.request(method, path, headers=cookies.headers(headers), data=data)
            client.cookies.clear()  # the client's own jar plays no part
            return response

        # Sign in with the form.
        login = send("POST", "/login", data={"username": "demo", "password": "demo"})
        assert login.status_code == 303, login.text
        assert login.headers["location"] == "/"
        issued = cookies.update(login)
        assert set(issued) == set(AUTH_COOKIES)
        assert all("secure" in attrs for attrs in issued.values())

        me = send("GET", "/api/me")
        assert me.status_code == 200, me.text
        assert me.json()["user"] == {"username": "demo", "name": "Demo User"}
        cookies.update(me)

        # Past the short access-token lifetime: refreshed on the server, silently.
        time.sleep(ACCESS_TTL + 1)
        me = send("GET", "/api/me")
        assert me.status_code == 200, me.text
        assert me.json()["user"]["username"] == "demo"
        assert me.json()["exp"] > time.time()
        rotated = cookies.update(me)
        assert {"_auth", "_auth_refresh"} <= set(rotated)
        assert rotated["_auth"]["value"] != issued["_auth"]["value"]
        assert rotated["_auth_refresh"]["value"] != issued["_auth_refresh"]["value"]

        # Sign out with the CSRF header the page's JavaScript would send.
        csrf = cookies.values()["_auth_csrf"]
        logout = send("POST", "/logout", headers={"X-CSRF-Token": csrf})
        assert logout.status_code == 200, logout.text
        assert logout.json() == {"ok": True, "revoked": True}
        deleted = cookies.update(logout)
        assert set(deleted) == set(AUTH_COOKIES)
        assert all(attrs["max-age"] == "0" for attrs in deleted.values())
        assert cookies.values() == {}

        me = send("GET", "/api/me")
        assert me.status_code == 401
        assert me.headers["www-authenticate"] == "Bearer"
