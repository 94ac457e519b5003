"""The kit's pytest plugin: fixtures for tests of apps that use the kit.

Installed with the package (the ``pytest11`` entry point), so the fixtures are there in
every test run; ``-p no:fastapi_authkit.testing.plugin`` turns it off.

- ``authkit_clock``: a fresh :class:`~fastapi_authkit.testing.Clock`, to build the app with;
- ``authkit_client``: :func:`~fastapi_authkit.testing.auth_client` of the test's ``app``
  fixture, started (lifespan run) and closed after the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from .clients import auth_client
from .clock import Clock

if TYPE_CHECKING:
    from starlette.testclient import TestClient

__all__ = ["authkit_client", "authkit_clock"]


@pytest.fixture
def authkit_clock() -> Clock:
    """A clock the test moves (``authkit_clock.advance(seconds)``); build the app with it:
    ``create_store(..., clock=authkit_clock)`` and ``create_issuer(..., clock=...)``."""
    return Clock()


@pytest.fixture
def authkit_client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """A started ``auth_client`` (https, CSRF header echoed) of the ``app`` fixture, which
    the test module or a conftest defines."""
    app = request.getfixturevalue("app")
    with auth_client(app) as client:
        yield client
