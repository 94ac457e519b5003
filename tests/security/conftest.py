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

import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, settings

from .helpers import security_app
from tests.support.apps import Recorder, build_store
from tests.support.clock import Clock

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


@pytest.fixture
def recorder(clock: Clock) -> Recorder:
    """The counting refresh callback of the catalogue's apps."""
    return Recorder(clock)


@pytest.fixture
def app(clock: Clock, recorder: Recorder) -> FastAPI:
    """The catalogue's app (tests/security/helpers.py) on a store refreshing via recorder."""
    return security_app(build_store(clock, recorder))
