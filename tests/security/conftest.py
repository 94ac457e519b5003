"""Fixtures and Hypothesis profiles of the security suite.

Profiles (select with ``HYPOTHESIS_PROFILE=dev|deep``; the default is ``ci``):

* ``ci`` — 2,000 examples per property, derandomized (a fixed seed per test) and without an
  example database, so CI runs are repeatable and leave nothing behind;
* ``dev`` — 10,000 examples, random, with the local example database (shrinks replay);
* ``deep`` — 200,000 examples for a long local soak.

The profiles are applied per test (``@PROPERTY_SETTINGS``), never loaded globally, so the
rest of the test suite keeps its own Hypothesis settings.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

# The shared helpers (apps.py, conftest.py, servers.py) live one level up and are imported by
# bare name; pytest already puts tests/ on sys.path for this package, this keeps it so under
# any import mode.
_TESTS = str(Path(__file__).resolve().parent.parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

settings.register_profile(
    "ci",
    max_examples=2_000,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "deep",
    max_examples=200_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE not in ("ci", "dev", "deep"):
    raise pytest.UsageError(f"HYPOTHESIS_PROFILE must be ci, dev or deep, got {PROFILE!r}")
PROPERTY_SETTINGS = settings.get_profile(PROFILE)

# After the sys.path line above: these live in tests/.
from fastapi import FastAPI  # noqa: E402

from .helpers import security_app  # noqa: E402
from apps import Recorder, build_store  # noqa: E402
from conftest import Clock  # noqa: E402


@pytest.fixture
def recorder(clock: Clock) -> Recorder:
    """The counting refresh callback of the catalogue's apps."""
    return Recorder(clock)


@pytest.fixture
def app(clock: Clock, recorder: Recorder) -> FastAPI:
    """The catalogue's app (tests/security/helpers.py) on a store refreshing via recorder."""
    return security_app(build_store(clock, recorder))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Refuse, and record, every attempt to resolve a name or open a connection."""
    attempts: list[str] = []

    def refuse(what: str) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            attempts.append(what)
            raise OSError(f"network access attempted in a test: {what}")

        return refused

    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "gethostbyname", refuse("gethostbyname"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    monkeypatch.setattr(urllib.request, "urlopen", refuse("urlopen"))
    return attempts
