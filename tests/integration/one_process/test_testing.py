"""fastapi_authkit.testing, the test kit for apps: each helper does what it says, and each
assertion fails on a response that did not do what it asserts."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from starlette.testclient import TestClient

from fastapi_authkit import (
    AuthKitMiddleware,
    ConfigurationError,
    RefreshParam,
    RefreshResult,
    create_issuer,
    create_refresh,
    create_store,
    sign_out,
)
from fastapi_authkit.dependencies import AuthStateDep, CurrentUser
from fastapi_authkit.stores import MemoryStore
from fastapi_authkit.testing import (
    Clock,
    assert_refreshed,
    assert_session_kept,
    assert_signed_in,
    assert_signed_out,
    async_auth_client,
    auth_client,
    auth_cookies,
    find_store,
    login_as,
    mint_session,
    refresh_fails,
    store_down,
)

from tests.support.clock import T0
from tests.support.processes import REPO_ROOT
from tests.support.tokens import SECRET_KEY, TOKEN_KEY, make_token

# The plugin's fixtures, loaded by name (an installed package has them through its entry
# point; the editable install of this repository only after a reinstall).
pytest_plugins = ["fastapi_authkit.testing.plugin"]

ACCESS_TTL = 60


def routes(app: FastAPI) -> FastAPI:
    @app.get("/me")
    async def me(user: CurrentUser, state: AuthStateDep) -> dict[str, Any]:
        return {"user": user, "claims": state.claims}

    @app.post("/ping")
    async def ping(user: CurrentUser) -> dict[str, bool]:
        return {"ok": True}

    @app.get("/public")
    async def public() -> dict[str, bool]:
        return {"ok": True}

    return app


def issuer_app(clock: Clock, **issuer_options: Any) -> FastAPI:
    issuer = create_issuer(
        backend=MemoryStore(),
        signing_key=TOKEN_KEY,
        access_ttl=ACCESS_TTL,
        clock=clock,
        **issuer_options,
    )
    app = routes(FastAPI())
    app.add_middleware(
        AuthKitMiddleware,
        store=create_store(secret_key=SECRET_KEY, token_issuer=issuer, clock=clock),
    )
    app.state.issuer = issuer

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, bool]:
        return {"revoked": await issuer.sign_out(request)}

    return app


class AuthServer:
    """An external auth server's refresh endpoint: records calls, mints the next token."""

    def __init__(self, clock: Clock, **claims: Any) -> None:
        self.clock = clock
        self.claims = claims
        self.calls: list[RefreshParam] = []

    async def __call__(self, param: RefreshParam) -> RefreshResult:
        self.calls.append(param)
        return RefreshResult(
            is_success=True,
            new_auth_token=make_token(self.clock(), ttl=ACCESS_TTL, sub="alice", **self.claims),
            new_refresh_token=f"refresh-{len(self.calls)}",
        )


def external_app(clock: Clock, server: AuthServer | None = None, **options: Any) -> FastAPI:
    refresh = (
        create_refresh(interval=10, refresh_api_callback=server) if server is not None else None
    )
    app = routes(FastAPI())
    store = create_store(
        secret_key=SECRET_KEY, token_key=TOKEN_KEY, refresh=refresh, clock=clock, **options
    )
    app.add_middleware(AuthKitMiddleware, store=store)

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, bool]:
        sign_out(request)
        return {"ok": True}

    return app


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def app(clock: Clock) -> FastAPI:
    return issuer_app(clock)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with auth_client(app) as test_client:
        yield test_client


# --- finding the configuration ---------------------------------------------------------


def test_find_store_finds_the_middleware_store_from_the_app_and_its_clients(app: FastAPI) -> None:
    store = find_store(app)
    assert find_store(store) is store
    with TestClient(app) as started:  # the built middleware stack, too
        assert find_store(started) is store
        assert app.middleware_stack is not None
        assert find_store(app.middleware_stack) is store
    assert find_store(httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app))) is store


