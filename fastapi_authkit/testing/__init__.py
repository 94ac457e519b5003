"""A test kit for applications that use fastapi-authkit.

Sign a test client in without the login route (:func:`login_as`), move time
(:class:`Clock`), make the refresh callback fail or the session store go down
(:func:`refresh_fails`, :func:`store_down`), and assert what a response did to the session
(:func:`assert_signed_in`, :func:`assert_refreshed`, :func:`assert_signed_out`,
:func:`assert_session_kept`). Plain functions, usable from any test runner; the pytest
plugin (:mod:`fastapi_authkit.testing.plugin`, installed as an entry point) adds fixtures.
See docs/testing.md.
"""

from .apps import find_store
from .assertions import (
    SetCookie,
    assert_refreshed,
    assert_session_kept,
    assert_signed_in,
    assert_signed_out,
    auth_cookies,
)
from .clients import BASE_URL, async_auth_client, auth_client, echo_csrf
from .clock import Clock
from .failures import FailureKind, RefreshCalls, refresh_fails, store_down
from .login import AUTO, Session, login_as, mint_session

__all__ = [
    "AUTO",
    "BASE_URL",
    "Clock",
    "FailureKind",
    "RefreshCalls",
    "Session",
    "SetCookie",
    "assert_refreshed",
    "assert_session_kept",
    "assert_signed_in",
    "assert_signed_out",
    "async_auth_client",
    "auth_client",
    "auth_cookies",
    "echo_csrf",
    "find_store",
    "login_as",
    "mint_session",
    "refresh_fails",
    "store_down",
]
