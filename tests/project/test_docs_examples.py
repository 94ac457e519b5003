"""The Python code blocks of the documentation site (docs/) and of README.md run, and do
what the pages say.

Every ```python block carries, on the line before its opening fence, one of two markers
(docs/development.md explains them to authors):

* ``<!-- docs-test: NAME -->``: the block is executed as a module by ``test_example_NAME``
  below, which drives the app it builds (TestClient; a real redis-server; a real loopback
  auth server) and asserts what its page claims;
* ``<!-- docs-fragment: REASON -->``: the block is only compiled; REASON says why it cannot
  run by itself.

An unmarked block, a name without its test, or a test without its block fails here, so a
page cannot gain an example that nothing runs. The README repeats some of the docs' examples:
a name used on several pages must mark the very same code, so the copies cannot drift apart
and each runs as its name's test runs it.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookiejar import Cookie
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.testclient import TestClient

from tests.support.apps import set_cookies
from tests.support.docs_examples import BLOCKS, EXAMPLES, FRAGMENTS, Block, Examples
from tests.support.oauth2_server import CLIENT_ID as OAUTH2_CLIENT_ID
from tests.support.oauth2_server import CLIENT_SECRET as OAUTH2_CLIENT_SECRET
from tests.support.oauth2_server import OAuth2Server
from tests.support.oidc_flow import code_flow
from tests.support.oidc_server import API, OIDCProviderServer
from tests.support.processes import free_port
from tests.support.redis_servers import RedisServer
from tests.support.tokens import SECRET_KEY, TOKEN_KEY

# testing.md's test modules run as pytest runs them, in a pytest of their own (pytester).
pytest_plugins = ["pytester"]

AUTH_COOKIES = {"_auth", "_auth_type", "_auth_state", "_auth_refresh", "_auth_csrf"}


def test_every_python_block_is_marked_as_a_test_or_a_fragment() -> None:
    assert [block.where for block in BLOCKS if block.kind is None] == []
    # The parser finds the examples at all (an empty list would make the rest vacuous).
    assert len(EXAMPLES) >= 5


def test_each_example_name_marks_one_code_and_has_its_test() -> None:
    copies: dict[str, set[str]] = {}
    for block in BLOCKS:
        if block.kind == "test":
            copies.setdefault(block.label, set()).add(block.code.lstrip("\n"))
    assert {label for label, codes in copies.items() if len(codes) > 1} == set()
    tests = {
        name.removeprefix("test_example_") for name in globals() if name.startswith("test_example_")
    }
    assert set(copies) == tests


def test_the_readme_examples_are_marked_and_run() -> None:
    """README.md's smallest app runs here too, as its copy of the docs' example."""
    readme = [block for block in BLOCKS if block.path.name == "README.md"]
    assert {block.label for block in readme} >= {"smallest_app"}


@pytest.mark.parametrize("block", FRAGMENTS, ids=[block.where for block in FRAGMENTS])
def test_fragments_are_valid_python(block: Block) -> None:
    compile(block.code, str(block.path), "exec")


@pytest.fixture
def examples(monkeypatch: pytest.MonkeyPatch) -> Examples:
    monkeypatch.setenv("TOKEN_SECRET", TOKEN_KEY)
    monkeypatch.setenv("COOKIE_SECRET", SECRET_KEY)
    return Examples(monkeypatch)


def browser(app: Any) -> TestClient:
    # https, so that the cookie jar sends the Secure cookies back as a browser would.
    return TestClient(app, base_url="https://testserver")


def cookies_of(client: TestClient) -> list[Cookie]:
    """A copy of the client's cookie jar: one device's cookies."""
    return list(client.cookies.jar)


def use(client: TestClient, device: list[Cookie]) -> None:
    """Make ``client`` the device whose cookies ``device`` holds."""
    client.cookies.clear()
    for cookie in device:
        client.cookies.jar.set_cookie(cookie)


def csrf(client: TestClient) -> dict[str, str]:
    """The header page JavaScript sends on unsafe requests."""
    return {"X-CSRF-Token": client.cookies["_auth_csrf"]}


# --- getting-started.md -----------------------------------------------------------------------


def test_example_smallest_app(examples: Examples) -> None:
    """Signs Alice in with HttpOnly cookies (all but the CSRF one); /me is 401 for others."""
    app = examples.run("smallest_app").app
    with browser(app) as client:
        assert client.get("/me").status_code == 401
        response = client.post("/login")
        assert response.json() == {"ok": True}
        cookies = set_cookies(response)
        assert set(cookies) == AUTH_COOKIES
        assert {name for name, value in cookies.items() if "HttpOnly" not in value} == {
            "_auth_csrf"
        }
        assert client.get("/me").json() == {"name": "Alice"}
        client.cookies.clear()
        assert client.get("/me").status_code == 401


# --- performance.md ---------------------------------------------------------------------------


def test_example_hot_route(examples: Examples) -> None:
    """The /hot route, added to the smallest app, answers 401 signed out and the subject
    signed in, without a dependency."""
    module = examples.run("smallest_app")
    examples.run("hot_route", into=module)
    with browser(module.app) as client:
        response = client.get("/hot")
        assert response.status_code == 401
        client.post("/login")
        assert client.get("/hot").json() == {"sub": "alice"}


# --- deployments/one-process.md --------------------------------------------------------------


def test_example_one_process(examples: Examples) -> None:
    """Login form, pages, CSRF-guarded sign-out and sign-out everywhere, as the page says."""
    app = examples.run("one_process").app
    alice = {"username": "alice", "password": "wonderland"}
    with browser(app) as client:
        assert client.get("/").json() == {"hello": "stranger"}
        assert client.get("/api/me").status_code == 401
        assert client.post("/login", data={**alice, "password": "nope"}).status_code == 401

        response = client.post("/login", data=alice, follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (303, "/")
        assert client.get("/").json() == {"hello": "Alice"}
        assert client.get("/api/me").json() == {"name": "Alice"}
        # The form is posted without JavaScript, so without the CSRF header, also when a
        # session exists already: csrf_exempt_paths lets it through.
        assert client.post("/login", data=alice, follow_redirects=False).status_code == 303
        laptop = cookies_of(client)

        client.cookies.clear()
        client.post("/login", data=alice)  # a second device
        phone = cookies_of(client)

        # Sign-out is an unsafe request: without the CSRF header it is refused.
        assert client.post("/logout").status_code == 403
        assert client.post("/logout", headers=csrf(client)).json() == {"ok": True}
        assert client.get("/api/me").status_code == 401

        use(client, phone)
        assert client.get("/api/me").status_code == 401  # revoked server-side, not only cleared

        use(client, laptop)
        assert client.get("/api/me").json() == {"name": "Alice"}
        client.cookies.clear()
        client.post("/login", data=alice)  # a third device signs out everywhere
        assert client.post("/logout-everywhere", headers=csrf(client)).json() == {"ok": True}
        assert client.get("/api/me").status_code == 401
        use(client, laptop)
        assert client.get("/api/me").status_code == 401


# --- sessions.md ------------------------------------------------------------------------------


def test_example_sessions_page(examples: Examples) -> None:
    """The one-process app with the sessions page: each device sees both of Alice's sessions,
    its own first with the user agent it signed in with; revoking the laptop's from the phone
    ends the laptop's session only; another user's session id is a 404 and stays live."""
    module = examples.run("one_process")
    examples.run("sessions_page", into=module)
    alice = {"username": "alice", "password": "wonderland"}

    @module.app.post("/login-bob")
    async def login_bob(request: Request) -> dict[str, bool]:  # a second user, for the test
        await module.issuer.sign_in(request, "user-2", user_state={"name": "Bob"})
        return {"ok": True}

    with browser(module.app) as client:
        assert client.get("/api/sessions").status_code == 401
        client.post("/login-bob")
        bob = cookies_of(client)
        (bob_session,) = client.get("/api/sessions").json()

        client.cookies.clear()
        client.post("/login", data=alice, headers={"user-agent": "Laptop/1.0"})
        laptop = cookies_of(client)
        client.cookies.clear()
        client.post("/login", data=alice, headers={"user-agent": "Phone/2.0"})
        phone = cookies_of(client)

        listed = client.get("/api/sessions").json()
        assert [(s["current"], s["user_agent"]) for s in listed] == [
            (True, "Phone/2.0"),
            (False, "Laptop/1.0"),
        ]
        assert all(s["ip"] == "testclient" for s in listed)
        laptop_id = listed[1]["id"]

        # Revoking is an unsafe request: the CSRF check applies.
        assert client.delete(f"/api/sessions/{laptop_id}").status_code == 403
        gone = client.delete(f"/api/sessions/{laptop_id}", headers=csrf(client))
        assert gone.json() == {"revoked": True}
        assert [s["id"] for s in client.get("/api/sessions").json()] == [listed[0]["id"]]
        # Bob's session is not Alice's to end.
        refused = client.delete(f"/api/sessions/{bob_session['id']}", headers=csrf(client))
        assert refused.status_code == 404
        assert client.get("/api/me").json() == {"name": "Alice"}

        use(client, laptop)
        assert client.get("/api/me").status_code == 401
        use(client, bob)
        assert client.get("/api/me").json() == {"name": "Bob"}
        use(client, phone)
        assert client.get("/api/me").json() == {"name": "Alice"}


def test_example_bearer_clients(examples: Examples) -> None:
    """A browser (cookies, CSRF) and a mobile app (bearer tokens in the body) sign in to the
    same routes; the app refreshes at /oauth/token, a reused refresh token is invalid_grant
    and ends the app's session, and the app's sign-out touches no cookie."""
    app = examples.run("bearer_clients").app
    alice = {"username": "alice", "password": "wonderland"}
    with browser(app) as client:
        tokens = client.post("/oauth/login", json=alice).json()
        assert set(tokens) == {"access_token", "token_type", "expires_in", "refresh_token"}
        assert (tokens["token_type"], tokens["expires_in"]) == ("Bearer", 300)
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        assert client.get("/api/me", headers=bearer).json() == {
            "sub": "alice",
            "credential": "header",
        }
        assert client.post("/oauth/login", json={**alice, "password": "x"}).status_code == 401
        grant = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        renewed = client.post("/oauth/token", data=grant)
        assert renewed.status_code == 200
        assert renewed.headers["cache-control"] == "no-store"
        new = renewed.json()
        again = {"grant_type": "refresh_token", "refresh_token": new["refresh_token"]}
        newest = client.post("/oauth/token", data=again).json()
        bearer = {"Authorization": f"Bearer {newest['access_token']}"}
        assert client.get("/api/me", headers=bearer).json()["credential"] == "header"

        assert client.post("/login", json=alice).json() == {"ok": True}  # a browser
        assert client.get("/api/me").json() == {"sub": "alice", "credential": "cookie"}
        assert client.get("/api/me", headers=bearer).json()["credential"] == "header"
        browser_cookies = cookies_of(client)
        use(client, [])
        # The first refresh token again, after its successor was used: reuse.
        reused = client.post("/oauth/token", data=grant)
        assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")
        assert client.get("/api/me", headers=bearer).status_code == 401
        use(client, browser_cookies)
        assert client.get("/api/me").json()["credential"] == "cookie"  # another session

        use(client, [])
        tokens = client.post("/oauth/login", json=alice).json()
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        use(client, browser_cookies)
        response = client.post("/logout", headers=bearer)  # no CSRF header: the app's
        assert response.json() == {"revoked": True}
        assert response.headers.get_list("set-cookie") == []
        use(client, [])
        assert client.get("/api/me", headers=bearer).status_code == 401


# --- deployments/redis.md --------------------------------------------------------------------


def test_example_redis_issuer(
    examples: Examples, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two copies of the app (two workers) share sessions through a real Redis: a session
    started on one is known to the other, and signing out everywhere on one ends it on both."""
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    worker_a = examples.run("redis_issuer").app
    worker_b = examples.run("redis_issuer").app  # a second module: its own Redis client
    alice = {"username": "alice", "password": "wonderland"}
    with browser(worker_a) as a, browser(worker_b) as b:
        assert a.post("/login", data=alice, follow_redirects=False).status_code == 303
        assert b.get("/api/me").status_code == 401  # b's own jar: nobody
        use(b, cookies_of(a))
        assert b.get("/api/me").json() == {"name": "Alice"}

        b.cookies.clear()
        assert b.post("/login", data=alice, follow_redirects=False).status_code == 303
        assert b.get("/api/me").json() == {"name": "Alice"}

        assert a.post("/logout-everywhere", headers=csrf(a)).json() == {"ok": True}
        assert a.get("/api/me").status_code == 401
        assert b.get("/api/me").status_code == 401  # b's session ended too, through Redis