def test_find_store_refuses_an_app_without_the_middleware() -> None:
    with pytest.raises(ConfigurationError, match="no AuthKitMiddleware found in FastAPI"):
        find_store(FastAPI())


# --- the clock -------------------------------------------------------------------------


def test_the_clock_is_what_the_test_says_and_only_moves_forward() -> None:
    clock = Clock(100)
    assert clock() == 100.0
    assert clock.advance(5.5) == 105.5 == clock()
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)
    assert Clock()() == float(int(Clock().now))  # real time, whole seconds


def test_the_authkit_clock_fixture_is_a_fresh_clock(authkit_clock: Clock) -> None:
    assert isinstance(authkit_clock, Clock)
    before = authkit_clock()
    authkit_clock.advance(60)
    assert authkit_clock() == before + 60


def test_the_authkit_client_fixture_is_a_started_https_client_of_the_app_fixture(
    authkit_client: TestClient, app: FastAPI
) -> None:
    assert str(authkit_client.base_url) == "https://testserver"
    assert authkit_client.portal is not None  # inside `with`: the lifespan ran
    login_as(authkit_client, "alice")
    assert authkit_client.post("/ping").json() == {"ok": True}


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    plugins = project["entry-points"]["pytest11"]
    assert plugins == {"fastapi_authkit.testing.plugin": "fastapi_authkit.testing.plugin"}


# --- login_as with the built-in issuer -------------------------------------------------


def test_login_as_signs_in_through_the_issuer_without_the_login_route(
    client: TestClient, app: FastAPI
) -> None:
    session = login_as(client, "alice", user_state={"name": "Alice"})
    response = client.get("/me")
    assert response.status_code == 200
    assert response.json()["user"] == {"name": "Alice"}
    assert response.json()["claims"]["sub"] == "alice"
    assert session.claims == response.json()["claims"]
    assert session.access_token == client.cookies["_auth"]
    assert session.csrf_token == client.cookies["_auth_csrf"]
    assert_session_kept(response)  # a fresh token: nothing to refresh


def test_login_as_records_a_real_session_at_the_issuer(client: TestClient, app: FastAPI) -> None:
    session = login_as(client, "alice")
    issuer = app.state.issuer
    [listed] = client.portal.call(issuer.list_sessions, "alice")  # type: ignore[union-attr]
    assert listed.id == session.claims["sid"]
    response = client.post("/logout")
    assert response.json() == {"revoked": True}
    assert_signed_out(response)
    assert client.portal.call(issuer.list_sessions, "alice") == []  # type: ignore[union-attr]


def test_login_as_works_on_a_client_outside_its_with_block(app: FastAPI) -> None:
    client = auth_client(app)
    login_as(client, "alice")
    assert client.get("/me").status_code == 200


def test_the_client_echoes_the_csrf_cookie_on_unsafe_requests(client: TestClient) -> None:
    login_as(client, "alice")
    assert client.post("/ping").status_code == 200
    # A header the test sets itself wins: the CSRF check still bites.
    assert client.post("/ping", headers={"X-CSRF-Token": "forged"}).status_code == 403


def test_without_the_csrf_echo_an_unsafe_request_is_refused(app: FastAPI) -> None:
    with TestClient(app, base_url="https://testserver") as plain:
        login_as(plain, "alice", csrf=False)
        assert plain.get("/me").status_code == 200
        assert plain.post("/ping").status_code == 403


def test_login_as_refuses_a_plain_http_client_that_would_drop_the_secure_cookies(
    app: FastAPI,
) -> None:
    with TestClient(app) as plain, pytest.raises(ConfigurationError, match="auth_client"):
        login_as(plain, "alice")
    assert app.state.issuer.backend._families == {}  # refused before anything was issued


def test_login_as_with_the_issuer_refuses_claims_of_its_own(client: TestClient) -> None:
    with pytest.raises(TypeError, match="the issuer mints the tokens"):
        login_as(client, "alice", claims={"role": "admin"})


