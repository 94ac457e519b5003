"""The public surface: ``fastapi_authkit.__all__`` is complete, exact and importable."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
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

# The curated top level: what an application imports to set the kit up and use it. A name
# added here is a decision (STYLE.md: a small public face), not an accident of an import.
TOP_LEVEL = frozenset(
    {
        # setting up
        "create_store",
        "create_refresh",
        "create_issuer",
        "create_login_guard",
        "AuthKitMiddleware",
        # the refresh callback's contract
        "RefreshParam",
        "RefreshResult",
        # a request's session
        "sign_in",
        "sign_out",
        "get_auth_state",
        "AuthState",
        # the FastAPI dependencies (their Annotated aliases live in fastapi_authkit.dependencies)
        "auth_state",
        "current_user",
        "auth_user",
        "is_authenticated",
        "auth_header",
        "require_auth",
        # the errors application code catches
        "AuthKitError",
        "ConfigurationError",
        "TokenError",
        "StoreUnavailableError",
    }
)

# Names 0.1.0 exported from the top level that live in their module now: still importable
# from fastapi_authkit for this release, with a DeprecationWarning naming the new import.
MOVED = {
    "AuthStore": "config",
    "RefreshConfig": "config",
    "AuthHeader": "dependencies",
    "AuthKitCookie": "dependencies",
    "AuthKitDependencies": "dependencies",
    "AuthStateDep": "dependencies",
    "CurrentUser": "dependencies",
    "IsAuthenticated": "dependencies",
    "OptionalUser": "dependencies",
    "dependencies_for": "dependencies",
    "CookieError": "errors",
    "CookieTooLargeError": "errors",
    "CrossSiteRequestError": "errors",
    "InvalidRefreshResultError": "errors",
    "LoginThrottled": "errors",
    "ProviderError": "errors",
    "RefreshError": "errors",
    "RefreshTimeoutError": "errors",
    "ReplicaConfirmationError": "errors",
    "ServerSettingError": "errors",
    "TokenExpiredError": "errors",
    "UnknownKeyError": "errors",
    "UserStateError": "errors",
    "VerificationUnavailableError": "errors",
    "AuthEvent": "events",
    "EventHook": "events",
    "RefreshFailed": "events",
    "Refreshed": "events",
    "RequestRefused": "events",
    "ReuseDetected": "events",
    "RevokedSession": "events",
    "SessionEnded": "events",
    "SignedIn": "events",
    "SignedOut": "events",
    "StoreUnavailable": "events",
    "IssuedTokens": "issuer",
    "Issuer": "issuer",
    "SessionInfo": "issuer",
}

# Modules an application imports from: the top level's names come from them, and so do the
# names that moved off it.
APP_MODULES = (
    "callback",
    "config",
    "dependencies",
    "errors",
    "events",
    "issuer",
    "loginguard",
    "middleware",
    "refreshconfig",
    "state",
    "authstate",
)


# Building blocks with no place in the application-facing API.
INTERNAL_MODULES = (
    "sessiontokens",
    "bearerclients",
    "bearer",
    "familyids",
    "validation",
    "storeoptions",
    "refreshroute",
    "eventdelivery",
    "liveoptions",
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
    "audit",
    "refusal",
    "dropped_cookies",
    "streams",
)

# Subpackages with a public face of their own (their own __all__ and docs pages); any other
# subpackage (refresh) is a module of the lists above.
PUBLIC_SUBPACKAGES = frozenset({"oidc", "stores", "testing"})


def _submodule(name: str) -> types.ModuleType:
    return importlib.import_module(f"fastapi_authkit.{name}")


def test_all_has_no_duplicates() -> None:
    assert len(fastapi_authkit.__all__) == len(set(fastapi_authkit.__all__))


def test_all_is_exactly_the_curated_list() -> None:
    assert set(fastapi_authkit.__all__) == TOP_LEVEL


def test_the_top_level_stays_small() -> None:
    # PyJWT exports 22 names, itsdangerous 19: the size of a public face one can learn.
    assert len(fastapi_authkit.__all__) <= 22


def test_the_configuration_objects_errors_and_scheme_are_public() -> None:
    # Beyond DESIGN.md's list: what create_store/create_refresh return, the per-request
    # state, the root of the exception tree and the OpenAPI security scheme; at the top, or
    # in the module the top level's docstring names.
    assert {"AuthState", "get_auth_state", "AuthKitError", "ConfigurationError", "TokenError"} <= (
        set(fastapi_authkit.__all__)
    )
    assert {"AuthStore", "RefreshConfig"} <= set(_submodule("config").__all__)
    assert {"AuthKitCookie", "CurrentUser"} <= set(_submodule("dependencies").__all__)


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


def test_the_top_level_names_come_from_the_app_modules() -> None:
    for name in fastapi_authkit.__all__:
        defining = [m for m in APP_MODULES if name in _submodule(m).__all__]
        assert defining, f"{name} is in no application module's __all__"
        for module_name in defining:
            assert getattr(fastapi_authkit, name) is getattr(_submodule(module_name), name)


def test_the_moved_names_are_not_also_at_the_top() -> None:
    assert not set(MOVED) & TOP_LEVEL
    assert fastapi_authkit._MOVED == MOVED
    assert set(MOVED.values()) <= set(APP_MODULES)


@pytest.mark.parametrize(("name", "module_name"), sorted(MOVED.items()))
def test_a_moved_name_resolves_with_a_deprecation_warning(name: str, module_name: str) -> None:
    new_path = f"from fastapi_authkit.{module_name} import {name}"
    with pytest.warns(DeprecationWarning, match=re.escape(new_path)):
        value = getattr(fastapi_authkit, name)
    assert value is getattr(_submodule(module_name), name)
    namespace: dict[str, object] = {}
    with pytest.warns(DeprecationWarning, match=re.escape(new_path)) as caught:
        exec(f"from fastapi_authkit import {name}", namespace)  # noqa: S102
    assert namespace[name] is value
    # The warning points at the import, not at the package's __getattr__.
    assert all(warning.filename != fastapi_authkit.__file__ for warning in caught)


@pytest.mark.parametrize("name", sorted(MOVED))
def test_a_moved_name_is_neither_in_all_nor_in_dir(name: str) -> None:
    assert name not in fastapi_authkit.__all__
    assert name not in dir(fastapi_authkit)
    assert name not in vars(fastapi_authkit)  # not cached: every import of it warns


def test_an_unknown_name_is_an_attribute_error_without_warning() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'NoSuchName'"):
        fastapi_authkit.NoSuchName  # noqa: B018
    with pytest.raises(ImportError):
        exec("from fastapi_authkit import NoSuchName", {})  # noqa: S102


def test_the_submodules_import_as_before() -> None:
    namespace: dict[str, object] = {}
    exec("from fastapi_authkit import events, errors, stores", namespace)  # noqa: S102
    assert namespace["events"] is _submodule("events")


@pytest.mark.parametrize("module_name", INTERNAL_MODULES)
def test_internal_modules_are_not_re_exported(module_name: str) -> None:
    module = _submodule(module_name)
    assert not set(module.__all__) & set(fastapi_authkit.__all__)


@pytest.mark.parametrize("module_name", APP_MODULES + INTERNAL_MODULES)
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
    classified = set(APP_MODULES) | set(INTERNAL_MODULES)
    modules = {
        info.name
        for info in pkgutil.iter_modules(fastapi_authkit.__path__)
        if not info.name.startswith("_")
    } - PUBLIC_SUBPACKAGES
    assert modules == classified


def test_auth_state_sid_is_a_deprecated_name_of_state_id() -> None:
    from fastapi_authkit.authstate import AuthState

    state = AuthState.__new__(AuthState)
    state.state_id = "s-1"
    with pytest.warns(DeprecationWarning, match="use AuthState.state_id") as caught:
        assert state.sid == "s-1"
    assert caught[0].filename == __file__  # the warning points at the caller
