"""Issue 15: the usual mistakes of a new user each say what to do, at the earliest point and
once per configuration (in practice once per process), on the ``fastapi_authkit`` logger, or
fail loudly. Each test makes the mistake and checks the message (or the loud failure)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fastapi import FastAPI, Request, WebSocket
from starlette.testclient import TestClient

from fastapi_authkit import (
    AuthKitMiddleware,
    ConfigurationError,
    RefreshParam,
    RefreshResult,
    TokenError,
    create_refresh,
    create_store,
    sign_in,
    sign_out,
)
from fastapi_authkit.dependencies import AuthStateDep, CurrentUser
from fastapi_authkit.notices import DEBUG_FORMAT

from tests.support.apps import Recorder, build_app, build_store, client, login
from tests.support.clock import Clock
from tests.support.example_server import run_example_app
from tests.support.tokens import SECRET_KEY, make_token

LOGGER = "fastapi_authkit"


def records(caplog: pytest.LogCaptureFixture, needle: str) -> list[logging.LogRecord]:
    """The kit's records whose message contains ``needle``."""
    return [r for r in caplog.records if r.name == LOGGER and needle in r.getMessage()]


# --- Secure cookies over plain http ---------------------------------------------------------


@pytest.mark.parametrize(
    "base_url", ["http://app.example.test", "http://192.168.1.20:8000", "ws://app.example.test"]
)
def test_secure_cookies_set_over_http_to_a_real_host_warn_once(
    clock: Clock, caplog: pytest.LogCaptureFixture, base_url: str
) -> None:
    """The sign-in "works" but the browser (or httpx) never sends the cookies back: the first
    response that sets them says why and what to do; the next ones say nothing more."""
    app = build_app(build_store(clock, Recorder(clock)))
    tc = TestClient(app, base_url=base_url.replace("ws://", "http://"))
    if base_url.startswith("ws://"):
        # A WebSocket handshake that signs in: the cookies go on the accept.
        @app.websocket("/ws-login")
        async def ws_login(websocket: WebSocket) -> None:
            sign_in(websocket, auth={"token": make_token(clock)}, refresh="refresh-0")
            await websocket.accept()
            await websocket.close()

        with (
            caplog.at_level(logging.WARNING, logger=LOGGER),
            tc.websocket_connect("/ws-login", headers={"host": "app.example.test"}),
        ):
            pass
    else:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            login(tc, clock)
            assert tc.get("/me").status_code == 401  # the jar did not send them back
            login(tc, clock)
    (warning,) = records(caplog, "Secure auth cookies were set on a plain-http request")
    message = warning.getMessage()
    host = base_url.split("//")[1].split(":")[0]
    assert f"to {host!r}" in message
    assert "--proxy-headers" in message
    assert "cookie_secure=False" in message
    assert warning.levelno == logging.WARNING


@pytest.mark.parametrize(
    "base_url",
    [
        "https://app.example.test",  # the normal case
        "http://localhost:8000",  # browsers accept Secure cookies from loopback over http
        "http://127.0.0.1:8000",
        "http://127.8.9.10",
        "http://[::1]:8000",
        "http://app.localhost",
    ],
)
def test_secure_cookies_over_https_or_to_loopback_say_nothing(
    clock: Clock, caplog: pytest.LogCaptureFixture, base_url: str
) -> None:
    # The kit reads the Host header a browser sends ("[::1]:8000"); Starlette's TestClient
    # parses an IPv6 base_url only from 1.7 on, so that one is given as the header.
    ipv6 = "[" in base_url
    tc = TestClient(
        build_app(build_store(clock, Recorder(clock))),
        base_url="http://localhost:8000" if ipv6 else base_url,
        headers={"host": base_url.removeprefix("http://")} if ipv6 else None,
    )
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        login(tc, clock)
    assert records(caplog, "plain-http") == []