def test_the_idle_limit_ends_a_session_signed_in_with_login_as(clock: Clock) -> None:
    app = issuer_app(clock, idle_ttl=600, absolute_ttl=3600)
    with auth_client(app) as client:
        login_as(client, "alice")
        clock.advance(ACCESS_TTL + 1)
        assert_refreshed(client.get("/me"))  # within the idle limit: refreshed
        clock.advance(601)  # no refresh for longer than idle_ttl
        response = client.get("/me")
        assert response.status_code == 401
        assert_signed_out(response)


def test_the_absolute_limit_ends_a_session_whatever_its_refreshes(clock: Clock) -> None:
    app = issuer_app(clock, idle_ttl=600, absolute_ttl=900)
    with auth_client(app) as client:
        login_as(client, "alice")
        for _ in range(8):  # refreshed every 100 s: never idle
            clock.advance(100)
            assert client.get("/me").status_code == 200
        clock.advance(101)  # 901 s after the sign-in
        response = client.get("/me")
        assert response.status_code == 401
        assert_signed_out(response)


# --- login_as with an external auth server ---------------------------------------------


def test_login_as_mints_a_token_with_the_apps_key_and_the_callback_refreshes_it(
    clock: Clock,
) -> None:
    server = AuthServer(clock, iss="https://auth.example", aud="api")
    app = external_app(clock, server, issuer="https://auth.example", audience="api")
    with auth_client(app) as client:
        session = login_as(client, "alice", claims={"role": "admin"}, ttl=ACCESS_TTL)
        claims = client.get("/me").json()["claims"]
        assert claims["role"] == "admin"
        assert (claims["iss"], claims["aud"]) == ("https://auth.example", "api")
        assert claims["exp"] == T0 + ACCESS_TTL
        clock.advance(ACCESS_TTL - 5)  # inside the refresh interval
        response = client.get("/me")
        assert response.status_code == 200
        assert_refreshed(response)
        [call] = server.calls
        assert call.refresh_token == session.refresh_token
        assert session.refresh_token is not None
        assert session.refresh_token.startswith("testing-")


def test_login_as_without_refresh_configured_starts_a_session_without_refresh_token(
    clock: Clock,
) -> None:
    with auth_client(external_app(clock)) as client:
        session = login_as(client, "alice", refresh_token=None)
        assert session.refresh_token is None
        assert "_auth_refresh" not in client.cookies
        assert client.get("/me").status_code == 200


def test_login_as_signs_with_the_private_half_of_an_asymmetric_token_key(clock: Clock) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    app = routes(FastAPI())
    store = create_store(
        secret_key=SECRET_KEY, token_key=public_pem, algorithms=["RS256"], clock=clock
    )
    app.add_middleware(AuthKitMiddleware, store=store)
    with auth_client(app) as client:
        with pytest.raises(ConfigurationError, match="pass signing_key"):
            login_as(client, "alice")
        login_as(client, "alice", signing_key=private)
        assert client.get("/me").json()["claims"]["sub"] == "alice"


def test_login_as_in_header_mode_sets_the_authorization_header(clock: Clock) -> None:
    with auth_client(external_app(clock, auth_type="header")) as client:
        session = login_as(client, "alice")
        assert client.headers["authorization"] == f"Bearer {session.access_token}"
        assert client.get("/me").status_code == 200


@pytest.mark.anyio
async def test_login_as_on_an_async_client_is_awaited(clock: Clock) -> None:
    app = issuer_app(clock)
    async with async_auth_client(app) as client:
        session = await login_as(client, "alice", user_state={"name": "Alice"})
        response = await client.get("/me")
        assert response.json()["user"] == {"name": "Alice"}
        assert (await client.post("/ping")).status_code == 200  # CSRF echoed, async hook
        clock.advance(ACCESS_TTL)
        assert_refreshed(await client.get("/me"))
        assert session.subject == "alice"


