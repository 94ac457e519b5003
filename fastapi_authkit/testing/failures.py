"""Failures on demand: the refresh callback failing (definitively, transiently, slowly) and
the session store going down, for as long as a ``with`` block lasts.

The kit's configuration is immutable; these context managers replace, for the block, what
it offers to replace: the store's refresh route
(:class:`~fastapi_authkit.refreshroute.RefreshRoute`) and the built-in issuer's backend. The
middleware reads both at each refresh, so the swap takes effect on the next request of an
app already running.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

import anyio

from ..callback import RefreshParam, RefreshResult
from ..errors import ConfigurationError, StoreUnavailableError
from ..refreshroute import RefreshRoute
from ..sessiontokens import SessionTokens
from ..stores.base import SessionStore
from .apps import find_store

__all__ = ["FailureKind", "RefreshCalls", "refresh_fails", "store_down"]

FailureKind = Literal["definitive", "transient", "slow"]
_KINDS: tuple[FailureKind, ...] = ("definitive", "transient", "slow")


@dataclass
class RefreshCalls:
    """What :func:`refresh_fails` answered: ``calls`` holds every
    :class:`~fastapi_authkit.RefreshParam` the failing callback received."""

    kind: FailureKind
    calls: list[RefreshParam] = field(default_factory=list)


@contextmanager
def refresh_fails(
    app: Any, kind: FailureKind = "transient", *, timeout: float = 0.05
) -> Iterator[RefreshCalls]:
    """Within the block, every refresh of ``app`` (an app, a client of it, or its
    :class:`~fastapi_authkit.config.AuthStore`) fails:

    - ``"definitive"``: the callback answers ``RefreshResult(is_success=False)``: the
      session is over, every auth cookie is cleared, the request goes on signed out;
    - ``"transient"``: the callback raises (the auth server or the store unreachable):
      nothing is cleared, a still-valid access token keeps working, an expired one makes
      protected routes answer 503 with ``Retry-After``;
    - ``"slow"``: the callback outlasts its timeout, shortened to ``timeout`` seconds for
      the block so that the test does not wait: the same outcome as ``"transient"``.

    This replaces the app's refresh callback (or the built-in issuer's rotation), which
    is not called; the sessions in the issuer's store stay as they were. Yields a
    :class:`RefreshCalls` recording what the failing callback received."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, _KINDS))}, got {kind!r}")
    route = find_store(app).refresh_route
    refresh = route.config
    if refresh is None:
        raise ConfigurationError("the app does not refresh: create_store(refresh=...) is unset")
    record = RefreshCalls(kind)

    async def failing(param: RefreshParam) -> RefreshResult:
        record.calls.append(param)
        if kind == "definitive":
            return RefreshResult(is_success=False)
        if kind == "slow":
            await anyio.sleep(3600)  # cancelled by the refresh timeout
        raise ConnectionError("the refresh callback is failing (fastapi_authkit.testing)")

    swapped = replace(
        refresh,
        refresh_api_callback=failing,
        timeout=timeout if kind == "slow" else refresh.timeout,
    )
    # Without the issuer's own rotation the middleware calls the callback, as it does for
    # an external auth server.
    with route.replaced(config=swapped, rotation=None):
        yield record


class _DownStore:
    """A session store every operation of which fails as an unreachable Redis does."""

    def __init__(self, real: SessionStore) -> None:
        self._real = real

    def known_active(self, family_id: str, now: float) -> bool | None:
        return None  # nothing known without the store

    async def aclose(self) -> None:
        await self._real.aclose()  # the app's shutdown still closes the real one

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)

        async def unavailable(*args: Any, **kwargs: Any) -> Any:
            raise StoreUnavailableError(f"store down ({name}; fastapi_authkit.testing)")

        return unavailable


@contextmanager
def store_down(app: Any) -> Iterator[None]:
    """Within the block, the built-in issuer's store (and the ``shared_store`` where
    refreshes meet) of ``app`` fails every call with
    :class:`~fastapi_authkit.StoreUnavailableError`, as Redis down does: refreshes, sign-in,
    sign-out and session lists fail; the kit fails closed (503), clears no cookie.

    The session check of a request whose access token is still valid is answered by the
    process's own view of the store where it provably can (always for a ``MemoryStore``,
    which lives in the process), so such a request still passes; one that needs the store
    (a refresh, once the token is near expiry or expired) gets the outage."""
    store = find_store(app)
    issuer, route = store.token_issuer, store.refresh_route
    if issuer is None and route.shared is None:
        raise ConfigurationError(
            "the app has no session store: neither create_store(token_issuer=...) nor "
            "shared_store=..."
        )
    with _down(issuer), _shared_down(route):
        yield


@contextmanager
def _down(issuer: object) -> Iterator[None]:
    if not isinstance(issuer, SessionTokens):
        yield
        return
    real = issuer.backend
    issuer.backend = cast(SessionStore, _DownStore(real))
    try:
        yield
    finally:
        issuer.backend = real


@contextmanager
def _shared_down(route: RefreshRoute) -> Iterator[None]:
    if route.shared is None:
        yield
        return
    with route.replaced(shared=cast(SessionStore, _DownStore(route.shared))):
        yield
