"""Property run over the example app's OpenAPI schema with schemathesis: whatever requests
the schema allows (and some it does not), no operation answers with a server error.

Every operation is run three ways: signed out; signed in (a fresh ``POST /login`` demo/demo
before each generated request, its cookies sent along, plus the CSRF header on unsafe
methods); and signed in with the access token past its expiry, so that the middleware runs
the refresh before the route. Fresh sign-ins keep the examples independent of each other
(``/logout`` and ``/logout-everywhere`` revoke sessions), which Hypothesis needs to shrink.

Everything runs in-process through schemathesis' ASGI transport: no sockets, no sleeping
(the app's clock is injected and moved by hand). Hypothesis is derandomized and keeps no
example database, so runs are repeatable and leave nothing behind.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from example_app.main import Settings, create_app

from tests.support.clock import Clock

SECRET = "schemathesis-test-secret-0123456789abcdef"
ACCESS_TTL = 30
AUTH_COOKIES = ("_auth", "_auth_type", "_auth_state", "_auth_refresh", "_auth_csrf")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
FORM = "application/x-www-form-urlencoded"

# One app for the module; the clock starts at the real time (signed cookies carry
# timestamps) and only ever moves forward.
CLOCK = Clock(time.time())
APP = create_app(Settings(secret=SECRET, access_ttl=ACCESS_TTL), clock=CLOCK)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)

EXPLORE = settings(
    max_examples=50,
    deadline=None,  # in-process, but a first call warms up imports; no flaky deadlines
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def set_cookies(response: schemathesis.Response) -> dict[str, str]:
    """name -> value of every cookie the response sets (deletions included, as "")."""
    cookies: dict[str, str] = {}
    for header in response.headers.get("set-cookie", []):
        name, _, value = header.split(";", 1)[0].strip().partition("=")
        cookies[name] = value
    return cookies


def sign_in() -> dict[str, str]:
    """A fresh session for demo/demo through the real login route: its cookies. The demo's
    failure switch (which an earlier example may have turned on: a 503 by design) is off."""
    anyio.run(APP.state.failure_switch.turn, False)
    login = schema["/login"]["POST"].Case(
        body={"username": "demo", "password": "demo"}, media_type=FORM
    )
    response = login.call(allow_redirects=False)
    assert response.status_code == 303, response.text
    cookies = set_cookies(response)
    assert set(cookies) == set(AUTH_COOKIES), cookies
    return cookies


def with_session(case: schemathesis.Case[Any], cookies: dict[str, str]) -> None:
    """Send the session's cookies (they replace generated ones of the same name, such as the
    ``_auth`` cookie of the security scheme) and, on unsafe methods, the CSRF header."""
    case.cookies = {**(case.cookies or {}), **cookies}
    if case.method.upper() not in SAFE_METHODS:
        case.headers["X-CSRF-Token"] = cookies["_auth_csrf"]


@schema.parametrize()
@EXPLORE
def test_no_server_error_signed_out(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(checks=[not_a_server_error])


@schema.parametrize()
@EXPLORE
def test_no_server_error_signed_in(case: schemathesis.Case[Any]) -> None:
    with_session(case, sign_in())
    case.call_and_validate(checks=[not_a_server_error])


@schema.parametrize()
@EXPLORE
def test_no_server_error_signed_in_with_refresh_due(case: schemathesis.Case[Any]) -> None:
    cookies = sign_in()
    CLOCK.advance(ACCESS_TTL + 1)  # the access token has expired; the refresh token has not
    with_session(case, cookies)
    case.call_and_validate(checks=[not_a_server_error])


def test_the_session_helpers_really_sign_in() -> None:
    """The signed-in runs above mean something only if their requests are authenticated."""
    cookies = sign_in()
    me = schema["/api/me"]["GET"].Case()
    with_session(me, cookies)
    response = me.call()
    assert response.status_code == 200, response.text
    assert response.json()["user"] == {"username": "demo", "name": "Demo User"}

    ping = schema["/api/ping"]["POST"].Case()
    with_session(ping, cookies)
    assert ping.call().status_code == 200
    del ping.headers["X-CSRF-Token"]  # the same session without the header is refused
    assert ping.call().status_code == 403

    # Past the access token's lifetime the middleware refreshes before the route runs.
    CLOCK.advance(ACCESS_TTL + 1)
    me = schema["/api/me"]["GET"].Case()
    with_session(me, cookies)
    response = me.call()
    assert response.status_code == 200, response.text
    rotated = set_cookies(response)
    assert rotated["_auth"] not in ("", cookies["_auth"])
    assert rotated["_auth_refresh"] not in ("", cookies["_auth_refresh"])