@pytest.mark.anyio
async def test_mint_session_gives_the_cookies_without_a_client(clock: Clock) -> None:
    store = find_store(external_app(clock))
    session = await mint_session(store, "alice", user_state={"n": 1})
    names = {cookie.split(b"=", 1)[0] for cookie in session.set_cookies}
    assert names == {b"_auth", b"_auth_type", b"_auth_state", b"_auth_csrf"}
    with pytest.raises(ValueError, match="subject"):
        await mint_session(store, "")


# --- failures on demand ----------------------------------------------------------------


def test_a_definitive_refresh_failure_signs_the_user_out(client: TestClient, clock: Clock) -> None:
    login_as(client, "alice")
    clock.advance(ACCESS_TTL - 5)
    with refresh_fails(client, "definitive") as failures:
        response = client.get("/me")
    assert response.status_code == 401
    assert_signed_out(response)
    assert len(failures.calls) == 1
    assert failures.calls[0].refresh_token is not None


def test_a_transient_refresh_failure_keeps_the_session(client: TestClient, clock: Clock) -> None:
    login_as(client, "alice")
    clock.advance(ACCESS_TTL - 5)
    with refresh_fails(client, "transient") as failures:
        still_valid = client.get("/me")
        clock.advance(10)
        expired = client.get("/me")
        public = client.get("/public")
    assert still_valid.status_code == 200
    assert_session_kept(still_valid)
    assert expired.status_code == 503
    assert expired.headers["retry-after"] == "5"
    assert_session_kept(expired)
    assert public.status_code == 200
    assert len(failures.calls) >= 2
    # Over: the issuer's own rotation is back, and refreshes the very same session.
    assert_refreshed(client.get("/me"))


def test_a_slow_refresh_callback_times_out_like_a_transient_failure(
    client: TestClient, clock: Clock
) -> None:
    login_as(client, "alice")
    clock.advance(ACCESS_TTL + 1)
    with refresh_fails(client, "slow", timeout=0.01):
        response = client.get("/me")
    assert response.status_code == 503
    assert_session_kept(response)


def test_refresh_fails_refuses_an_unknown_kind_and_an_app_without_refresh(
    app: FastAPI, clock: Clock
) -> None:
    with pytest.raises(ValueError, match="kind must be one of"), refresh_fails(app, "flaky"):  # type: ignore[arg-type]
        pass
    with (
        pytest.raises(ConfigurationError, match="does not refresh"),
        refresh_fails(external_app(clock)),
    ):
        pass


def test_while_the_store_is_down_an_expired_session_is_503_and_keeps_its_cookies(
    client: TestClient, clock: Clock
) -> None:
    login_as(client, "alice")
    clock.advance(ACCESS_TTL + 1)
    with store_down(client):
        response = client.get("/me")
        assert response.status_code == 503
        assert_session_kept(response)
        with pytest.raises(ConfigurationError, match="auth_client"):
            login_as(TestClient(client.app), "bob")  # the https check comes first
    assert_refreshed(client.get("/me"))  # back up: the same session refreshes


def test_signing_out_while_the_store_is_down_clears_the_cookies_but_says_so(
    client: TestClient,
) -> None:
    login_as(client, "alice")
    with store_down(client):
        response = client.post("/logout")
    assert response.json() == {"revoked": False}
    assert_signed_out(response)


def test_store_down_needs_a_store(clock: Clock) -> None:
    with (
        pytest.raises(ConfigurationError, match="no session store"),
        store_down(external_app(clock)),
    ):
        pass


# --- assertions: each one passes on what it asserts and fails on anything else -------------


def test_assert_signed_in_holds_for_a_sign_in_only(client: TestClient, clock: Clock) -> None:
    login_as(client, "alice")
    untouched = client.get("/me")
    with pytest.raises(AssertionError, match="did not sign a session in"):
        assert_signed_in(untouched)
    clock.advance(ACCESS_TTL)
    refreshed = client.get("/me")
    with pytest.raises(AssertionError, match="kept the session it had"):
        assert_signed_in(refreshed)


