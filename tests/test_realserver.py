"""The example app under a real ``uvicorn`` process on loopback, driven over real HTTP.

The auth cookies are ``Secure`` and the server is plain http, so an HTTP client's cookie
jar would never send them back; the test keeps the cookies itself, as a browser would on
https: it reads every ``Set-Cookie``, honours ``Max-Age`` and sends a ``Cookie`` header.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

pytestmark = pytest.mark.realserver

REPO_ROOT = Path(__file__).resolve().parent.parent
ACCESS_TTL = 2
STARTUP_TIMEOUT = 20.0
AUTH_COOKIES = ("_auth", "_auth_type", "_auth_state", "_auth_refresh", "_auth_csrf")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class CookieKeeper:
    """A browser's cookie store for one site, by hand: name -> (value, expiry)."""

    def __init__(self) -> None:
        self._cookies: dict[str, tuple[str, float]] = {}

    def update(self, response: httpx2.Response) -> dict[str, dict[str, str]]:
        """Apply the response's Set-Cookie headers; return name -> attributes as set."""
        seen: dict[str, dict[str, str]] = {}
        for header in response.headers.get_list("set-cookie"):
            pair, *attributes = header.split(";")
            name, _, value = pair.strip().partition("=")
            attrs = {"value": value}
            for attribute in attributes:
                key, _, attr_value = attribute.strip().partition("=")
                attrs[key.lower()] = attr_value
            seen[name] = attrs
            max_age = int(attrs.get("max-age", "86400"))
            if max_age <= 0:
                self._cookies.pop(name, None)
            else:
                self._cookies[name] = (value, time.monotonic() + max_age)
        return seen

    def values(self) -> dict[str, str]:
        now = time.monotonic()
        return {name: value for name, (value, until) in self._cookies.items() if until > now}

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        values = self.values()
        if values:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in values.items())
        return headers


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    if importlib.util.find_spec("uvicorn") is None:
        pytest.fail(
            "uvicorn is not installed in this environment; the real-server test needs it "
            "(pip install -e '.[example]')"
        )
    port = free_port()
    env = {
        **os.environ,
        "AUTHKIT_SECRET": "realserver-test-secret-0123456789abcdef",
        "AUTHKIT_ACCESS_TTL": str(ACCESS_TTL),
    }
    env.pop("AUTHKIT_DEBUG", None)
    env.pop("AUTHKIT_REFRESH_TTL", None)
    log_path = tmp_path / "uvicorn.log"
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "example_app.main:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while True:
                if process.poll() is not None:
                    pytest.fail(
                        f"uvicorn exited with code {process.returncode} before answering:\n"
                        + log_path.read_text(errors="replace")
                    )
                try:
                    if httpx2.get(f"{base_url}/login", timeout=1.0).status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"uvicorn did not answer on {base_url} within {STARTUP_TIMEOUT:.0f}s:\n"
                        + log_path.read_text(errors="replace")
                    )
                time.sleep(0.1)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


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
