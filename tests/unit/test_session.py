"""fastapi_authkit.session alone: how long the refresh cookie lives. The refresh token's
stated lifetime (a provider's ``refresh_token_expires_in``, the callback's), else its own
``exp``, else ``refresh_max_age``; never beyond ``state_max_age``, the session cookies' life,
since a refresh cookie without its state cookie is refused. The clock is injected."""

from __future__ import annotations

import re

import pytest

from fastapi_authkit import create_store
from fastapi_authkit.session import issue_session, new_state_id

from tests.support.clock import Clock
from tests.support.tokens import SECRET_KEY, TOKEN_KEY, make_token

DAY = 86400
STATE_MAX_AGE = 30 * DAY


def _refresh_cookie_age(clock: Clock, refresh_token: str, expires_in: int | None) -> int:
    store = create_store(
        secret_key=SECRET_KEY,
        token_key=TOKEN_KEY,
        clock=clock,
        state_max_age=STATE_MAX_AGE,
        refresh_max_age=14 * DAY,
    )
    token = make_token(clock)
    cookies = issue_session(
        store.cookie_writer,
        token=token,
        token_type="Bearer",
        claims=store.verifier.verify(token, clock()),
        state_id=new_state_id(),
        user_state=None,
        refresh_token=refresh_token,
        refresh_expires_in=expires_in,
        access_expires_in=None,
        session_refresh_token=refresh_token,
        now=clock(),
    )
    (refresh,) = [c for c in cookies if c.startswith(b"_auth_refresh=")]
    found = re.search(rb"Max-Age=(\d+)", refresh)
    assert found is not None
    return int(found.group(1))


@pytest.mark.parametrize(
    ("expires_in", "age"),
    [
        (3600, 3600),  # shorter than the kit's default: the refresh token's own
        (20 * DAY, 20 * DAY),  # beyond refresh_max_age, which is only the default
        (183 * DAY, STATE_MAX_AGE),  # GitHub's six months: no longer than the session
        (None, 14 * DAY),  # nothing stated: refresh_max_age
    ],
)
def test_a_stated_refresh_lifetime_sizes_the_cookie_up_to_state_max_age(
    expires_in: int | None, age: int
) -> None:
    assert _refresh_cookie_age(Clock(), "opaque-refresh-token", expires_in) == age


def test_a_refresh_jwts_own_exp_sizes_the_cookie_up_to_state_max_age() -> None:
    clock = Clock()
    soon = make_token(clock, ttl=2 * DAY)
    assert _refresh_cookie_age(clock, soon, None) == 2 * DAY
    late = make_token(clock, ttl=90 * DAY)
    assert _refresh_cookie_age(clock, late, None) == STATE_MAX_AGE