# --- deployments/identity-provider.md --------------------------------------------------------


class AuthServer:
    """A stand-in for the identity provider, served on loopback by a real uvicorn: RS256
    access tokens, rotating refresh tokens, revocation, and a downstream API that echoes the
    Authorization header it receives. ``failing`` makes the refresh endpoint answer 503."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.url = ""
        self.access_ttl = 30  # shorter than the app's interval (60 s): the next request refreshes
        self.failing = False
        self.live: dict[str, str] = {}  # refresh token -> subject
        self.refresh_calls: list[str] = []
        self.revoked: list[str] = []
        self.app = FastAPI()
        self.app.post("/token")(self.token)
        self.app.post("/token/refresh")(self.refresh)
        self.app.post("/token/revoke")(self.revoke)
        self.app.get("/orders")(self.orders)

    def public_pem(self) -> str:
        return (
            self.key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def pair(self, subject: str) -> dict[str, Any]:
        now = int(time.time())
        claims = {"sub": subject, "iss": self.url, "iat": now, "exp": now + self.access_ttl}
        refresh_token = f"rt-{len(self.refresh_calls)}-{len(self.live)}-{time.monotonic_ns()}"
        self.live[refresh_token] = subject
        return {
            "access_token": jwt.encode(claims, self.key, algorithm="RS256"),
            "refresh_token": refresh_token,
            "refresh_expires_in": 3600,
        }

    async def token(self, request: Request) -> JSONResponse:
        creds = await request.json()
        if creds != {"username": "alice", "password": "wonderland"}:
            return JSONResponse({"error": "invalid_grant"}, status_code=401)
        return JSONResponse({**self.pair("alice"), "name": "Alice"})

    async def refresh(self, request: Request) -> JSONResponse:
        presented = (await request.json())["refresh_token"]
        self.refresh_calls.append(presented)
        if self.failing:
            return JSONResponse({"error": "temporarily_unavailable"}, status_code=503)
        subject = self.live.pop(presented, None)
        if subject is None:
            return JSONResponse({"error": "invalid_grant"}, status_code=401)
        return JSONResponse(self.pair(subject))

    async def revoke(self, request: Request) -> JSONResponse:
        token = (await request.json())["token"]
        self.revoked.append(token)
        self.live.pop(token, None)
        return JSONResponse({})

    async def orders(self, request: Request) -> dict[str, str | None]:
        return {"authorization": request.headers.get("authorization")}


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; bounded start and stop."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            pytest.fail(f"the auth server did not start on port {port}", pytrace=False)
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_example_identity_provider(
    examples: Examples, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Login through the auth server (a wrong password is a 401, the refresh cookie lives
    as long as the auth server says), refresh through the callback before the route runs
    (rotating the refresh token), the header forwarded downstream, a transient refresh
    failure that keeps the session, 401 from the auth server ending it, sign-out revoking
    the refresh token at the auth server."""
    idp = AuthServer()
    with serve(idp.app) as url:
        idp.url = url
        monkeypatch.setenv("AUTH_SERVER", url)
        monkeypatch.setenv("ORDERS_API", f"{url}/orders")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # loopback only, whatever the environment
        monkeypatch.chdir(tmp_path)
        (tmp_path / "auth-server-public.pem").write_text(idp.public_pem())
        app = examples.run("identity_provider").app
        alice = {"username": "alice", "password": "wonderland"}

        with browser(app) as client:
            assert client.get("/").json() == {"hello": "stranger"}
            assert (
                client.get(
                    "/dashboard", headers={"accept": "text/html"}, follow_redirects=False
                ).headers["location"]
                == "/login"
            )
            assert client.get("/dashboard").status_code == 401
            wrong = client.post("/login", json={**alice, "password": "nope"})
            assert wrong.status_code == 401
            assert wrong.json() == {"detail": "wrong username or password"}

            response = client.post("/login", json=alice)
            assert response.json() == {"ok": True}
            assert "Max-Age=3600;" in set_cookies(response)["_auth_refresh"]  # the server's
            first_refresh = client.cookies["_auth_refresh"]
            first_token = client.cookies["_auth"]

            # The token has 30 s left, inside the 60 s interval: this request refreshes
            # before the route runs, and the route already sees the session.
            idp.access_ttl = 600
            response = client.get("/api/me")
            assert response.json() == {"name": "Alice"}
            assert idp.refresh_calls == [first_refresh]
            assert {"_auth", "_auth_refresh"} <= set(set_cookies(response))
            assert client.cookies["_auth"] != first_token
            assert client.cookies["_auth_refresh"] != first_refresh  # rotated

            # Not due any more: no further call.
            assert client.get("/").json() == {"hello": "Alice"}
            assert client.get("/dashboard").json() == {"name": "Alice"}
            assert len(idp.refresh_calls) == 1

            forwarded = client.get("/orders").json()
            assert forwarded == {"authorization": f"Bearer {client.cookies['_auth']}"}

            # A transient failure (503 from the auth server): nothing cleared, and the old
            # token, still valid, keeps the user signed in.
            idp.access_ttl = 30
            client.cookies.clear()
            client.post("/login", json=alice)
            idp.failing = True
            response = client.get("/api/me")
            assert response.json() == {"name": "Alice"}
            assert set_cookies(response) == {}
            assert len(idp.refresh_calls) == 2

            # The auth server ends the session (401): every auth cookie is deleted.
            idp.failing = False
            idp.live.clear()
            response = client.get("/api/me")
            assert response.status_code == 401
            assert set(set_cookies(response)) == AUTH_COOKIES
            assert dict(client.cookies) == {}

            client.post("/login", json=alice)
            idp.access_ttl = 600
            assert client.get("/api/me").status_code == 200
            # Signed in already, with the CSRF cookie of that session: the login form
            # posted again without the header is let through (csrf_exempt_paths), and the
            # session it replaces is ended at the auth server.
            replaced = client.cookies["_auth_refresh"]
            assert client.post("/login", json=alice).json() == {"ok": True}
            assert idp.revoked == [replaced]
            session_refresh = client.cookies["_auth_refresh"]
            response = client.post("/logout", headers=csrf(client))
            assert response.json() == {"ok": True}
            assert set(set_cookies(response)) == AUTH_COOKIES
            assert client.get("/api/me").status_code == 401
            assert idp.revoked == [replaced, session_refresh]  # ended at the auth server too
            assert session_refresh not in idp.live


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[OIDCProviderServer]:
    server = OIDCProviderServer(tmp_path, redirect_uris=["https://testserver/auth/callback"])
    server.start()
    yield server
    server.stop()