def test_cookie_secure_false_over_http_says_nothing(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """What the warning recommends for local development over http: it then works, and
    nothing is logged."""
    store = build_store(clock, Recorder(clock), cookie_secure=False)
    tc = TestClient(build_app(store), base_url="http://dev.example.test")
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        login(tc, clock)
        assert tc.get("/me").status_code == 200
    assert records(caplog, "plain-http") == []


# --- a refresh interval beyond the token's lifetime ----------------------------------------


@pytest.mark.parametrize("interval", [300, 301, 1000])
def test_refresh_interval_at_or_beyond_the_token_lifetime_warns_at_the_first_token(
    clock: Clock, caplog: pytest.LogCaptureFixture, interval: float
) -> None:
    recorder = Recorder(clock)
    store = build_store(
        clock, None, refresh=create_refresh(interval=interval, refresh_api_callback=recorder)
    )
    tc = client(build_app(store))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        login(tc, clock, ttl=300)  # the first token: the warning
        tc.get("/me")  # refreshes at once (the mistake), and mints another such token
        tc.get("/me")
    assert len(recorder.calls) == 2  # what the warning is about: every request refreshes
    (warning,) = records(caplog, "at or beyond the access token's whole lifetime")
    assert f"create_refresh(interval={interval:g})" in warning.getMessage()
    assert "(300 s)" in warning.getMessage()
    assert "every request refreshes it" in warning.getMessage()


def test_refresh_interval_below_the_token_lifetime_says_nothing(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    tc = client(build_app(build_store(clock, Recorder(clock))))  # interval 60
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        login(tc, clock, ttl=300)
        clock.advance(250)
        tc.get("/me")  # a refresh in the last minute, as configured
    assert records(caplog, "whole lifetime") == []


def test_refresh_interval_beyond_the_issuer_lifetime_warns_at_create_store(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """With the built-in issuer the lifetime is known before any token: create_store says."""
    from fastapi_authkit import create_issuer
    from fastapi_authkit.stores import MemoryStore

    issuer = create_issuer(
        backend=MemoryStore(), signing_key="issuer-signing-key-0123456789abcdef", access_ttl=60
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        create_store(
            secret_key=SECRET_KEY,
            token_issuer=issuer,
            refresh=create_refresh(interval=60, refresh_api_callback=issuer.refresh),
        )
    (warning,) = records(caplog, "whole lifetime")
    assert "create_refresh(interval=60)" in warning.getMessage()


# --- debug=True visible by default ----------------------------------------------------------


@pytest.fixture
def bare_logging() -> Iterator[logging.Logger]:
    """Logging as uvicorn leaves it for an app: no handler would print the kit's records and
    its logger has no level. pytest attaches its capture handlers to the root logger (and
    to loggers that do not propagate) for each test phase, so the kit's logger stops
    propagating for the test, and the test calls :func:`without_capture` first. Restored
    here, then the loggers' level cache is cleared (a stale one would let DEBUG records
    through in later tests)."""
    kit = logging.getLogger(LOGGER)
    saved = (kit.handlers, kit.level, kit.propagate)
    kit.handlers, kit.level, kit.propagate = [], logging.NOTSET, False
    kit.manager._clear_cache()
    try:
        yield kit
    finally:
        kit.handlers, kit.level, kit.propagate = saved
        kit.manager._clear_cache()


def without_capture(kit: logging.Logger) -> None:
    """Drop the capture handlers pytest attached to the (non-propagating) kit logger for
    this test's call phase; pytest's own removal at the end of the phase finds nothing."""
    kit.handlers.clear()


def _debug_app(clock: Clock, **options: Any) -> FastAPI:
    return build_app(build_store(clock, Recorder(clock), **options))


def test_debug_true_prints_to_stderr_without_touching_the_root_logger(
    clock: Clock, bare_logging: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    without_capture(bare_logging)
    root_handlers, root_level = list(logging.root.handlers), logging.root.level
    with client(_debug_app(clock, debug=True)) as tc:  # the middleware is built at startup
        login(tc, clock, ttl=100)
        clock.advance(50)
        tc.get("/me")  # due: a refresh, explained at DEBUG level
    (handler,) = bare_logging.handlers
    assert isinstance(handler, logging.StreamHandler)
    assert handler.formatter is not None
    assert handler.formatter._fmt == DEBUG_FORMAT
    assert bare_logging.level == logging.DEBUG
    assert logging.root.handlers == root_handlers
    assert logging.root.level == root_level
    err = capsys.readouterr().err
    assert "DEBUG fastapi_authkit: refreshing (access token near expiry)" in err
    assert "DEBUG fastapi_authkit: refresh succeeded; new cookies queued" in err


def test_debug_false_attaches_nothing(clock: Clock, bare_logging: logging.Logger) -> None:
    without_capture(bare_logging)
    with client(_debug_app(clock)) as tc:
        login(tc, clock)
    assert bare_logging.handlers == []
    assert bare_logging.level == logging.NOTSET


def test_debug_true_keeps_the_logging_the_app_configured(
    clock: Clock, bare_logging: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    """A handler the app configured (on the root logger, where records propagate) and a
    level it set on the kit's logger are left alone: no second handler, so no line is
    printed twice, and the app's level holds."""
    without_capture(bare_logging)
    bare_logging.propagate = True  # to the root logger, which has (pytest's) handler
    bare_logging.setLevel(logging.INFO)
    with client(_debug_app(clock, debug=True)) as tc:
        login(tc, clock, ttl=100)
        clock.advance(50)
        tc.get("/me")
    assert bare_logging.handlers == []
    assert bare_logging.level == logging.INFO
    assert "refreshing" not in capsys.readouterr().err  # INFO, as the app chose


def test_two_debug_stores_attach_one_handler(clock: Clock, bare_logging: logging.Logger) -> None:
    without_capture(bare_logging)
    for _ in range(2):
        with client(_debug_app(clock, debug=True)) as tc:
            login(tc, clock)
    assert len(bare_logging.handlers) == 1


@pytest.mark.realserver
def test_debug_true_under_a_real_uvicorn_prints_each_decision(tmp_path: Path) -> None:
    """The report: ``debug=True`` under uvicorn printed nothing (uvicorn configures its own
    loggers, not the root). The example app with AUTHKIT_DEBUG=1 now prints the kit's
    decisions on its own, with no logging set up by the app."""
    env = {"AUTHKIT_SECRET": "newcomer-debug-secret-0123456789abcdef", "AUTHKIT_DEBUG": "1"}
    with run_example_app(tmp_path, env) as base_url:
        response = httpx2.get(f"{base_url}/api/me", headers={"cookie": "_auth=not-a-token"})
        assert response.status_code == 401
    (log,) = tmp_path.glob("uvicorn-*.log")
    output = log.read_text()
    # An access cookie alone (no state cookie of its session) is no identity, and says so.
    assert "DEBUG fastapi_authkit: no valid state cookie for these tokens" in output


# --- sign_in without refresh= ---------------------------------------------------------------


def test_sign_in_without_a_refresh_token_while_refresh_is_configured_warns_once(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """The session silently died at expiry: sign_in now says so at the first such sign-in."""
    tc = client(build_app(build_store(clock, Recorder(clock))))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        login(tc, clock, ttl=300, refresh=None)
        tc.cookies.clear()  # another browser
        login(tc, clock, ttl=300, refresh=None)
    (warning,) = records(caplog, "was given no refresh=")
    message = warning.getMessage()
    assert "ends when its access token expires (in 300 s)" in message
    assert "refresh=<refresh token>, refresh_expires_in=<seconds>" in message
    assert "offline_access" in message
    # What it warns about: past expiry the session is gone, nothing to refresh it with.
    clock.advance(301)
    assert tc.get("/me").status_code == 401


def test_sign_in_with_a_refresh_token_or_without_refresh_configured_says_nothing(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        login(client(build_app(build_store(clock, Recorder(clock)))), clock)
        login(client(build_app(build_store(clock, None))), clock, refresh=None)
    assert records(caplog, "no refresh=") == []


# --- RefreshResult and sign_in lifetimes are checked when given --------------------------


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"is_success": "yes"}, TypeError, "RefreshResult.is_success must be a bool, got str"),
        ({"is_success": 1}, TypeError, "RefreshResult.is_success must be a bool, got int"),
        ({"new_auth_token": b"jwt"}, TypeError, "new_auth_token must be a str or None"),
        ({"new_auth_token_type": None}, TypeError, "new_auth_token_type must be a str, got"),
        ({"new_refresh_token": 7}, TypeError, "new_refresh_token must be a str or None"),
        (
            {"new_refresh_token_expires_in": "3600"},
            TypeError,
            "new_refresh_token_expires_in must be a number of seconds or None, got str '3600'",
        ),
        (
            {"new_refresh_token_expires_in": True},
            TypeError,
            "new_refresh_token_expires_in must be a number of seconds",
        ),
        (
            {"new_refresh_token_expires_in": -60},
            ValueError,
            "new_refresh_token_expires_in must be a positive number of seconds or None, got -60",
        ),
        (
            {"new_refresh_token_expires_in": 0},
            ValueError,
            "(an auth server's 0 for 'does not expire' is None here)",
        ),
        (
            {"new_auth_token_expire_in": float("inf")},
            ValueError,
            "new_auth_token_expire_in must be a finite number",
        ),
        (
            {"new_auth_token_expire_in": -1.5},
            ValueError,
            "would be deleted at once",
        ),
    ],
)
def test_refresh_result_refuses_wrong_types_and_lifetimes_when_built(
    fields: dict[str, Any], error: type[Exception], message: str
) -> None:
    """It accepted anything, and a negative refresh lifetime silently deleted the refresh
    cookie (Max-Age below zero): now the callback's own line fails, naming the field."""
    options: dict[str, Any] = {"is_success": True, "new_auth_token": "t", **fields}
    with pytest.raises(error) as raised:
        RefreshResult(**options)
    assert message in str(raised.value)


def test_refresh_result_accepts_what_the_documentation_shows() -> None:
    assert RefreshResult(is_success=False).new_auth_token_type == "Bearer"
    result = RefreshResult(
        is_success=True,
        new_auth_token="t",
        new_refresh_token="r",
        new_auth_token_expire_in=300,
        new_refresh_token_expires_in=1209600.0,
        new_auth_user_state={"name": "Alice"},
    )
    assert result.new_refresh_token_expires_in == 1209600.0


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"refresh_expires_in": -5}, ValueError, "sign_in: refresh_expires_in must be a positive"),
        ({"refresh_expires_in": "3600"}, TypeError, "sign_in: refresh_expires_in must be a"),
        ({"refresh": 1234}, TypeError, "sign_in: refresh must be a str or None, got int"),
    ],
)
def test_sign_in_refuses_a_refresh_lifetime_that_would_delete_the_cookie(
    clock: Clock, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    app = FastAPI()
    app.add_middleware(AuthKitMiddleware, store=build_store(clock, Recorder(clock)))

    @app.post("/login")
    async def bad_login(request: Request) -> dict[str, bool]:
        sign_in(request, auth={"token": make_token(clock)}, **{"refresh": "r", **options})
        return {"ok": True}

    with pytest.raises(error) as raised:
        client(app).post("/login")
    assert message in str(raised.value)


# --- issuer.sign_in / issuer.sign_out without await ---------------------------------------

ISSUER_KEY = "issuer-signing-key-0123456789abcdef"


def _issuer_app(clock: Clock, prepare: Callable[[Any], None] | None = None) -> tuple[FastAPI, Any]:
    """An app on the built-in issuer (in memory), without routes; ``prepare`` sees the
    issuer before the store is built from it."""
    from fastapi_authkit import create_issuer
    from fastapi_authkit.stores import MemoryStore

    issuer = create_issuer(backend=MemoryStore(), signing_key=ISSUER_KEY, clock=clock)
    if prepare is not None:
        prepare(issuer)
    app = FastAPI()
    app.add_middleware(
        AuthKitMiddleware,
        store=create_store(secret_key=SECRET_KEY, token_issuer=issuer, clock=clock),
    )
    return app, issuer


def test_issuer_sign_in_without_await_fails_loudly_instead_of_a_silent_200(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """Forgetting the await answered 200 with no cookies. Now the response is refused: the
    route's error names the call and the fix (a 500 with a traceback in the server log),
    and Python's own "never awaited" warning is spared (warnings are errors here)."""
    app, issuer = _issuer_app(clock)

    @app.post("/login")
    async def login(request: Request) -> dict[str, bool]:
        issuer.sign_in(request, "alice")  # the mistake: no await
        return {"ok": True}

    with pytest.raises(ConfigurationError) as raised:
        client(app).post("/login")
    assert str(raised.value) == (
        "issuer.sign_in(...) returned a coroutine that was never awaited, so it did nothing "
        "(no session started or ended, no cookie written): write "
        "`await issuer.sign_in(request, ...)` in the route"
    )
    response = TestClient(app, raise_server_exceptions=False).post("/login")
    assert response.status_code == 500
    assert "set-cookie" not in response.headers


def test_issuer_sign_out_without_await_fails_loudly(clock: Clock) -> None:
    app, issuer = _issuer_app(clock)

    @app.post("/login")
    async def login(request: Request) -> dict[str, bool]:
        await issuer.sign_in(request, "alice")
        return {"ok": True}

    @app.post("/logout")
    async def logout(request: Request) -> dict[str, bool]:
        issuer.sign_out(request)  # the mistake: the session would stay signed in
        return {"ok": True}

    tc = client(app)
    assert tc.post("/login").json() == {"ok": True}
    with pytest.raises(ConfigurationError, match=r"^issuer\.sign_out\(\.\.\.\) returned"):
        tc.post("/logout", headers={"X-CSRF-Token": tc.cookies["_auth_csrf"]})


def test_issuer_sign_in_awaited_works_as_documented(clock: Clock) -> None:
    """The public API is unchanged for the documented use: ``await issuer.sign_in(...)``
    returns the issued pair, and a coroutine passed around before being awaited is fine."""
    app, issuer = _issuer_app(clock)

    @app.post("/login")
    async def login(request: Request) -> dict[str, str]:
        pending = issuer.sign_in(request, "alice", user_state={"name": "Alice"})
        tokens = await pending
        return {"family": tokens.family_id}

    @app.get("/me")
    async def me(user: CurrentUser) -> Any:
        return user

    tc = client(app)
    assert tc.post("/login").json()["family"]
    assert tc.get("/me").json() == {"name": "Alice"}


def test_issuer_sign_in_that_raises_when_awaited_is_not_taken_for_a_missing_await(
    clock: Clock,
) -> None:
    app, issuer = _issuer_app(clock)

    @app.post("/login")
    async def login(request: Request) -> dict[str, bool]:
        try:
            await issuer.sign_in(request, "")  # an empty subject is refused
        except ValueError:
            return {"refused": True}
        return {"refused": False}

    assert client(app).post("/login").json() == {"refused": True}


def test_plain_sign_in_with_a_token_the_issuer_did_not_mint_names_issuer_sign_in(
    clock: Clock,
) -> None:
    """The issue's case: a token signed with the issuer's own key by hand (no ``typ``)."""
    app, _ = _issuer_app(clock)

    @app.post("/login")
    async def login(request: Request) -> dict[str, bool]:
        sign_in(request, auth={"token": make_token(clock, key=ISSUER_KEY)}, refresh="r")
        return {"ok": True}

    with pytest.raises(TokenError) as raised:
        client(app).post("/login")
    message = str(raised.value)
    assert "token typ must be 'at+jwt'" in message
    assert "sign in with `await issuer.sign_in(request, subject)` instead of sign_in(...)" in (
        message
    )


# --- keys that do not fit their algorithm -----------------------------------------------------


def _pem(key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    if hasattr(key, "private_bytes"):
        return key.private_bytes(  # type: ignore[no-any-return]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    return key.public_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _keys() -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    p384 = ec.generate_private_key(ec.SECP384R1())
    return {
        "rsa": rsa_key,
        "p384": p384,
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
    }


KEYS = _keys()


@pytest.mark.parametrize(
    ("token_key", "algorithm", "message"),
    [
        (
            _pem(KEYS["rsa"].public_key()),
            "ES256",
            "token_key is an RSA public key (PEM), but ES256 needs an EC public key on the "
            "curve P-256 (secp256r1) (PEM text or a cryptography key object)",
        ),
        (
            _pem(KEYS["p384"].public_key()),
            "ES256",
            "token_key is an EC public key on secp384r1 (PEM), but ES256 needs an EC public "
            "key on the curve P-256 (secp256r1)",
        ),
        (
            KEYS["p384"].public_key(),
            "RS256",
            "token_key is an EC public key on secp384r1, but RS256 needs an RSA public key",
        ),
        (
            KEYS["ed25519"].public_key(),
            "PS256",
            "token_key is an Ed25519 public key, but PS256 needs an RSA public key",
        ),
        (
            _pem(KEYS["rsa"].public_key()),
            "EdDSA",
            "token_key is an RSA public key (PEM), but EdDSA needs an Ed25519 or Ed448 public key",
        ),
        (
            "a-secret-that-is-no-public-key",
            "RS256",
            "token_key is a str that is not a PEM key, but RS256 needs an RSA public key",
        ),
        (
            "-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n",
            "RS256",
            "token_key is a PEM text that cannot be read (or is password-protected), but RS256",
        ),
        (
            12345,
            "RS256",
            "token_key is a value of type int, but RS256 needs an RSA public key",
        ),
        (
            12345,
            "HS256",
            "token_key is a value of type int, but HS256 needs a secret (str or bytes) of at "
            "least 32 bytes",
        ),
    ],
)
def test_a_key_of_the_wrong_kind_says_what_it_is_and_what_is_needed(
    token_key: Any, algorithm: str, message: str
) -> None:
    """PyJWT's own message was "Expected one of <generator object ...>"."""
    with pytest.raises(ConfigurationError) as raised:
        create_store(secret_key=SECRET_KEY, token_key=token_key, algorithms=[algorithm])
    assert message in str(raised.value)
    assert "generator object" not in str(raised.value)
    assert "BEGIN" not in str(raised.value)  # the key itself is never quoted


def test_sign_in_with_a_token_of_another_algorithm_names_both(clock: Clock) -> None:
    app = FastAPI()
    app.add_middleware(AuthKitMiddleware, store=build_store(clock, None))

    @app.post("/login")
    async def login(request: Request) -> dict[str, bool]:
        token = make_token(clock, key="k" * 64, algorithm="HS512")
        sign_in(request, auth={"token": token})
        return {"ok": True}

    with pytest.raises(TokenError) as raised:
        client(app).post("/login")
    assert str(raised.value) == (
        "sign_in: the access token does not verify: token is signed with 'HS512', but its "
        "key accepts only 'HS256' (create_store(algorithms=...))"
    )


# --- create_issuer's signing key ----------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"signing_key": "too-short"},
            "signing_key: HS256 needs a key of at least 32 bytes, got 9",
        ),
        (
            {"signing_key": "s" * 40, "algorithm": "HS512"},
            "signing_key: HS512 needs a key of at least 64 bytes, got 40",
        ),
        (
            {"signing_key": _pem(KEYS["rsa"].public_key()), "algorithm": "RS256"},
            "signing_key is an RSA public key (PEM): signing with RS256 needs the private key",
        ),
        (
            {"signing_key": _pem(KEYS["p384"]), "algorithm": "RS256"},
            "signing_key is an EC private key on secp384r1 (PEM), but RS256 needs an RSA "
            "private key",
        ),
    ],
)
def test_create_issuer_refuses_a_signing_key_that_cannot_sign_and_names_it(
    options: dict[str, Any], message: str
) -> None:
    """A short HMAC key was accepted by create_issuer and refused later by create_store, as
    'token_key'; a public key crashed with an AttributeError. Both fail here, by name."""
    from fastapi_authkit import create_issuer
    from fastapi_authkit.stores import MemoryStore

    with pytest.raises(ConfigurationError) as raised:
        create_issuer(backend=MemoryStore(), **options)
    assert message in str(raised.value)
    assert "token_key" not in str(raised.value)


def test_create_issuer_accepts_private_keys_of_each_kind() -> None:
    from fastapi_authkit import create_issuer
    from fastapi_authkit.stores import MemoryStore

    for key, algorithm in ((KEYS["rsa"], "RS256"), (_pem(KEYS["ed25519"]), "EdDSA")):
        issuer = create_issuer(backend=MemoryStore(), signing_key=key, algorithm=algorithm)
        store = create_store(secret_key=SECRET_KEY, token_issuer=issuer)
        now = issuer.clock()
        # Signed with the private key, verified with its public half.
        token = issuer.mint_access("alice", "family-1", now)
        assert store.verifier.verify(token, now)["sub"] == "alice"


# --- a streak of transient refresh failures -------------------------------------------------


def test_a_streak_of_transient_refresh_failures_logs_one_line_and_counts_the_rest(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """The auth server is down: every request tried to refresh and logged a full traceback.
    Now the first failure of a streak is one line (its traceback at DEBUG), the others are
    counted (a one-line reminder with the count at most once a minute), and the end of the
    streak is logged with its length."""
    down = True

    async def callback(param: RefreshParam) -> RefreshResult:
        if down:
            raise ConnectionError("auth server unreachable")
        return RefreshResult(is_success=True, new_auth_token=make_token(clock, ttl=300))

    refresh = create_refresh(interval=60, refresh_api_callback=callback, grace_period=0)
    tc = client(build_app(build_store(clock, None, refresh=refresh)))
    login(tc, clock, ttl=100)
    clock.advance(101)  # expired: every request needs the refresh
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        for _ in range(5):
            assert tc.get("/me").status_code == 503
        clock.advance(60)
        assert tc.get("/me").status_code == 503  # a minute on: the reminder
        assert tc.get("/me").status_code == 503
        down = False
        assert tc.get("/me").status_code == 200  # the streak ends
        clock.advance(400)
        down = True
        assert tc.get("/me").status_code == 503  # a new streak: a traceback again

    failures = records(caplog, "refresh failed transiently")
    # One line each, never a traceback at WARNING (issue 24.5): the traceback is at DEBUG.
    assert [r.exc_info is not None for r in failures] == [False, False, False]
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert [r.levelno for r in tracebacks] == [logging.DEBUG, logging.DEBUG]
    first, reminder, _ = failures
    assert first.getMessage() == (
        "refresh failed transiently; session kept: refresh_api_callback raised "
        "ConnectionError: auth server unreachable"
    )
    assert reminder.getMessage().startswith(
        "refresh still failing transiently (6 failures in a row, traceback at DEBUG); "
        "latest: refresh failed transiently; session kept:"
    )
    (recovered,) = records(caplog, "answers again")
    assert recovered.getMessage() == (
        "refresh callback answers again after 7 transient failure(s) in a row"
    )
    assert recovered.levelno == logging.WARNING


# --- sign-out revokes at the auth server (the revocation hook) -------------------------------


class RevokingServer:
    """A refresh callback object with the revocation hook, as an external auth server's
    client would be: it records what was revoked, and can fail or hang when told to."""

    def __init__(self, clock: Clock, *, sync: bool = False) -> None:
        self.clock = clock
        self.revoked: list[str] = []
        self.failure: Exception | None = None
        self.hang = False
        self.rotate_to: str | None = None
        if sync:
            self.revoke = self._revoke_sync  # type: ignore[method-assign]

    async def __call__(self, param: RefreshParam) -> RefreshResult:
        return RefreshResult(
            is_success=True,
            new_auth_token=make_token(self.clock),
            new_refresh_token=self.rotate_to,
        )

    async def revoke(self, refresh_token: str) -> None:
        if self.hang:
            await anyio.sleep(10)
        if self.failure is not None:
            raise self.failure
        self.revoked.append(refresh_token)

    def _revoke_sync(self, refresh_token: str) -> None:
        self.revoked.append(refresh_token)


def _revoking_client(clock: Clock, server: RevokingServer) -> TestClient:
    refresh = create_refresh(interval=60, refresh_api_callback=server, timeout=0.2)
    tc = client(build_app(build_store(clock, None, refresh=refresh)))
    login(tc, clock, refresh="refresh-at-the-server")
    return tc


def _sign_out(tc: TestClient) -> Any:
    response = tc.post("/logout", headers={"X-CSRF-Token": tc.cookies["_auth_csrf"]})
    assert response.json() == {"ok": True}
    assert tc.cookies.get("_auth_refresh") is None  # cleared in every case
    return response


@pytest.mark.parametrize("sync", [False, True], ids=["async-revoke", "sync-revoke"])
def test_sign_out_revokes_the_refresh_token_through_the_callback_objects_hook(
    clock: Clock, sync: bool
) -> None:
    server = RevokingServer(clock, sync=sync)
    tc = _revoking_client(clock, server)
    assert server.revoked == []
    _sign_out(tc)
    assert server.revoked == ["refresh-at-the-server"]
    tc.post("/logout")  # signed out already: no refresh token, nothing to revoke
    assert server.revoked == ["refresh-at-the-server"]


def test_sign_out_revokes_the_current_refresh_token_also_when_it_refreshes_first(
    clock: Clock,
) -> None:
    """The sign-out request itself is due for a refresh, which rotates the refresh token
    before the route runs: the token revoked is the rotated-in one, the session's current."""
    server = RevokingServer(clock)
    refresh = create_refresh(interval=60, refresh_api_callback=server)
    tc = client(build_app(build_store(clock, None, refresh=refresh)))
    login(tc, clock, ttl=100, refresh="first")
    server.rotate_to = "second"
    clock.advance(50)  # due
    _sign_out(tc)
    assert server.revoked == ["second"]


@pytest.mark.parametrize("failure", ["raises", "hangs"])
def test_a_failing_revocation_hook_is_logged_and_the_cookies_are_cleared_anyway(
    clock: Clock, caplog: pytest.LogCaptureFixture, failure: str
) -> None:
    server = RevokingServer(clock)
    tc = _revoking_client(clock, server)
    if failure == "raises":
        server.failure = ConnectionError("auth server unreachable")
    else:
        server.hang = True
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        response = _sign_out(tc)
    assert response.status_code == 200
    (error,) = records(caplog, "sign-out could not revoke the session at the auth server")
    if failure == "raises":
        assert "ConnectionError: auth server unreachable" in error.getMessage()
    else:
        assert "did not answer within 0.2s" in error.getMessage()


def test_a_callback_without_the_hook_signs_out_as_before(clock: Clock) -> None:
    recorder = Recorder(clock)  # no revoke method
    tc = client(build_app(build_store(clock, recorder)))
    login(tc, clock)
    _sign_out(tc)
    assert build_store(clock, recorder).refresh.revoke is None  # type: ignore[union-attr]


def test_a_revoke_attribute_that_is_not_callable_is_a_configuration_error(clock: Clock) -> None:
    server = RevokingServer(clock)
    server.revoke = "https://auth.example.com/revoke"  # type: ignore[assignment,method-assign]
    with pytest.raises(ConfigurationError, match=r"refresh_api_callback\.revoke must be callable"):
        create_refresh(interval=60, refresh_api_callback=server)


def test_the_route_sees_the_refresh_token_to_revoke_it_itself(clock: Clock) -> None:
    """For a plain-function callback: the refresh token is on the auth state."""
    app = build_app(build_store(clock, Recorder(clock)))

    @app.get("/refresh-token")
    async def refresh_token(state: AuthStateDep) -> dict[str, str | None]:
        return {"refresh_token": state.refresh_token}

    tc = client(app)
    assert tc.get("/refresh-token").json() == {"refresh_token": None}
    login(tc, clock, refresh="refresh-0")
    assert tc.get("/refresh-token").json() == {"refresh_token": "refresh-0"}


def test_plain_sign_out_with_the_built_in_issuer_revokes_the_session_once(clock: Clock) -> None:
    """With token_issuer the issuer is the hook: a plain sign_out(request) ends the session in
    the store too (its cookies, replayed, are refused); issuer.sign_out revokes once."""
    calls: list[str] = []

    def count_revocations(issuer: Any) -> None:
        revoke = issuer.revoke

        async def counted(refresh_token: str) -> bool:
            calls.append(refresh_token)
            return await revoke(refresh_token)  # type: ignore[no-any-return]

        issuer.revoke = counted

    app, issuer = _issuer_app(clock, count_revocations)

    @app.post("/login")
    async def login_route(request: Request) -> dict[str, bool]:
        await issuer.sign_in(request, "alice")
        return {"ok": True}

    @app.post("/plain-logout")
    async def plain_logout(request: Request) -> dict[str, bool]:
        sign_out(request)
        return {"ok": True}

    @app.post("/issuer-logout")
    async def issuer_logout(request: Request) -> dict[str, bool]:
        return {"ok": await issuer.sign_out(request)}

    @app.get("/me")
    async def me(user: CurrentUser) -> Any:
        return user

    for logout in ("/plain-logout", "/issuer-logout"):
        tc = client(app)
        tc.post("/login")
        device = dict(tc.cookies.items())
        assert tc.post(logout, headers={"X-CSRF-Token": device["_auth_csrf"]}).json() == {
            "ok": True
        }
        tc.cookies.clear()
        replayed = "; ".join(f"{name}={value}" for name, value in device.items())
        assert tc.get("/me", headers={"cookie": replayed}).status_code == 401
    assert len(calls) == 2  # one per sign-out


# --- issue 25.5: the newcomer's frictions ------------------------------------------------------


def test_a_foreign_origin_is_refused_naming_the_origin_and_allowed_origins(clock: Clock) -> None:
    """Not "CSRF token missing or invalid" (which sent people after the token): the
    Origin was the reason, and allowed_origins is the setting that lets it in."""
    with client(build_app(build_store(clock, Recorder(clock)))) as tc:
        login(tc, clock)
        csrf = tc.cookies["_auth_csrf"]
        response = tc.post(
            "/write", headers={"X-CSRF-Token": csrf, "Origin": "https://app.example.com"}
        )
    assert response.status_code == 403
    detail = response.json()["detail"]
    assert "https://app.example.com" in detail
    assert "allowed_origins" in detail
    assert "CSRF token" not in detail


def test_a_null_origin_and_a_cross_site_fetch_say_so(clock: Clock) -> None:
    with client(build_app(build_store(clock, Recorder(clock)))) as tc:
        login(tc, clock)
        headers = {"X-CSRF-Token": tc.cookies["_auth_csrf"]}
        null = tc.post("/write", headers={**headers, "Origin": "null"}).json()["detail"]
        fetch = tc.post("/write", headers={**headers, "Sec-Fetch-Site": "cross-site"})
    assert "Origin is null or malformed" in null
    assert "Sec-Fetch-Site: cross-site" in fetch.json()["detail"]
    assert "allowed_origins" in fetch.json()["detail"]


@pytest.mark.parametrize(
    ("options", "header", "cookie"),
    [
        ({}, "X-CSRF-Token", "_auth_csrf"),
        ({"auth_name": "sess", "csrf_header_name": "X-XSRF"}, "X-XSRF", "sess_csrf"),
    ],
)
def test_the_csrf_refusal_says_what_to_send(
    clock: Clock, options: dict[str, str], header: str, cookie: str
) -> None:
    with client(build_app(build_store(clock, Recorder(clock), **options))) as tc:
        login(tc, clock)
        response = tc.post("/write")
    assert response.status_code == 403
    detail = response.json()["detail"]
    assert detail.startswith("CSRF token missing or invalid")
    assert f"the {header} header" in detail
    assert f"the {cookie} cookie" in detail


@pytest.mark.parametrize(
    ("domain", "base_url", "warned"),
    [
        ("example.com", "https://app.example.com", False),
        (".example.com", "https://example.com", False),
        ("example.com", "https://testserver", True),
        ("example.com", "https://badexample.com", True),
        ("app.example.com", "https://example.com", True),
    ],
)
def test_a_cookie_domain_the_request_host_is_not_in_warns_once(
    clock: Clock, caplog: pytest.LogCaptureFixture, domain: str, base_url: str, warned: bool
) -> None:
    """The browser silently drops a cookie whose Domain does not match the host."""
    app = build_app(build_store(clock, Recorder(clock), cookie_domain=domain))
    with TestClient(app, base_url=base_url) as tc:
        login(tc, clock)
        tc.cookies.clear()
        login(tc, clock)
    found = records(caplog, "cookie_domain")
    assert len(found) == (1 if warned else 0)
    if warned:
        message = found[0].getMessage()
        assert repr(domain) in message
        assert found[0].levelno == logging.WARNING


def test_the_middleware_added_twice_is_a_configuration_error(clock: Clock) -> None:
    store = build_store(clock, Recorder(clock))
    app = build_app(store)
    app.add_middleware(AuthKitMiddleware, store=store)
    with (
        TestClient(app, base_url="https://testserver") as tc,
        pytest.raises(ConfigurationError, match="AuthKitMiddleware is added twice"),
    ):
        tc.get("/public")


def test_the_http_testclient_warning_names_the_fix(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(build_app(build_store(clock, Recorder(clock)))) as tc:  # http://testserver
        login(tc, clock)
    (record,) = records(caplog, "plain-http")
    assert 'TestClient(app, base_url="https://testserver")' in record.getMessage()


def test_a_successful_refresh_result_without_a_token_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match=r"is_success=True\) needs new_auth_token"):
        RefreshResult(is_success=True)
    RefreshResult(is_success=False)  # the session is over: no token needed


def test_a_token_error_says_does_not_verify_once(clock: Clock) -> None:
    app = FastAPI()
    app.add_middleware(AuthKitMiddleware, store=build_store(clock, None))
    foreign = make_token(clock, key="another-token-key-0123456789abcdef0123456789")

    @app.post("/login")
    async def login_route(request: Request) -> None:
        sign_in(request, auth={"token": foreign})

    with client(app) as tc, pytest.raises(TokenError) as raised:
        tc.post("/login")
    message = str(raised.value)
    assert message.count("does not verify") == 1, message
    assert "Signature verification failed" in message
