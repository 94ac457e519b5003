"""The example app (example_app/main.py) end to end, through Starlette's TestClient.

Time is the injected :class:`Clock`; nothing sleeps. The base URL is https so that the
client's cookie jar sends the ``Secure`` auth cookies back, as a browser would.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

import example_app.main as example_main
from example_app.main import Settings, create_app
from example_app.switch import SWITCH_TTL
from fastapi_authkit.stores import MemoryStore
from fastapi_authkit.testing import (
    assert_refreshed,
    assert_session_kept,
    auth_client,
    login_as,
    refresh_fails,
    store_down,
)

from tests.support.clock import T0, Clock
from tests.support.processes import REPO_ROOT

SECRET = "example-app-test-secret-0123456789abcdef"
ACCESS_TTL = 30
GRACE = 10  # create_refresh's default grace_period, which the example app keeps
BASE_URL = "https://testserver"
AUTH_COOKIES = ("_auth", "_auth_type", "_auth_state", "_auth_refresh", "_auth_csrf")
HTML = {"Accept": "text/html,application/xhtml+xml"}
DEMO_STATE = {"username": "demo", "name": "Demo User"}  # what the login route signs in with


def parse_set_cookies(response: Any) -> dict[str, dict[str, Any]]:
    """name -> {"value": ..., lower-cased attribute -> value (True for flags)}."""
    parsed: dict[str, dict[str, Any]] = {}
    for header in response.headers.get_list("set-cookie"):
        pair, *attributes = header.split(";")
        name, _, value = pair.strip().partition("=")
        assert name not in parsed, f"cookie {name} set twice in one response"
        cookie: dict[str, Any] = {"value": value}
        for attribute in attributes:
            key, sep, attr_value = attribute.strip().partition("=")
            cookie[key.lower()] = attr_value if sep else True
        parsed[name] = cookie
    return parsed


def assert_all_deleted(response: Any) -> None:
    cookies = parse_set_cookies(response)
    assert set(cookies) == set(AUTH_COOKIES)
    for name, cookie in cookies.items():
        assert cookie["value"] == "", name
        assert cookie["max-age"] == "0", name
        # A deletion repeats the attributes the cookie was set with.
        assert cookie.get("secure") is True, name
        assert cookie.get("samesite") == "Lax", name
        assert cookie.get("path") == "/", name
        assert cookie.get("httponly", False) is (name != "_auth_csrf"), name


def jar(client: TestClient) -> dict[str, str]:
    return {cookie.name: cookie.value or "" for cookie in client.cookies.jar}


def cookie_header(cookies: dict[str, str]) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{name}={value}" for name, value in cookies.items())}


@pytest.fixture
def app(clock: Clock) -> FastAPI:
    return create_app(Settings(secret=SECRET, access_ttl=ACCESS_TTL), clock=clock)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url=BASE_URL) as test_client:
        yield test_client


@pytest.fixture
def replay(app: FastAPI) -> Iterator[TestClient]:
    """A second browser on the same app (same token service, same single-flight memory),
    whose cookies the test passes by hand in a ``Cookie`` header."""
    with TestClient(app, base_url=BASE_URL) as test_client:
        yield test_client


def login(client: TestClient, *, remember: bool = True) -> Any:
    """The login form as a browser posts it: the hidden remember=0, then the checkbox's
    remember=1 when it is ticked (the default)."""
    remember_values = ["0", "1"] if remember else ["0"]
    data = {"username": "demo", "password": "demo", "remember": remember_values}
    return client.post("/login", data=data, follow_redirects=False)


def test_a_client_posting_no_remember_field_is_remembered(client: TestClient) -> None:
    response = client.post(
        "/login", data={"username": "demo", "password": "demo"}, follow_redirects=False
    )
    assert response.status_code == 303
    for name, cookie in parse_set_cookies(response).items():
        assert "max-age" in cookie, name


def test_remember_me_unticked_signs_in_with_session_cookies(client: TestClient) -> None:
    response = login(client, remember=False)
    assert response.status_code == 303
    for name, cookie in parse_set_cookies(response).items():
        assert "max-age" not in cookie, name
        assert "expires" not in cookie, name
    assert "Remember me" in client.get("/login").text


@pytest.fixture
def signed_in(client: TestClient) -> TestClient:
    """Signed in through the login form, as a browser is (for tests of what the form does,
    and of requests without the CSRF header)."""
    response = login(client)
    assert response.status_code == 303
    assert set(jar(client)) == set(AUTH_COOKIES)
    return client


@pytest.fixture
def user(app: FastAPI) -> Iterator[TestClient]:
    """Demo, signed in by the test kit without the form, on a client that sends the CSRF
    header on unsafe requests by itself, as the page's JavaScript does."""
    with auth_client(app) as test_client:
        login_as(test_client, "demo", user_state=DEMO_STATE)
        yield test_client