def test_assert_signed_in_on_a_real_login_route(clock: Clock) -> None:
    app = issuer_app(clock)
    issuer = app.state.issuer

    @app.post("/login")
    async def login(request: Request) -> dict[str, bool]:
        await issuer.sign_in(request, "alice")
        return {"ok": True}

    with auth_client(app) as client:
        first = client.post("/login")
        values = assert_signed_in(first)
        assert set(values) == {"_auth", "_auth_type", "_auth_state", "_auth_refresh", "_auth_csrf"}
        with pytest.raises(AssertionError, match="carried no refresh cookie"):
            assert_refreshed(first)
        # Signing in again (already signed in): a new session, so a new CSRF token.
        again = client.post("/login")
        assert_signed_in(again, app)
        with pytest.raises(AssertionError, match="started another session"):
            assert_refreshed(again)


def test_assert_refreshed_fails_on_a_response_that_did_not_refresh(
    client: TestClient, clock: Clock
) -> None:
    login_as(client, "alice")
    with pytest.raises(AssertionError, match="did not refresh the access token"):
        assert_refreshed(client.get("/me"))
    with pytest.raises(AssertionError, match="did not refresh"):
        assert_refreshed(client.post("/logout"))


def test_assert_signed_out_fails_on_a_response_that_did_not_sign_out(
    client: TestClient, clock: Clock
) -> None:
    login_as(client, "alice")
    with pytest.raises(AssertionError, match="did not delete every auth cookie"):
        assert_signed_out(client.get("/me"))
    clock.advance(ACCESS_TTL)
    with pytest.raises(AssertionError, match="did not delete every auth cookie"):
        assert_signed_out(client.get("/me"))  # a refresh sets cookies, deletes none


def test_assert_session_kept_fails_on_a_response_that_changed_the_session(
    client: TestClient,
) -> None:
    login_as(client, "alice")
    with pytest.raises(AssertionError, match="changed the session's cookies"):
        assert_session_kept(client.post("/logout"))


def test_assertions_read_the_apps_own_cookie_names(clock: Clock) -> None:
    issuer = create_issuer(backend=MemoryStore(), signing_key=TOKEN_KEY, clock=clock)
    app = routes(FastAPI())
    store = create_store(
        secret_key=SECRET_KEY, token_issuer=issuer, auth_name="__Host-app", clock=clock
    )
    app.add_middleware(AuthKitMiddleware, store=store)

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, bool]:
        return {"revoked": await issuer.sign_out(request)}

    with auth_client(app) as client:
        login_as(client, "alice")
        response = client.post("/logout")
        assert set(auth_cookies(response, app)) == {
            "__Host-app",
            "__Host-app_type",
            "__Host-app_state",
            "__Host-app_refresh",
            "__Host-app_csrf",
        }
        assert_signed_out(response, app)
        assert_signed_out(response, auth_name="__Host-app")
        with pytest.raises(AssertionError):
            assert_signed_out(response)  # the default names: nothing deleted


@pytest.mark.parametrize(
    "options",
    [
        {"token_key": {"old": TOKEN_KEY + "-old", "new": TOKEN_KEY}},  # signs with the last kid
        {"token_key": TOKEN_KEY, "token_typ": "at+jwt"},
        {"token_key": TOKEN_KEY, "on_event": lambda event: None},  # events built, no request
    ],
    ids=["key-ids", "typ", "on-event"],
)
def test_login_as_mints_what_the_configuration_verifies(
    clock: Clock, options: dict[str, Any]
) -> None:
    app = routes(FastAPI())
    store = create_store(secret_key=SECRET_KEY, clock=clock, **options)
    app.add_middleware(AuthKitMiddleware, store=store)
    with auth_client(app) as client:
        login_as(client, "alice")
        assert client.get("/me").json()["claims"]["sub"] == "alice"
