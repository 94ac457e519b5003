"""create_store / create_refresh: every misconfiguration is a ConfigurationError up front."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from fastapi_authkit import (
    AuthKitError,
    ConfigurationError,
    RefreshParam,
    RefreshResult,
    create_issuer,
    create_refresh,
    create_store,
)
from fastapi_authkit.config import AuthStore, RefreshConfig
from fastapi_authkit.issuer import Issuer
from fastapi_authkit.stores import MemoryStore, RedisStore

from tests.support.clock import Clock
from tests.support.tokens import SECRET_KEY, TOKEN_KEY


async def refresh_callback(param: RefreshParam) -> RefreshResult:
    return RefreshResult(is_success=False)


def store(**overrides: Any) -> AuthStore:
    arguments: dict[str, Any] = {"secret_key": SECRET_KEY, "token_key": TOKEN_KEY}
    arguments.update(overrides)
    return create_store(**arguments)


def refresh(**overrides: Any) -> RefreshConfig:
    arguments: dict[str, Any] = {"interval": 60, "refresh_api_callback": refresh_callback}
    arguments.update(overrides)
    return create_refresh(**arguments)


def test_configuration_error_is_an_authkit_error_and_a_value_error() -> None:
    assert issubclass(ConfigurationError, AuthKitError)
    assert issubclass(ConfigurationError, ValueError)


# --- what a valid configuration gives --------------------------------------------------------


def test_defaults(clock: Clock) -> None:
    s = store(clock=clock)
    assert (s.auth_name, s.auth_type) == ("_auth", "cookie")
    assert (s.cookie_domain, s.cookie_secure, s.cookie_samesite, s.cookie_path) == (
        None,
        True,
        "lax",
        "/",
    )
    assert s.refresh is None
    assert s.user_loader is None
    assert s.csrf_exempt_paths == frozenset()
    assert s.csrf_header == b"x-csrf-token"
    assert s.clock is clock
    assert s.names.all() == ("_auth", "_auth_type", "_auth_state", "_auth_refresh", "_auth_csrf")


def test_valid_non_default_configuration_is_kept() -> None:
    r = refresh(interval=30, timeout=2, grace_period=0)
    s = store(
        auth_name="__Host-app",
        cookie_samesite="none",
        refresh=r,
        user_loader=lambda claims, state: claims["sub"],
        csrf_exempt_paths=["/login", "/logout"],
        csrf_header_name="X-XSRF-Token",
        state_max_age=3600,
        refresh_max_age=7200,
        retry_after=1,
        debug=1,
    )
    assert s.refresh is r
    assert s.cookie_samesite == "none"
    assert s.csrf_exempt_paths == frozenset({"/login", "/logout"})
    assert s.csrf_header == b"x-xsrf-token"
    assert (s.state_max_age, s.refresh_max_age, s.retry_after) == (3600, 7200, 1)
    assert s.debug is True


def test_secret_key_list_and_bytes_are_accepted() -> None:
    old, new = b"o" * 32, "n" * 32
    s = store(secret_key=[old, new])
    # The newest key signs: a store with only it recognises the CSRF token.
    assert s.csrf.token_for("sid") == store(secret_key=new).csrf.token_for("sid")


def test_csrf_exempt_paths_are_copied_into_a_frozenset() -> None:
    paths = ["/login"]
    s = store(csrf_exempt_paths=paths)
    paths.append("/admin")
    assert s.csrf_exempt_paths == frozenset({"/login"})


def test_create_refresh_keeps_its_values_as_floats() -> None:
    r = refresh(interval=0, timeout=3, grace_period=0)
    assert (r.interval, r.timeout, r.grace_period) == (0.0, 3.0, 0.0)
    assert all(type(v) is float for v in (r.interval, r.timeout, r.grace_period))
    assert r.refresh_api_callback is refresh_callback
    assert refresh(interval=60).timeout > 0


def test_sync_callable_is_a_valid_refresh_callback() -> None:
    def sync_callback(param: RefreshParam) -> RefreshResult:
        return RefreshResult(is_success=False)

    assert refresh(refresh_api_callback=sync_callback).refresh_api_callback is sync_callback


# --- secret_key ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret_key",
    [
        "s" * 31,
        b"s" * 31,
        "é" * 15 + "s",  # 31 bytes
        "",
        [SECRET_KEY, "s" * 31],
        ["s" * 31, SECRET_KEY],
    ],
)
def test_secret_key_shorter_than_32_bytes_is_a_configuration_error(secret_key: Any) -> None:
    with pytest.raises(ConfigurationError) as excinfo:
        store(secret_key=secret_key)
    assert "s" * 31 not in str(excinfo.value)  # the message never echoes the key


@pytest.mark.parametrize(
    "secret_key",
    [None, 12345, [], (), {SECRET_KEY}, {"k": SECRET_KEY}, [SECRET_KEY, 12345], [None]],
)
def test_secret_key_of_the_wrong_type_is_a_configuration_error(secret_key: Any) -> None:
    with pytest.raises(ConfigurationError):
        store(secret_key=secret_key)


def test_secret_key_length_counts_bytes() -> None:
    assert store(secret_key="é" * 16)  # 16 characters, 32 bytes


# --- token_key -------------------------------------------------------------------------------


@pytest.mark.parametrize("token_key", [None, "", b"", {}, "k" * 31])
def test_missing_or_unusable_token_key_is_a_configuration_error(token_key: Any) -> None:
    with pytest.raises(ConfigurationError):
        store(token_key=token_key)


def test_omitted_token_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="token_key"):
        create_store(secret_key=SECRET_KEY)


@pytest.mark.parametrize(
    "overrides",
    [
        {"algorithms": []},
        {"algorithms": ["none"]},
        {"algorithms": ["HS256", "RS256"]},
        {"leeway": -1},
        {"issuer": ["https://a.example"]},
    ],
)
def test_token_verification_settings_are_checked_by_create_store(
    overrides: dict[str, Any],
) -> None:
    with pytest.raises(ConfigurationError):
        store(**overrides)


@pytest.mark.parametrize("audience", [123, []])
def test_unusable_audience_is_a_configuration_error(audience: Any) -> None:
    with pytest.raises(ConfigurationError):
        store(audience=audience)


# --- auth_type, cookies ------------------------------------------------------------------------


@pytest.mark.parametrize("auth_type", ["bearer", "Cookie", "", None, "cookies"])
def test_bad_auth_type_is_a_configuration_error(auth_type: Any) -> None:
    with pytest.raises(ConfigurationError):
        store(auth_type=auth_type)


@pytest.mark.parametrize("samesite", ["Lax", "None", "", None, "strict ", True])
def test_bad_samesite_is_a_configuration_error(samesite: Any) -> None:
    with pytest.raises(ConfigurationError):
        store(cookie_samesite=samesite)


def test_samesite_none_requires_secure() -> None:
    assert store(cookie_samesite="none", cookie_secure=True).cookie_samesite == "none"
    with pytest.raises(ConfigurationError):
        store(cookie_samesite="none", cookie_secure=False)


@pytest.mark.parametrize("secure", ["true", 1, 0, None])
def test_cookie_secure_must_be_a_bool(secure: Any) -> None:
    with pytest.raises(ConfigurationError):
        store(cookie_secure=secure)


@pytest.mark.parametrize("path", ["", "app", "app/", "/a;b", ";", None, 1, b"/"])
def test_bad_cookie_path_is_a_configuration_error(path: Any) -> None:
    with pytest.raises(ConfigurationError):
        store(cookie_path=path)


@pytest.mark.parametrize("domain", ["", "example.com;", "a;b", 1, b"example.com"])
def test_bad_cookie_domain_is_a_configuration_error(domain: Any) -> None:
    with pytest.raises(ConfigurationError):
        store(cookie_domain=domain)


@pytest.mark.parametrize(
    "overrides",
    [
        {"cookie_path": "/app\r\nX-Injected: 1"},
        {"cookie_path": "/app\x00"},
        {"cookie_domain": "example.com\r\nX-Injected: 1"},
        {"cookie_domain": "example.com\x00"},
        {"cookie_domain": "exa mple.com"},
        {"cookie_domain": "a.example,b.example"},
    ],
)
def test_cookie_path_or_domain_with_control_characters_is_a_configuration_error(
    overrides: dict[str, Any],
) -> None:
    with pytest.raises(ConfigurationError):
        store(**overrides)


@pytest.mark.parametrize("auth_name", ["", "a b", "a;b", "a=b", "é", None, 1])
def test_invalid_auth_name_is_a_configuration_error(auth_name: Any) -> None:
    with pytest.raises(ConfigurationError):
        store(auth_name=auth_name)


def test_host_prefix_accepted_with_secure_root_path_and_no_domain() -> None:
    assert store(auth_name="__Host-auth").names.access == "__Host-auth"


@pytest.mark.parametrize(
    "overrides",
    [
        {"cookie_secure": False},
        {"cookie_domain": "example.com"},
        {"cookie_path": "/app"},
    ],
)
def test_host_prefix_requires_secure_root_path_and_no_domain(overrides: dict[str, Any]) -> None:
    assert store(auth_name="plain", **overrides)  # the control: fine without the prefix
    with pytest.raises(ConfigurationError):
        store(auth_name="__Host-auth", **overrides)


def test_secure_prefix_requires_secure() -> None:
    assert store(auth_name="__Secure-auth", cookie_domain="example.com", cookie_path="/app")
    with pytest.raises(ConfigurationError):
        store(auth_name="__Secure-auth", cookie_secure=False)


@pytest.mark.parametrize("auth_name", ["__host-auth", "__HOST-auth", "__secure-auth"])
def test_cookie_prefixes_are_matched_case_insensitively(auth_name: str) -> None:
    with pytest.raises(ConfigurationError):
        store(auth_name=auth_name, cookie_secure=False)


# --- refresh ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [{"interval": 60, "refresh_api_callback": refresh_callback}, refresh_callback, 60]
)
def test_refresh_must_come_from_create_refresh(value: Any) -> None:
    with pytest.raises(ConfigurationError):
        store(refresh=value)


def test_header_mode_cannot_have_refresh() -> None:
    assert store(auth_type="header").auth_type == "header"
    assert store(auth_type="cookie", refresh=refresh()).refresh is not None
    with pytest.raises(ConfigurationError):
        store(auth_type="header", refresh=refresh())


@pytest.mark.parametrize("callback", [None, "callback", 1, RefreshResult(is_success=False)])
def test_refresh_callback_must_be_callable(callback: Any) -> None:
    with pytest.raises(ConfigurationError):
        refresh(refresh_api_callback=callback)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("interval", -1),
        ("interval", -0.001),
        ("interval", float("nan")),
        ("interval", float("inf")),
        ("interval", True),
        ("interval", "60"),
        ("interval", None),
        ("timeout", 0),
        ("timeout", 0.0),
        ("timeout", -1),
        ("timeout", float("nan")),
        ("timeout", float("inf")),
        ("timeout", False),
        ("grace_period", -1),
        ("grace_period", float("inf")),
        ("grace_period", "10"),
    ],
)
def test_bad_refresh_durations_are_configuration_errors(name: str, value: Any) -> None:
    with pytest.raises(ConfigurationError):
        refresh(**{name: value})


# --- token_issuer and shared_store ------------------------------------------------------------

SIGNING_KEY = "issuer-signing-key-0123456789abcdef0123456789"


def issuer(clock: Clock) -> Issuer:
    return create_issuer(backend=MemoryStore(), signing_key=SIGNING_KEY, clock=clock)


def test_token_issuer_supplies_verification_and_refresh(clock: Clock) -> None:
    s = create_store(secret_key=SECRET_KEY, token_issuer=issuer(clock), clock=clock)
    assert s.refresh is not None
    assert s.session_check is not None


def test_the_issuers_own_refresh_rotates_in_one_call_without_a_shared_flight(
    clock: Clock,
) -> None:
    redis_backed = create_issuer(
        backend=RedisStore.from_url("redis://127.0.0.1:9/0"), signing_key=SIGNING_KEY, clock=clock
    )
    own = create_store(secret_key=SECRET_KEY, token_issuer=redis_backed, clock=clock)
    assert own.rotation is not None
    assert own.shared_store is None  # the rotation is exactly-once across processes itself
    explicit = create_store(
        secret_key=SECRET_KEY,
        token_issuer=redis_backed,
        refresh=create_refresh(interval=5, refresh_api_callback=redis_backed.refresh),
        clock=clock,
    )
    assert explicit.rotation is not None

    async def wrapped(param: Any) -> Any:  # the app's own callback around the issuer
        return await redis_backed.refresh(param)

    around = create_store(
        secret_key=SECRET_KEY,
        token_issuer=redis_backed,
        refresh=create_refresh(interval=5, refresh_api_callback=wrapped),
        clock=clock,
    )
    assert around.rotation is None
    assert around.shared_store is redis_backed.backend  # the generic cross-process flight
    in_memory = create_store(secret_key=SECRET_KEY, token_issuer=issuer(clock), clock=clock)
    assert in_memory.shared_store is None


@pytest.mark.parametrize("value", ["issuer", MemoryStore(), object()])
def test_token_issuer_must_come_from_create_issuer(value: Any) -> None:
    with pytest.raises(ConfigurationError):
        create_store(secret_key=SECRET_KEY, token_issuer=value)


@pytest.mark.parametrize(
    "overrides",
    [
        {"token_key": TOKEN_KEY},
        {"algorithms": ["HS256"]},
        {"issuer": "https://a.example"},
        {"audience": "api"},
        # The app is its own auth server: no gateway sets its cookie (bearer headers are
        # accepted: tests/test_issuer_bearer.py).
        {"auth_type": "gateway"},
        {"auth_type": ("gateway", "header")},
    ],
)
def test_token_issuer_excludes_its_own_settings_and_gateway_mode(
    clock: Clock, overrides: dict[str, Any]
) -> None:
    with pytest.raises(ConfigurationError):
        create_store(secret_key=SECRET_KEY, token_issuer=issuer(clock), **overrides)


@pytest.mark.parametrize("value", ["redis://localhost", object(), {}])
def test_shared_store_must_be_a_session_store(value: Any) -> None:
    with pytest.raises(ConfigurationError):
        store(shared_store=value, refresh=refresh())


def test_shared_store_needs_refresh() -> None:
    shared = MemoryStore()
    assert store(shared_store=shared, refresh=refresh()).shared_store is shared
    with pytest.raises(ConfigurationError):
        store(shared_store=shared)


def test_repr_holds_no_issuer_signing_key(clock: Clock) -> None:
    s = create_store(secret_key=SECRET_KEY, token_issuer=issuer(clock), clock=clock)
    for text in (repr(s), repr(s.refresh), repr(s.verifier)):
        assert SIGNING_KEY not in text
        assert SECRET_KEY not in text


# --- the rest --------------------------------------------------------------------------------


@pytest.mark.parametrize("loader", ["loader", 1, {"sub": "alice"}])
def test_user_loader_must_be_callable(loader: Any) -> None:
    with pytest.raises(ConfigurationError):
        store(user_loader=loader)


@pytest.mark.parametrize("clock", [1_800_000_000.0, "now", None])
def test_clock_must_be_callable(clock: Any) -> None:
    with pytest.raises(ConfigurationError):
        store(clock=clock)


@pytest.mark.parametrize(
    "paths", ["/login", ["login"], ["/ok", "relative"], [1], [None], [b"/login"]]
)
def test_bad_csrf_exempt_paths_are_a_configuration_error(paths: Any) -> None:
    with pytest.raises(ConfigurationError):
        store(csrf_exempt_paths=paths)


def test_csrf_exempt_paths_iterator_is_kept() -> None:
    s = store(csrf_exempt_paths=iter(["/login"]))
    assert s.csrf_exempt_paths == frozenset({"/login"})


@pytest.mark.parametrize(
    "name", ["", "   ", None, 1, "X-CSRF-€", "X CSRF", " X-CSRF", "X-CSRF:", "X-CSRF\r\nX: y"]
)
def test_csrf_header_name_must_be_an_http_token(name: Any) -> None:
    with pytest.raises(ConfigurationError):
        store(csrf_header_name=name)


@pytest.mark.parametrize("field", ["state_max_age", "refresh_max_age", "retry_after"])
@pytest.mark.parametrize("value", [0, -1, True, 1.5, "60", None])
def test_max_ages_and_retry_after_must_be_positive_integers(field: str, value: Any) -> None:
    assert store(**{field: 1})  # the control: a positive integer is fine
    with pytest.raises(ConfigurationError):
        store(**{field: value})


# --- repr and immutability -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret_key", "token_key"),
    [
        (SECRET_KEY, TOKEN_KEY),
        (SECRET_KEY.encode(), TOKEN_KEY.encode()),
        (["0" * 32 + "old-secret", SECRET_KEY], {"kid-1": TOKEN_KEY}),
    ],
)
def test_repr_holds_no_secret(secret_key: Any, token_key: Any) -> None:
    s = store(secret_key=secret_key, token_key=token_key, refresh=refresh())
    texts = [repr(s), str(s), repr(s.verifier), repr(s.state_codec), repr(s.csrf)]
    texts += [repr(s.policy), repr(s.names), repr(s.refresh)]
    for text in texts:
        assert SECRET_KEY not in text
        assert TOKEN_KEY not in text
        assert "old-secret" not in text
    assert "AuthStore(" in repr(s)  # the repr is still useful


def test_store_is_immutable() -> None:
    s = store()
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.cookie_secure = False  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.verifier = store(token_key="k" * 40).verifier  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del s.auth_name  # type: ignore[misc]
    assert s.cookie_secure is True


def test_refresh_config_is_immutable() -> None:
    r = refresh()
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.interval = 0  # type: ignore[misc]
    assert r.interval == 60.0