# --- login -------------------------------------------------------------------------------


def test_login_page_is_an_html_form(client: TestClient) -> None:
    response = client.get("/login")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    body = response.text
    assert '<form method="post" action="/login">' in body
    assert 'name="username"' in body
    assert re.search(r'<input name="password" type="password"', body)
    assert 'type="submit"' in body
    assert "Wrong username or password" not in body
    assert response.headers.get_list("set-cookie") == []


def test_login_with_demo_demo_redirects_home_and_sets_the_five_auth_cookies(
    client: TestClient,
) -> None:
    response = login(client)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert response.headers["cache-control"] == "no-store"
    cookies = parse_set_cookies(response)
    assert list(cookies) == list(AUTH_COOKIES)
    for name, cookie in cookies.items():
        assert cookie["value"], name
        assert cookie.get("secure") is True, name
        assert cookie.get("samesite") == "Lax", name
        assert cookie.get("path") == "/", name
        assert "domain" not in cookie, name
        assert cookie.get("httponly", False) is (name != "_auth_csrf"), name
    assert cookies["_auth_type"]["value"] == "Bearer"
    # The access cookie lives exactly as long as the token; the refresh cookie a day.
    assert cookies["_auth"]["max-age"] == str(ACCESS_TTL)
    assert cookies["_auth_refresh"]["max-age"] == str(24 * 3600)
    # The jar took them all (https base URL, so the Secure cookies come back).
    assert jar(client) == {name: cookie["value"] for name, cookie in cookies.items()}


@pytest.mark.parametrize(
    ("username", "password"), [("demo", "wrong"), ("demo", "DEMO"), ("nobody", "demo")]
)
def test_wrong_credentials_are_401_and_set_no_cookie(
    client: TestClient, username: str, password: str
) -> None:
    response = client.post(
        "/login", data={"username": username, "password": password}, follow_redirects=False
    )
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/html")
    assert "Wrong username or password." in response.text
    assert response.headers.get_list("set-cookie") == []
    assert jar(client) == {}
    assert client.get("/api/me").status_code == 401


def test_empty_password_is_refused_without_cookies(client: TestClient) -> None:
    response = client.post(
        "/login", data={"username": "demo", "password": ""}, follow_redirects=False
    )
    assert 400 <= response.status_code < 500
    assert response.headers.get_list("set-cookie") == []
    assert jar(client) == {}


def test_empty_password_shows_the_login_page_with_an_error(client: TestClient) -> None:
    response = client.post(
        "/login", data={"username": "demo", "password": ""}, follow_redirects=False
    )
    assert response.status_code == 401
    assert "Wrong username or password." in response.text


# --- the signed-in page ------------------------------------------------------------------


