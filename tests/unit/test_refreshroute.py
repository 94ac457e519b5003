"""RefreshRoute: derived from the store's settings, replaced only for a block."""

from __future__ import annotations

import dataclasses

import pytest

from fastapi_authkit import RefreshParam, RefreshResult, create_issuer, create_refresh, create_store
from fastapi_authkit.stores import MemoryStore

from tests.support.tokens import SECRET_KEY, TOKEN_KEY


async def ended(param: RefreshParam) -> RefreshResult:
    return RefreshResult(is_success=False)


def test_the_route_is_the_stores_settings() -> None:
    issuer = create_issuer(backend=MemoryStore(), signing_key=TOKEN_KEY)
    store = create_store(secret_key=SECRET_KEY, token_issuer=issuer)
    route = store.refresh_route
    assert (route.config, route.rotation, route.shared) == (
        store.refresh,
        store.rotation,
        store.shared_store,
    )
    assert route.rotation is not None


def test_a_replaced_store_routes_by_its_own_fields() -> None:
    issuer = create_issuer(backend=MemoryStore(), signing_key=TOKEN_KEY)
    store = create_store(secret_key=SECRET_KEY, token_issuer=issuer)
    without_rotation = dataclasses.replace(store, rotation=None)
    assert without_rotation.refresh_route.rotation is None
    assert store.refresh_route.rotation is not None


def test_replaced_lasts_for_the_block_and_nests() -> None:
    refresh = create_refresh(interval=60, refresh_api_callback=ended)
    store = create_store(secret_key=SECRET_KEY, token_key=TOKEN_KEY, refresh=refresh)
    route = store.refresh_route
    other = dataclasses.replace(refresh, timeout=0.01)
    shared = MemoryStore()
    with route.replaced(config=other):
        assert route.config is other
        with route.replaced(shared=shared, config=None):
            assert (route.config, route.shared) == (None, shared)
        assert (route.config, route.shared) == (other, None)
    assert (route.config, route.rotation, route.shared) == (refresh, None, None)
    assert store.refresh is refresh  # the settings themselves never change


def test_replaced_refuses_what_the_route_does_not_hold() -> None:
    store = create_store(secret_key=SECRET_KEY, token_key=TOKEN_KEY)
    with pytest.raises(TypeError, match="no verifier"), store.refresh_route.replaced(verifier=1):
        pass  # pragma: no cover
