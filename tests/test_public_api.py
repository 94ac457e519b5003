"""The public surface: ``fastapi_authkit.__all__`` is complete, exact and importable."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import types

import pytest

import fastapi_authkit

# The import list of DESIGN.md's "Public API" section: the contract.
DESIGN_NAMES = frozenset(
    {
        "create_store",
        "create_refresh",
        "RefreshParam",
        "RefreshResult",
        "AuthKitMiddleware",
        "sign_in",
        "sign_out",
        "auth_state",
        "current_user",
        "auth_user",
        "is_authenticated",
        "auth_header",
        "require_auth",
    }
)

# Modules whose whole __all__ is public: every name in it must be re-exported.
FULLY_PUBLIC_MODULES = ("errors", "dependencies", "middleware")

# Modules that export some of their names; what they keep internal is listed explicitly so
# that a new public name has to be decided on, not forgotten.
PARTLY_PUBLIC_MODULES = {
    "callback": {"RefreshCallback", "RevokeCallback", "check_lifetime"},
    "config": {"AuthType", "Credential"},
    "events": {
        "HOOK_TIMEOUT",
        "QUEUE_SIZE",
        "RESERVED_SHARE",
        "PRIORITY_KINDS",
        "COALESCED_KINDS",
        "EventKind",
        "Events",
        "refusal_reason",
        # The login guard's events: imported from fastapi_authkit.events (STYLE.md: a
        # small public face), shown on the docs' events page.
        "LoginFailed",
        "LoginLocked",
    },
    "loginguard": {"UNAVAILABLE_RETRY_AFTER", "LoginAttempt", "LoginGuard"},
    "issuer": {"ACCESS_TOKEN_TYPE"},
    "tokenissuer": {"ACCESS_TOKEN_TYPE", "TokenIssuer"},
    "state": {"SCOPE_KEY", "end_session", "refuse_cross_site"},
}

# Building blocks with no place in the application-facing API.
INTERNAL_MODULES = (
    "tokens",
    "cookies",
    "csrf",
    "userstate",
    "session",
    "refresh",
    "origins",
    "jsoncopy",
    "fifo",
    "reader",
    "decision",
    "forgery",
    "readercache",
    "source",
    "notices",
    "clientinfo",
    "forwarded",
    "localpath",
    "live",
    "secretvalue",
)


def _submodule(name: str) -> types.ModuleType:
    return importlib.import_module(f"fastapi_authkit.{name}")


def test_all_has_no_duplicates() -> None:
    assert len(fastapi_authkit.__all__) == len(set(fastapi_authkit.__all__))


def test_all_is_exactly_the_public_names_of_the_public_modules() -> None:
    expected: set[str] = set()
    for name in FULLY_PUBLIC_MODULES:
        expected |= set(_submodule(name).__all__)
    for name, internal in PARTLY_PUBLIC_MODULES.items():
        expected |= set(_submodule(name).__all__) - internal
    assert set(fastapi_authkit.__all__) == expected


def test_all_holds_the_configuration_objects_errors_and_scheme() -> None:
    # Beyond DESIGN.md's list: what create_store/create_refresh return, the per-request
    # state, the root of the exception tree and the OpenAPI security scheme.
    assert {
        "AuthStore",
        "RefreshConfig",
        "AuthState",
        "get_auth_state",
        "AuthKitError",
        "ConfigurationError",
        "TokenError",
        "AuthKitCookie",
        "CurrentUser",
    } <= set(fastapi_authkit.__all__)


def test_every_name_in_design_is_exported_and_importable() -> None:
    namespace: dict[str, object] = {}
    exec(  # noqa: S102 - a fixed import statement, exactly as DESIGN.md writes it
        "from fastapi_authkit import (\n"
        "    create_store, create_refresh, RefreshParam, RefreshResult,\n"
        "    AuthKitMiddleware, sign_in, sign_out,\n"
        "    auth_state, current_user, auth_user, is_authenticated, auth_header, require_auth,\n"
        ")",
        namespace,
    )
    assert set(namespace) >= DESIGN_NAMES
    assert set(fastapi_authkit.__all__) >= DESIGN_NAMES


@pytest.mark.parametrize("name", sorted(fastapi_authkit.__all__))
def test_every_exported_name_resolves(name: str) -> None:
    assert getattr(fastapi_authkit, name) is not None


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from fastapi_authkit import *", namespace)  # noqa: S102
    namespace.pop("__builtins__", None)
    assert set(namespace) == set(fastapi_authkit.__all__)


def test_no_public_name_in_the_package_namespace_is_left_out_of_all() -> None:
    public = {
        name
        for name, value in vars(fastapi_authkit).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(fastapi_authkit.__all__)


@pytest.mark.parametrize("module_name", FULLY_PUBLIC_MODULES)
def test_fully_public_modules_are_re_exported(module_name: str) -> None:
    module = _submodule(module_name)
    assert set(module.__all__) <= set(fastapi_authkit.__all__)
    for name in module.__all__:
        assert getattr(fastapi_authkit, name) is getattr(module, name)


@pytest.mark.parametrize("module_name", sorted(PARTLY_PUBLIC_MODULES))
def test_partly_public_modules_export_all_but_their_listed_internals(module_name: str) -> None:
    module = _submodule(module_name)
    internal = PARTLY_PUBLIC_MODULES[module_name]
    assert internal <= set(module.__all__)
    assert set(module.__all__) - internal <= set(fastapi_authkit.__all__)
    assert not internal & set(fastapi_authkit.__all__)


@pytest.mark.parametrize("module_name", INTERNAL_MODULES)
def test_internal_modules_are_not_re_exported(module_name: str) -> None:
    module = _submodule(module_name)
    assert not set(module.__all__) & set(fastapi_authkit.__all__)


@pytest.mark.parametrize(
    "module_name",
    FULLY_PUBLIC_MODULES + tuple(PARTLY_PUBLIC_MODULES) + INTERNAL_MODULES,
)
def test_every_module_all_resolves_without_duplicates(module_name: str) -> None:
    module = _submodule(module_name)
    assert len(module.__all__) == len(set(module.__all__))
    for name in module.__all__:
        assert hasattr(module, name), f"{module_name}.__all__ names missing {name!r}"


def test_exported_classes_and_functions_are_defined_in_the_package() -> None:
    for name in fastapi_authkit.__all__:
        value = getattr(fastapi_authkit, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("fastapi_authkit."), name
            assert value.__name__ == name


def test_every_error_derives_from_authkit_error() -> None:
    errors = _submodule("errors")
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), fastapi_authkit.AuthKitError), name


def test_every_top_level_module_is_classified() -> None:
    # A new module must be placed in one of the lists above, deciding what it exports.
    classified = set(FULLY_PUBLIC_MODULES) | set(PARTLY_PUBLIC_MODULES) | set(INTERNAL_MODULES)
    modules = {
        info.name
        for info in pkgutil.iter_modules(fastapi_authkit.__path__)
        if not info.name.startswith("_") and (not info.ispkg or info.name in classified)
    }
    assert modules == classified
