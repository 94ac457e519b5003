"""``wait_replicas``: a write the replicas do not confirm in time is a store outage for that
request, and a rotation is undone. Shown on a real redis-server and a real 3-primary cluster
that have no replicas at all, so no write is ever confirmed (``WAIT`` answers 0). The
confirmed path, with a real replica and a failover, is
tests/integration/sentinel/test_failover.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from fastapi_authkit import RefreshParam, RefreshResult, StoreUnavailableError
from fastapi_authkit.errors import ReplicaConfirmationError
from fastapi_authkit.issuer import Issuer
from fastapi_authkit.stores import RedisStore

from tests.support.apps import make_issuer
from tests.support.clock import Clock
from tests.support.redis_stores import keys_under

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("kind", ["redis", "cluster"])]

SOCKET_TIMEOUT = 5.0


async def refresh(issuer: Issuer, token: str) -> RefreshResult:
    return await issuer.refresh(RefreshParam(auth_token=None, refresh_token=token))


class Pair:
    """Two stores on one prefix: ``plain`` (no waiting) and ``waiting`` (wait_replicas=1)."""

    def __init__(self, url: str, clock: Clock) -> None:
        self.prefix = f"wait-{uuid.uuid4().hex}:"
        # Every call but WAIT answers at once; a busy machine can still hold a reply past
        # the default 0.5 s socket timeout (an undo that timed out was left undone). How a
        # slow Redis is answered is not what these tests are about.
        self.plain = RedisStore.from_url(url, prefix=self.prefix, timeout=SOCKET_TIMEOUT)
        self.waiting = RedisStore.from_url(
            url, prefix=self.prefix, timeout=SOCKET_TIMEOUT, wait_replicas=1, wait_timeout=0.05
        )
        self.issuer = make_issuer(self.plain, clock)
        self.waiting_issuer = make_issuer(self.waiting, clock)

    async def token_records(self) -> int:
        found = await keys_under(self.plain, self.prefix)
        return sum(1 for keys in found.values() for key in keys if b":rt:" in key)


@pytest.fixture
async def pair(request: pytest.FixtureRequest, kind: str, clock: Clock) -> AsyncIterator[Pair]:
    server = request.getfixturevalue("redis_server" if kind == "redis" else "redis_cluster")
    stores = Pair(server.url, clock)
    yield stores
    await stores.plain.aclose()
    await stores.waiting.aclose()


async def test_an_unconfirmed_rotation_is_refused_and_undone(pair: Pair, clock: Clock) -> None:
    tokens = await pair.issuer.issue("alice")
    clock.advance(30)
    with pytest.raises(ReplicaConfirmationError) as raised:
        await refresh(pair.waiting_issuer, tokens.refresh_token)
    assert isinstance(raised.value, StoreUnavailableError)  # the kit's outage handling
    assert (raised.value.wanted, raised.value.confirmed) == (1, 0)
    assert await pair.token_records() == 1  # the successor's record is gone again
    # The token is current again: past the grace window it rotates normally, where a
    # rotation left in place would now be taken for theft.
    clock.advance(30)
    result = await refresh(pair.issuer, tokens.refresh_token)
    assert result.is_success
    assert await pair.token_records() == 2


async def test_a_replay_is_confirmed_before_it_is_handed_out(pair: Pair, clock: Clock) -> None:
    tokens = await pair.issuer.issue("alice")
    first = await refresh(pair.issuer, tokens.refresh_token)
    clock.advance(2)
    # The replay repeats a rotation that may itself be unreplicated: it is confirmed too.
    with pytest.raises(ReplicaConfirmationError):
        await refresh(pair.waiting_issuer, tokens.refresh_token)
    assert await refresh(pair.issuer, tokens.refresh_token) == first


async def test_unconfirmed_sign_in_and_revocations_are_refused(pair: Pair, clock: Clock) -> None:
    with pytest.raises(ReplicaConfirmationError, match="sign-in"):
        await pair.waiting_issuer.issue("alice")
    tokens = await pair.issuer.issue("alice")
    with pytest.raises(ReplicaConfirmationError, match="sign-out"):
        await pair.waiting_issuer.revoke(tokens.refresh_token)
    with pytest.raises(ReplicaConfirmationError, match="sign-out everywhere"):
        await pair.waiting_issuer.revoke_subject("alice")
    # Reuse detection revokes too, and is confirmed like any revocation.
    other = await pair.issuer.issue("bob")
    first = await refresh(pair.issuer, other.refresh_token)
    await refresh(pair.issuer, first.new_refresh_token or "")  # its successor used
    clock.advance(20)
    with pytest.raises(ReplicaConfirmationError, match="reuse"):
        await refresh(pair.waiting_issuer, other.refresh_token)
    # Nothing to confirm: an unknown token is an answer, not an outage.
    assert not await pair.waiting_issuer.revoke(f"{other.family_id}.not-a-token")
    assert not (await refresh(pair.waiting_issuer, f"{other.family_id}.nope")).is_success