def test_home_signed_out_redirects_a_browser_to_login(client: TestClient) -> None:
    response = client.get("/", headers=HTML, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"


def test_home_signed_out_answers_curl_as_the_docs_say(client: TestClient) -> None:
    """docs/deployments/one-process.md: plain curl (Accept: */*) sees 401 JSON, curl asking
    for text/html the redirect to /login."""
    page = (REPO_ROOT / "docs" / "deployments" / "one-process.md").read_text()
    assert "plain `curl -i http://127.0.0.1:8000/` asks for `*/*` and sees the 401" in page
    response = client.get("/", headers={"Accept": "*/*"}, follow_redirects=False)
    assert response.status_code == 401
    assert response.json() == {"detail": "Not authenticated"}
    response = client.get("/", headers={"Accept": "text/html"}, follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/login")


def test_home_signed_out_is_401_for_an_api_client(client: TestClient) -> None:
    response = client.get("/", headers={"Accept": "application/json"}, follow_redirects=False)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_home_signed_in_shows_the_user_name_and_remaining_lifetime(
    signed_in: TestClient, clock: Clock
) -> None:
    clock.advance(5)
    response = signed_in.get("/", headers=HTML, follow_redirects=False)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<span id="user">Demo User</span>' in response.text
    exp = int(T0) + ACCESS_TTL
    assert f'<span id="remaining" data-exp="{exp}">{ACCESS_TTL - 5}</span> s' in response.text
    # Far from expiry: no refresh, no cookie written.
    assert response.headers.get_list("set-cookie") == []


def test_home_after_expiry_shows_the_refreshed_lifetime(
    signed_in: TestClient, clock: Clock
) -> None:
    clock.advance(ACCESS_TTL + 1)
    response = signed_in.get("/", headers=HTML, follow_redirects=False)
    assert response.status_code == 200
    assert '<span id="user">Demo User</span>' in response.text
    # The refresh ran before the route, so the page shows the new token's full lifetime.
    exp = int(clock()) + ACCESS_TTL
    assert f'data-exp="{exp}">{ACCESS_TTL}</span>' in response.text
    assert {"_auth", "_auth_refresh"} <= set(parse_set_cookies(response))


# --- the JSON API ------------------------------------------------------------------------


def test_api_me_signed_out_is_401_with_www_authenticate(client: TestClient) -> None:
    response = client.get("/api/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"detail": "Not authenticated"}


def test_api_me_signed_in_is_the_user_as_json(signed_in: TestClient) -> None:
    response = signed_in.get("/api/me")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "user": {"username": "demo", "name": "Demo User"},
        "exp": int(T0) + ACCESS_TTL,
        "worker": os.getpid(),
    }
    assert response.headers.get_list("set-cookie") == []


def test_expired_access_token_is_refreshed_silently_and_rotated(
    user: TestClient, clock: Clock
) -> None:
    before = jar(user)
    clock.advance(ACCESS_TTL + 1)
    response = user.get("/api/me")
    assert response.status_code == 200
    assert response.json() == {
        "user": DEMO_STATE,
        "exp": int(clock()) + ACCESS_TTL,
        "worker": os.getpid(),
    }
    assert response.headers["cache-control"] == "no-store"
    # A new access token for the same session (its CSRF token unchanged), nothing deleted.
    cookies = assert_refreshed(response)
    assert cookies["_auth_refresh"] != before["_auth_refresh"]
    assert parse_set_cookies(response)["_auth"]["max-age"] == str(ACCESS_TTL)
    after = jar(user)
    assert after["_auth"] == cookies["_auth"]
    assert after["_auth_refresh"] == cookies["_auth_refresh"]
    # The new token is fresh: the next request needs no refresh.
    again = user.get("/api/me")
    assert again.status_code == 200
    assert_session_kept(again)


def test_token_near_expiry_is_refreshed_before_it_expires(
    signed_in: TestClient, clock: Clock
) -> None:
    before = jar(signed_in)
    # interval = min(10, access_ttl // 3) = 10: refreshed in the last 10 s of its life.
    clock.advance(ACCESS_TTL - 10)
    response = signed_in.get("/api/me")
    assert response.status_code == 200
    assert response.json()["exp"] == int(clock()) + ACCESS_TTL
    assert parse_set_cookies(response)["_auth_refresh"]["value"] != before["_auth_refresh"]


def test_old_refresh_token_is_consumed_by_rotation(
    signed_in: TestClient, replay: TestClient, clock: Clock
) -> None:
    old = jar(signed_in)
    clock.advance(ACCESS_TTL + 1)
    assert signed_in.get("/api/me").status_code == 200
    assert jar(signed_in)["_auth_refresh"] != old["_auth_refresh"]
    clock.advance(ACCESS_TTL + 1)
    assert signed_in.get("/api/me").status_code == 200  # the successor rotates in turn
    clock.advance(GRACE + 1)
    # The old cookies again, after their successor was used: reuse, so the issuer ends
    # the session (is_success=False).
    response = replay.get("/api/me", headers=cookie_header(old))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert_all_deleted(response)


def test_old_cookies_within_the_grace_period_get_the_same_new_cookies(
    signed_in: TestClient, replay: TestClient, clock: Clock
) -> None:
    old = jar(signed_in)
    clock.advance(ACCESS_TTL + 1)
    first = signed_in.get("/api/me")
    assert first.status_code == 200
    rotated = parse_set_cookies(first)
    clock.advance(GRACE - 1)
    # A request that was in flight with the old cookies: not taken for token theft.
    response = replay.get("/api/me", headers=cookie_header(old))
    assert response.status_code == 200
    again = parse_set_cookies(response)
    assert again["_auth"]["value"] == rotated["_auth"]["value"]
    assert again["_auth_refresh"]["value"] == rotated["_auth_refresh"]["value"]


# --- CSRF --------------------------------------------------------------------------------


def test_ping_without_csrf_header_is_403(signed_in: TestClient) -> None:
    response = signed_in.post("/api/ping")
    assert response.status_code == 403
    assert response.json()["detail"].startswith("CSRF token missing or invalid: ")


def test_ping_with_a_wrong_csrf_header_is_403(signed_in: TestClient) -> None:
    response = signed_in.post("/api/ping", headers={"X-CSRF-Token": "not-the-token"})
    assert response.status_code == 403


def test_ping_with_the_csrf_header_is_200(user: TestClient) -> None:
    response = user.post("/api/ping")  # the client echoes the CSRF cookie in the header
    assert response.status_code == 200
    assert response.json() == {"ok": True, "user": "demo"}


def test_ping_signed_out_is_401(client: TestClient) -> None:
    response = client.post("/api/ping")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


# --- logout ------------------------------------------------------------------------------


def test_logout_deletes_every_auth_cookie(user: TestClient) -> None:
    response = user.post("/logout")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "revoked": True}
    assert response.headers["cache-control"] == "no-store"
    assert_all_deleted(response)
    assert jar(user) == {}
    after = user.get("/api/me")
    assert after.status_code == 401
    assert after.headers["www-authenticate"] == "Bearer"


def test_logout_without_csrf_header_is_403_and_keeps_the_session(
    signed_in: TestClient,
) -> None:
    response = signed_in.post("/logout")
    assert response.status_code == 403
    assert response.headers.get_list("set-cookie") == []
    assert signed_in.get("/api/me").status_code == 200


def test_logout_revokes_the_refresh_token_server_side(
    signed_in: TestClient, replay: TestClient, clock: Clock
) -> None:
    old = jar(signed_in)
    csrf = old["_auth_csrf"]
    assert signed_in.post("/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    # Only the refresh token (and the state cookie) presented: a refresh is attempted and
    # the token service no longer knows the token.
    kept = {name: old[name] for name in ("_auth_state", "_auth_refresh")}
    response = replay.get("/api/me", headers=cookie_header(kept))
    assert response.status_code == 401
    assert_all_deleted(response)
    # Every old cookie, once the access token has expired: still signed out.
    clock.advance(ACCESS_TTL + 1)
    response = replay.get("/api/me", headers=cookie_header(old))
    assert response.status_code == 401
    assert_all_deleted(response)


def test_logout_right_after_a_rotation_also_ends_the_predecessor_token(
    signed_in: TestClient, replay: TestClient, clock: Clock
) -> None:
    old = jar(signed_in)
    clock.advance(ACCESS_TTL + 1)
    assert signed_in.get("/api/me").status_code == 200  # rotates R1 -> R2
    csrf = jar(signed_in)["_auth_csrf"]
    assert signed_in.post("/logout", headers={"X-CSRF-Token": csrf}).status_code == 200
    clock.advance(1)  # still inside the grace period of the R1 -> R2 rotation
    kept = {name: old[name] for name in ("_auth_state", "_auth_refresh")}
    response = replay.get("/api/me", headers=cookie_header(kept))
    assert response.status_code == 401


# --- Settings.from_env -------------------------------------------------------------------


def test_from_env_defaults() -> None:
    settings = Settings.from_env({"AUTHKIT_SECRET": "s3cret"})
    assert settings == Settings(secret="s3cret", access_ttl=30, refresh_ttl=24 * 3600)
    assert settings.debug is False


@pytest.mark.parametrize(("raw", "expected"), [("5", 5), ("120", 120), (" 45 ", 45)])
def test_from_env_parses_access_ttl(raw: str, expected: int) -> None:
    settings = Settings.from_env({"AUTHKIT_SECRET": "s3cret", "AUTHKIT_ACCESS_TTL": raw})
    assert settings.access_ttl == expected
    assert settings.refresh_ttl == 24 * 3600


def test_from_env_rejects_a_non_numeric_access_ttl() -> None:
    with pytest.raises(ValueError, match="thirty"):
        Settings.from_env({"AUTHKIT_SECRET": "s3cret", "AUTHKIT_ACCESS_TTL": "thirty"})


def test_a_zero_access_ttl_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="AUTHKIT_ACCESS_TTL must be at least 2"):
        Settings.from_env({"AUTHKIT_SECRET": "s3cret", "AUTHKIT_ACCESS_TTL": "0"})
    with pytest.raises(ValueError, match="AUTHKIT_REFRESH_TTL must be longer"):
        Settings.from_env({"AUTHKIT_SECRET": "s3cret", "AUTHKIT_REFRESH_TTL": "30"})
    with pytest.raises(ValueError, match="AUTHKIT_ABSOLUTE_TTL must be at least"):
        Settings.from_env({"AUTHKIT_SECRET": "s3cret", "AUTHKIT_ABSOLUTE_TTL": "60"})


def test_from_env_parses_refresh_ttl_and_debug() -> None:
    env = {"AUTHKIT_SECRET": "s3cret", "AUTHKIT_REFRESH_TTL": "600", "AUTHKIT_DEBUG": "1"}
    settings = Settings.from_env(env)
    assert settings.refresh_ttl == 600
    assert settings.debug is True
    assert Settings.from_env({"AUTHKIT_SECRET": "s3cret", "AUTHKIT_DEBUG": "0"}).debug is False


def test_from_env_parses_the_absolute_lifetime() -> None:
    env = {"AUTHKIT_SECRET": "s3cret", "AUTHKIT_REFRESH_TTL": "600", "AUTHKIT_ABSOLUTE_TTL": "900"}
    assert Settings.from_env(env).absolute_ttl == 900
    assert Settings.from_env({"AUTHKIT_SECRET": "s3cret"}).absolute_ttl is None  # a week


def test_from_env_reads_the_redis_deployment() -> None:
    env = {
        "AUTHKIT_SECRET": "s3cret",
        "AUTHKIT_REDIS_URL": "redis+sentinel://127.0.0.1:26379/authkit",
        "AUTHKIT_REDIS_WAIT_REPLICAS": "1",
    }
    settings = Settings.from_env(env)
    assert (settings.redis_url, settings.redis_wait_replicas) == (env["AUTHKIT_REDIS_URL"], 1)
    with pytest.raises(ValueError, match="needs AUTHKIT_REDIS_URL"):
        Settings.from_env({"AUTHKIT_SECRET": "s3cret", "AUTHKIT_REDIS_WAIT_REPLICAS": "1"})


def test_sign_in_while_redis_is_down_is_a_503_not_a_500(clock: Clock) -> None:
    from fastapi_authkit.stores import RedisStore

    from tests.support.processes import free_port

    # A real client to a port where no Redis listens: a real outage.
    backend = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    app = create_app(Settings(secret=SECRET, access_ttl=ACCESS_TTL), clock=clock, backend=backend)
    with TestClient(app, base_url=BASE_URL) as client:
        response = client.post("/login", data={"username": "demo", "password": "demo"})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert "unavailable" in response.text
        assert response.headers.get_list("set-cookie") == []


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHKIT_SECRET", "from-the-environment")
    monkeypatch.setenv("AUTHKIT_ACCESS_TTL", "7")
    settings = Settings.from_env()
    assert settings.secret == "from-the-environment"
    assert settings.access_ttl == 7


@pytest.mark.parametrize("env", [{}, {"AUTHKIT_SECRET": ""}])
def test_from_env_warns_and_generates_a_secret_when_unset(env: dict[str, str]) -> None:
    with pytest.warns(RuntimeWarning, match="AUTHKIT_SECRET is not set") as record:
        first = Settings.from_env(env)
    with pytest.warns(RuntimeWarning, match="AUTHKIT_SECRET is not set"):
        second = Settings.from_env(env)
    assert len(first.secret) >= 32
    assert first.secret != second.secret
    # stacklevel=2: the warning points at the caller, not at example_app/main.py.
    assert record[0].filename == __file__


def test_from_env_with_a_secret_does_not_warn() -> None:
    # pytest runs with warnings as errors: any warning here fails the test.
    assert Settings.from_env({"AUTHKIT_SECRET": "s3cret"}).secret == "s3cret"


# --- the lazily built module-level app ---------------------------------------------------


@pytest.fixture
def fresh_module_app(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AUTHKIT_ACCESS_TTL", "AUTHKIT_REFRESH_TTL", "AUTHKIT_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    # monkeypatch puts the module's cached app back afterwards.
    monkeypatch.setattr(example_main, "_app", None)


@pytest.mark.usefixtures("fresh_module_app")
def test_module_app_is_built_lazily_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTHKIT_SECRET", SECRET)
    assert example_main._app is None
    app = example_main.app
    assert isinstance(app, FastAPI)
    assert example_main._app is app
    assert example_main.app is app  # built once
    with TestClient(app, base_url=BASE_URL) as test_client:
        assert test_client.get("/login").status_code == 200
        assert login(test_client).status_code == 303
        assert test_client.get("/api/me").json()["user"]["username"] == "demo"


@pytest.mark.usefixtures("fresh_module_app")
def test_module_app_without_secret_warns_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTHKIT_SECRET", raising=False)
    with pytest.warns(RuntimeWarning, match="AUTHKIT_SECRET is not set"):
        app = example_main.app
    assert isinstance(app, FastAPI)


def test_module_has_no_other_lazy_attributes() -> None:
    with pytest.raises(AttributeError):
        _ = example_main.not_an_attribute


# --- the signed-in page's JSON: the token, the sessions, the failure switch ------------------


def token_claims(client: TestClient) -> dict[str, Any]:
    payload = jar(client)["_auth"].split(".")[1]
    parsed: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return parsed


def test_the_page_and_its_static_files(signed_in: TestClient) -> None:
    page = signed_in.get("/", headers=HTML).text
    assert '<link rel="stylesheet" href="/static/app.css">' in page
    assert '<script src="/static/app.js" defer></script>' in page
    claims = token_claims(signed_in)
    assert f'<code id="jti">{claims["jti"]}</code>' in page
    assert f'<code id="sid">{claims["sid"]}</code>' in page
    assert "in its last 10 s" in page  # interval = min(10, access_ttl // 3)
    script = signed_in.get("/static/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    assert '"X-CSRF-Token"' in script.text  # every unsafe fetch sends the header
    assert signed_in.get("/static/app.css").headers["content-type"].startswith("text/css")


def test_api_token_says_which_token_this_request_ended_up_with(
    signed_in: TestClient, clock: Clock
) -> None:
    claims = token_claims(signed_in)
    response = signed_in.get("/api/token")
    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("jti", "sid", "iat", "exp")} == {
        k: claims[k] for k in ("jti", "sid", "iat", "exp")
    }
    assert (body["now"], body["refreshed"], body["refresh_failing"]) == (T0, False, False)
    clock.advance(ACCESS_TTL - 5)  # in the refresh window: this very request refreshes
    body = signed_in.get("/api/token").json()
    assert body["refreshed"] is True
    assert body["jti"] != claims["jti"]
    assert body["sid"] == claims["sid"]
    assert body["jti"] == token_claims(signed_in)["jti"]  # the cookie the browser now has
    assert signed_in.get("/api/token").json()["refreshed"] is False


def test_api_token_signed_out_is_401(client: TestClient) -> None:
    assert client.get("/api/token").status_code == 401


def test_the_failure_switch_keeps_the_session_through_a_failing_token_endpoint(
    signed_in: TestClient, clock: Clock
) -> None:
    csrf = {"X-CSRF-Token": jar(signed_in)["_auth_csrf"]}
    before, before_sid = jar(signed_in), token_claims(signed_in)["sid"]
    assert signed_in.get("/api/token-endpoint").json() == {"failing": False}
    switched = signed_in.put("/api/token-endpoint", json={"failing": True}, headers=csrf)
    assert switched.json() == {"failing": True}
    assert signed_in.get("/api/token-endpoint").json() == {"failing": True}
    # In the refresh window: the refresh fails, the token still works, nothing is cleared.
    clock.advance(ACCESS_TTL - 5)
    response = signed_in.get("/api/token")
    assert response.status_code == 200
    assert response.json()["refresh_failing"] is True
    assert response.headers.get_list("set-cookie") == []
    # Past its expiry: 503 with Retry-After on protected routes, public ones still answer.
    clock.advance(10)
    response = signed_in.get("/api/token")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.headers.get_list("set-cookie") == []
    assert signed_in.get("/login").status_code == 200
    assert jar(signed_in) == before
    # Back (a public route: its own request's refresh still failed, before it ran)...
    back = signed_in.put("/api/token-endpoint", json={"failing": False}, headers=csrf)
    assert back.status_code == 200
    assert back.headers.get_list("set-cookie") == []
    # ...and the next request refreshes the same session.
    response = signed_in.get("/api/token")
    assert response.status_code == 200
    assert response.json()["refreshed"] is True
    assert response.json()["sid"] == token_claims(signed_in)["sid"] == before_sid
    assert jar(signed_in)["_auth_refresh"] != before["_auth_refresh"]


def test_the_failure_switch_turns_itself_off(signed_in: TestClient, clock: Clock) -> None:
    csrf = {"X-CSRF-Token": jar(signed_in)["_auth_csrf"]}
    signed_in.put("/api/token-endpoint", json={"failing": True}, headers=csrf)
    clock.advance(SWITCH_TTL)
    assert signed_in.get("/api/token-endpoint").json() == {"failing": False}


@pytest.mark.parametrize("body", [{}, {"failing": "maybe"}, {"failing": None}, []])
def test_the_failure_switch_refuses_a_bad_body_with_a_422(client: TestClient, body: Any) -> None:
    assert client.put("/api/token-endpoint", json=body).status_code == 422
    assert client.get("/api/token-endpoint").json() == {"failing": False}


def test_an_app_given_its_own_backend_has_no_switch(clock: Clock) -> None:
    app = create_app(Settings(secret=SECRET), clock=clock, backend=MemoryStore())
    with TestClient(app, base_url=BASE_URL) as client:
        assert client.get("/api/token-endpoint").status_code == 404
        assert client.put("/api/token-endpoint", json={"failing": True}).status_code == 404


def test_the_sessions_of_the_signed_in_user(
    signed_in: TestClient, replay: TestClient, clock: Clock
) -> None:
    mine = token_claims(signed_in)["sid"]
    clock.advance(5)
    assert login(replay).status_code == 303  # a second browser
    other_sid = token_claims(replay)["sid"]
    listed = signed_in.get("/api/sessions").json()
    assert [(s["id"], s["current"]) for s in listed] == [(mine, True), (other_sid, False)]
    assert listed[0]["user_agent"] == "testclient"  # Starlette's TestClient says so
    assert listed[0]["ip"] == "testclient"  # and puts this in the scope as its address
    csrf = {"X-CSRF-Token": jar(signed_in)["_auth_csrf"]}
    # Revoke the other browser's session: it is signed out, this one is not.
    response = signed_in.delete(f"/api/sessions/{other_sid}", headers=csrf)
    assert response.json() == {"revoked": True, "signed_out": False}
    assert response.headers.get_list("set-cookie") == []
    assert replay.get("/api/me").status_code == 401
    assert signed_in.delete(f"/api/sessions/{other_sid}", headers=csrf).status_code == 404
    assert signed_in.delete("/api/sessions/nope", headers=csrf).status_code == 404
    # Its own: signed out, every cookie cleared.
    response = signed_in.delete(f"/api/sessions/{mine}", headers=csrf)
    assert response.json() == {"revoked": True, "signed_out": True}
    assert_all_deleted(response)
    assert signed_in.get("/api/me").status_code == 401


def test_revoking_a_session_needs_the_csrf_header(signed_in: TestClient) -> None:
    mine = token_claims(signed_in)["sid"]
    assert signed_in.delete(f"/api/sessions/{mine}").status_code == 403
    assert signed_in.get("/api/me").status_code == 200


def test_the_sessions_list_while_redis_is_down_is_a_503(app: FastAPI, user: TestClient) -> None:
    with store_down(app):  # the sessions' store goes away
        response = user.get("/api/sessions")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert user.get("/api/sessions").status_code == 200


def test_a_token_endpoint_down_keeps_the_user_signed_in(user: TestClient, clock: Clock) -> None:
    """The failure switch's promise, without the switch: the kit's own transient failure."""
    clock.advance(ACCESS_TTL - 5)  # in the refresh window
    with refresh_fails(user, "transient"):
        still_valid = user.get("/api/token")
        clock.advance(10)  # expired
        expired = user.get("/api/token")
    assert (still_valid.status_code, still_valid.json()["refresh_failing"]) == (200, True)
    assert (expired.status_code, expired.headers["retry-after"]) == (503, "5")
    assert_session_kept(still_valid)
    assert_session_kept(expired)
    assert user.get("/api/token").json()["refreshed"] is True