@pytest.mark.realserver
def test_example_oidc_smallest_app(examples: Examples, provider: OIDCProviderServer) -> None:
    """The smallest app behind an identity provider, as printed, pointed at panva's
    oidc-provider on loopback: the code flow signs Alice in and /me answers her claims."""
    app = examples.run(
        "oidc_smallest_app",
        replace={
            "https://id.example.com/realms/main": provider.issuer,
            '"my-app"': repr(provider.client_options["client_id"]),
            '"..."': repr(provider.client_options["client_secret"]),
            "https://api.example.com": API,
        },
    ).app
    with browser(app) as client:
        assert client.get("/me").status_code == 401
        signed_in = code_flow(client, provider, redirect="https://testserver/auth/callback")
        assert signed_in.status_code == 303, signed_in.text
        assert client.get("/me").json() == {"sub": "alice"}  # scope openid: the sub only


@pytest.mark.realserver
def test_example_social_sign_in(
    examples: Examples, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Social sign-in as printed, its company provider pointed at panva's oidc-provider and
    its GitHub at Authlib's authorization server (both on loopback): each signs Alice in
    into one of the app's own sessions, a disabled account is refused with 403, and
    sign-out ends the session at the issuer."""
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    company_callback = "https://testserver/auth/company/callback"
    github_callback = "https://testserver/auth/github/callback"
    provider = OIDCProviderServer(tmp_path, redirect_uris=[company_callback])
    provider.settings["apiByDefault"] = False  # oidc-provider's default policy
    provider.start()
    try:
        with OAuth2Server([github_callback]).running() as github:
            module = examples.run(
                "social_sign_in",
                replace={
                    "https://id.example.com/realms/main": provider.issuer,
                    '"my-app"': repr(provider.client_options["client_id"]),
                    '"..."': repr(provider.client_options["client_secret"]),
                    "https://github.com/login/oauth/authorize": f"{github.url}/authorize",
                    "https://github.com/login/oauth/access_token": f"{github.url}/token",
                    "https://api.github.com/user": f"{github.url}/user",
                    '"https://github.com"': repr(github.url),
                    '"my-github-app"': repr(OAUTH2_CLIENT_ID),
                    '"...github..."': repr(OAUTH2_CLIENT_SECRET),
                },
            )
            with browser(module.app) as client:
                signed_in = code_flow(
                    client, provider, redirect=company_callback, prefix="/auth/company"
                )
                assert signed_in.status_code == 303, signed_in.text
                assert client.get("/me").json() == {"name": "Alice", "via": "company"}
                assert module.links == {(provider.issuer, "alice"): "user-1"}
                response = client.post("/logout", headers=csrf(client))
                assert response.json() == {"ok": True}
                assert client.get("/me").status_code == 401

                start = client.get("/auth/github/login", follow_redirects=False)
                answer = httpx2.get(start.headers["location"], timeout=10.0)
                query = urlsplit(answer.headers["location"]).query
                done = client.get(f"/auth/github/callback?{query}", follow_redirects=False)
                assert done.status_code == 303, done.text
                assert client.get("/me").json() == {"name": "Alice", "via": "github"}
                assert module.links[(github.url, "1001")] == "user-2"

                module.accounts["user-1"]["disabled"] = True
                refused = code_flow(
                    client, provider, redirect=company_callback, prefix="/auth/company"
                )
                assert refused.status_code == 403
                assert refused.json() == {"detail": "this account is disabled"}
    finally:
        provider.stop()


# --- events.md -------------------------------------------------------------------------------


def test_example_audit_log(examples: Examples, caplog: pytest.LogCaptureFixture) -> None:
    """The audit hook as printed: a JSON line per event on the app's own logger, for the
    sign-in, the refused sign-out (no CSRF header) and the sign-out, as the page shows."""
    import json

    app = examples.run("audit_log").app
    with caplog.at_level(logging.INFO, "myapp.audit"), browser(app) as client:
        assert client.post("/login").json() == {"ok": True}
        assert client.get("/api/me").json() == {"name": "Alice"}
        assert client.post("/logout").status_code == 403
        assert client.post("/logout", headers=csrf(client)).json() == {"ok": True}
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "myapp.audit"]
    assert [line["kind"] for line in lines] == ["signed_in", "request_refused", "signed_out"]
    signed_in, refused, signed_out = lines
    assert set(signed_in) == {
        "kind", "at", "subject", "session", "path", "method", "ip", "user_agent", "count", "jti"
    }  # fmt: skip
    assert (signed_in["subject"], signed_in["path"], signed_in["method"]) == (
        "user-1",
        "/login",
        "POST",
    )
    assert (refused["reason"], refused["detail"]) == ("csrf", "CSRF token missing or invalid")
    assert (signed_out["session"], signed_out["everywhere"], signed_out["revoked"]) == (
        signed_in["session"],
        False,
        True,
    )


# --- testing.md ------------------------------------------------------------------------------


def run_as_tests(examples: Examples, pytester: pytest.Pytester, label: str, passed: int) -> None:
    """The example ``label``, a test module importing ``myapp`` (the page's app), run by
    pytest: every test it holds passes."""
    myapp = examples.run("testing_app")
    examples.monkeypatch.setitem(sys.modules, "myapp", myapp)
    pytester.makepyfile(**{f"test_{label}": EXAMPLES[label].code})
    result = pytester.runpytest_inprocess(
        "-p", "fastapi_authkit.testing.plugin", "-p", "no:cacheprovider", "-W", "error"
    )
    result.assert_outcomes(passed=passed)


def test_example_testing_app(examples: Examples) -> None:
    """The app built with a clock: signed out, /me is 401; the module's own app runs on the
    real time."""
    from fastapi_authkit.testing import Clock, auth_client, login_as

    module = examples.run("testing_app")
    with auth_client(module.app) as client:
        assert client.get("/me").status_code == 401
    clock = Clock(1_800_000_000)
    with auth_client(module.create_app(clock=clock)) as client:
        session = login_as(client, "alice")
        assert session.claims["exp"] == 1_800_000_000 + 300


def test_example_testing_pytest(examples: Examples, pytester: pytest.Pytester) -> None:
    """Each of the page's pytest tests passes, fixtures from the plugin."""
    run_as_tests(examples, pytester, "testing_pytest", passed=7)


def test_example_testing_external(examples: Examples, pytester: pytest.Pytester) -> None:
    """The external auth server's test passes: the claims given, the refresh faked."""
    run_as_tests(examples, pytester, "testing_external", passed=1)


def test_example_testing_async(examples: Examples, pytester: pytest.Pytester) -> None:
    """The async test passes, on an AsyncClient."""
    run_as_tests(examples, pytester, "testing_async", passed=1)


# --- behaviour.md ------------------------------------------------------------------------------


def test_example_cookie_and_bearer(examples: Examples) -> None:
    """A browser's cookie session (with its CSRF header) and an app's bearer header on the
    same route; with both, the header's identity; both schemes in /openapi.json."""
    module = examples.run("cookie_and_bearer")
    app = module.app
    with browser(app) as client:
        app_token = module.token_for("mobile-app")
        bearer = {"Authorization": f"Bearer {app_token}"}
        assert client.post("/notes").status_code == 401
        response = client.post("/notes", headers=bearer)  # no CSRF header needed
        assert response.json() == {"by": "mobile-app", "credential": "header"}
        assert client.post("/login").json() == {"ok": True}
        assert client.post("/notes").status_code == 403  # cookies: the CSRF header is due
        response = client.post("/notes", headers=csrf(client))
        assert response.json() == {"by": "alice", "credential": "cookie"}
        response = client.post("/notes", headers=bearer)
        assert response.json() == {"by": "mobile-app", "credential": "header"}
        response = client.post("/notes", headers={"Authorization": "Bearer junk", **csrf(client)})
        assert response.json() == {"by": "alice", "credential": "cookie"}
        schema = client.get("/openapi.json").json()
        assert set(schema["components"]["securitySchemes"]) == {"AuthKitCookie", "AuthKitBearer"}
        assert schema["paths"]["/notes"]["post"]["security"] == [
            {"AuthKitCookie": []},
            {"AuthKitBearer": []},
        ]


# --- login-guard.md ---------------------------------------------------------------------------


def test_example_login_guard(examples: Examples) -> None:
    """Five wrong passwords lock the account: the sixth attempt, right password and all, is
    a 429 with Retry-After: 1; once the lock ran out the right password signs in. A name
    that does not exist gets the very same answers. (The guard's clock is the test's.)"""
    from tests.support.clock import Clock

    module = types.ModuleType("docs_example_login_guard")
    module.clock = Clock()  # type: ignore[attr-defined]
    examples.monkeypatch.setitem(sys.modules, module.__name__, module)
    examples.run(
        "login_guard", into=module, replace={"max_delay=900)": "max_delay=900, clock=clock)"}
    )

    def answers(client: TestClient, username: str, password: str) -> list[tuple[int, str | None]]:
        found = []
        for _ in range(6):
            response = client.post("/login", data={"username": username, "password": password})
            found.append((response.status_code, response.headers.get("retry-after")))
        return found

    with browser(module.app) as client:
        assert answers(client, "alice", "guess") == [(401, None)] * 5 + [(429, "1")]
        right = {"username": "alice", "password": "wonderland"}
        locked = client.post("/login", data=right)
        assert (locked.status_code, locked.json()) == (
            429,
            {"detail": "too many sign-in attempts; try again later"},
        )
        module.clock.advance(1)  # type: ignore[attr-defined]
        assert client.post("/login", data=right).json() == {"ok": True}
        assert "_auth" in client.cookies
        assert answers(client, "nobody", "guess") == answers(client, "nobody-else", "guess")


# --- recipes.md --------------------------------------------------------------------------------


def test_example_settings_from_env(
    examples: Examples, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The secrets come from the environment and from `.env` as SecretStr, and work."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(f"AUTHKIT_COOKIE_SECRET={SECRET_KEY}\n")
    monkeypatch.setenv("AUTHKIT_SIGNING_KEY", TOKEN_KEY)
    module = examples.run("settings_from_env")
    assert SECRET_KEY not in repr(module.settings)
    assert TOKEN_KEY not in repr(module.settings)
    with browser(module.app) as client:
        assert client.post("/login").json() == {"ok": True}
        assert client.get("/me").json() == {"name": "Alice"}


def test_the_settings_recipe_without_a_secret_fails_at_start_up(
    examples: Examples, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTHKIT_SIGNING_KEY", TOKEN_KEY)
    with pytest.raises(ValueError, match="cookie_secret"):
        examples.run("settings_from_env")


def test_example_remember_me(examples: Examples) -> None:
    """Ticked: persistent cookies; unticked: session cookies and a 30-minute idle limit."""
    app = examples.run("remember_me").app
    with browser(app) as client:
        ticked = client.post(
            "/login", data={"username": "alice", "remember": "true"}, follow_redirects=False
        )
        assert ticked.status_code == 303
        assert all("Max-Age=" in value for value in set_cookies(ticked).values())
        unticked = client.post("/login", data={"username": "bob"}, follow_redirects=False)
        cookies = set_cookies(unticked)
        assert set(cookies) == AUTH_COOKIES
        assert not any("Max-Age=" in value for value in cookies.values())


def test_example_sync_routes(examples: Examples) -> None:
    """def routes: sign in through the issuer, read the user, sign out (revoked)."""
    module = examples.run("sync_routes")
    with browser(module.app) as client:
        assert client.get("/hello").json() == "hello stranger"
        assert client.post("/login").json() == {"ok": True}
        assert client.get("/me").json() == {"name": "Alice"}
        assert client.get("/hello").json() == "hello Alice"
        kept = cookies_of(client)
        assert client.post("/logout", headers=csrf(client)).json() == {"ok": True}
        assert client.get("/me").status_code == 401
        use(client, kept)  # the signed-out session's cookies, replayed: revoked
        assert client.get("/me").status_code == 401


def test_example_plain_starlette(examples: Examples) -> None:
    """No FastAPI: the same sign-in, read, and revoking sign-out."""
    module = examples.run("plain_starlette")
    with browser(module.app) as client:
        assert client.get("/me").status_code == 401
        assert client.post("/login").json() == {"ok": True}
        assert client.get("/me").json() == {"name": "Alice"}
        assert client.post("/logout", headers=csrf(client)).json() == {"revoked": True}
        assert client.get("/me").status_code == 401
