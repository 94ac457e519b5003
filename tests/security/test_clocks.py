"""SECURITY.md, "Clocks": two instances whose clocks are 30 s apart, both with 30 s leeway,
serving one browser (one cookie jar) behind a load balancer: no refresh loop, no spurious
401, and (the same promise seen from a page) no spurious loss of the user state or of the
CSRF binding.

The auth server behind the refresh callback rotates refresh tokens strictly (an unknown or
rotated-out token is ``is_success=False``), so a refresh loop or a lost rotation would
show up as a 401. Its clock is that of the instance ahead, the one behind, or in between.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from fastapi import FastAPI

from fastapi_authkit import RefreshParam, RefreshResult, create_refresh

from .helpers import Reply, call, security_app
from tests.support.apps import build_store
from tests.support.clock import Clock
from tests.support.tokens import make_token

SKEW = 30
LEEWAY = 30
TTL = 300
INTERVAL = 60
STEP = 7  # seconds between two requests of the page
DURATION = 3600
STATE = {"name": "Alice"}


class AuthServer:
    """Strict rotation: each refresh token works once; counts calls."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.current = "refresh-0"
        self.calls = 0

    async def __call__(self, param: RefreshParam) -> RefreshResult:
        self.calls += 1
        if param.refresh_token != self.current:
            return RefreshResult(is_success=False)
        self.current = f"refresh-{self.calls}"
        return RefreshResult(
            is_success=True,
            new_auth_token=make_token(self.clock, ttl=TTL, sub="alice"),
            new_refresh_token=self.current,
        )


class Offset(Clock):
    """A clock that follows another at a fixed offset."""

    def __init__(self, base: Clock, offset: float) -> None:
        super().__init__()
        self.base, self.offset = base, offset

    def __call__(self) -> float:
        return self.base() + self.offset


def instance(clock: Clock, server: AuthServer) -> FastAPI:
    refresh = create_refresh(interval=INTERVAL, refresh_api_callback=server, grace_period=10)
    return security_app(build_store(clock, None, leeway=LEEWAY, refresh=refresh))


def apply(jar: dict[str, str], reply: Reply) -> None:
    for name, header in reply.set_cookies().items():
        value = header.split(";", 1)[0].split("=", 1)[1]
        if "Max-Age=0" in header:
            jar.pop(name, None)
        else:
            jar[name] = value


def cookie(jar: dict[str, str]) -> tuple[bytes, bytes]:
    return (b"cookie", "; ".join(f"{k}={v}" for k, v in jar.items()).encode())


@pytest.mark.parametrize("server_clock", ["ahead", "behind", "between"])
@pytest.mark.parametrize("first", ["behind", "ahead"])
def test_two_instances_thirty_seconds_apart_no_refresh_loop_no_spurious_401(
    clock: Clock, server_clock: str, first: str
) -> None:
    behind, ahead = clock, Offset(clock, SKEW)
    server = AuthServer(
        {"ahead": ahead, "behind": behind, "between": Offset(clock, 15)}[server_clock]
    )
    instances = {"behind": instance(behind, server), "ahead": instance(ahead, server)}
    order = [first, "ahead" if first == "behind" else "behind"]

    signing_in = instances[first]
    signing_clock = behind if first == "behind" else ahead
    body = {
        "token": make_token(signing_clock, ttl=TTL),
        "refresh": "refresh-0",
        "user_state": STATE,
    }
    reply = call(
        signing_in,
        "POST",
        "/login",
        [(b"content-type", b"application/json")],
        body=json.dumps(body).encode(),
    )
    assert reply.status == 200
    jar: dict[str, str] = {}
    apply(jar, reply)

    statuses: list[tuple[int, str, int]] = []
    for step in range(DURATION // STEP):
        app = instances[order[step % 2]]
        reply = call(app, "GET", "/me", [cookie(jar)])
        statuses.append((step, order[step % 2], reply.status))
        assert reply.status == 200, (step, order[step % 2], reply.body)
        assert not any("Max-Age=0" in v for v in reply.set_cookies().values())
        apply(jar, reply)
        clock.advance(STEP)

    # Each token lives TTL s and is refreshed INTERVAL s before exp as seen by the instance
    # furthest ahead of the server: at most one refresh per TTL - INTERVAL - SKEW seconds.
    bound = math.ceil(DURATION / (TTL - INTERVAL - SKEW)) + 1
    assert DURATION // TTL - 1 <= server.calls <= bound, server.calls


def _session_steps(first: str, clock: Clock) -> list[dict[str, Any]]:
    behind, ahead = clock, Offset(clock, SKEW)
    server = AuthServer(ahead)
    instances = {"behind": instance(behind, server), "ahead": instance(ahead, server)}
    body = {"token": make_token(clock, ttl=TTL), "refresh": "refresh-0", "user_state": STATE}
    reply = call(
        instances["behind"],
        "POST",
        "/login",
        [(b"content-type", b"application/json")],
        body=json.dumps(body).encode(),
    )
    jar: dict[str, str] = {}
    apply(jar, reply)
    seen = []
    order = [first, "ahead" if first == "behind" else "behind"]
    for step in range(1200 // STEP):
        name = order[step % 2]
        app = instances[name]
        got = call(app, "GET", "/me", [cookie(jar)])
        apply(jar, got)
        csrf = (b"x-csrf-token", jar["_auth_csrf"].encode())
        posted = call(app, "POST", "/write", [cookie(jar), csrf])
        seen.append(
            {"step": step, "instance": name, "user": got.json().get("user"), "post": posted.status}
        )
        clock.advance(STEP)
    return seen


@pytest.mark.parametrize("first", ["behind", "ahead"])
def test_two_instances_thirty_seconds_apart_keep_the_user_state_and_csrf(
    clock: Clock, first: str
) -> None:
    seen = _session_steps(first, clock)
    lost = [s for s in seen if s["user"] != STATE or s["post"] != 200]
    assert lost == []
