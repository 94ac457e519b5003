"""The set of cookies that makes one signed-in session: issuing them and clearing them.

One place builds them so that ``sign_in`` and an automatic refresh emit exactly the same
shape of cookies.
"""

from __future__ import annotations

import secrets
from typing import Any

from .config import AuthStore
from .tokens import unverified_expiry

__all__ = ["clear_session", "issue_session", "new_sid"]


def new_sid() -> str:
    """A fresh session id; a new one on every sign-in defeats session fixation."""
    return secrets.token_urlsafe(18)


def _refresh_max_age(
    store: AuthStore, refresh_token: str, expires_in: int | None, now: float
) -> int:
    if expires_in is not None:
        return int(expires_in)
    exp = unverified_expiry(refresh_token)
    if exp is not None:
        return int(exp - now)
    return store.refresh_max_age


def issue_session(
    store: AuthStore,
    *,
    token: str,
    token_type: str,
    claims: dict[str, Any],
    sid: str,
    user_state: Any,
    refresh_token: str | None,
    refresh_expires_in: int | None,
    access_expires_in: int | None,
    has_refresh: bool,
    now: float,
) -> tuple[bytes, ...]:
    """Set-Cookie values for a verified access token and its session.

    ``refresh_token`` is written only when given (sign-in or rotation); ``has_refresh`` says
    whether the session has one at all, which decides how long the session cookies live.
    Raises :class:`CookieError`/:class:`UserStateError` before anything is emitted.
    """
    names, policy = store.names, store.policy
    # The cookie never outlives the token; the leeway keeps it while the token is accepted.
    access_age = int(claims["exp"] - now + store.verifier.leeway)
    if access_expires_in is not None:
        access_age = min(access_age, int(access_expires_in))
    session_age = store.state_max_age if has_refresh else min(access_age, store.state_max_age)
    csrf_token = store.csrf.token_for(sid)
    cookies = [
        policy.set(names.access, token, max_age=access_age),
        policy.set(names.type, token_type, max_age=access_age),
        policy.set(names.state, store.state_codec.dumps(sid, user_state), max_age=session_age),
    ]
    if refresh_token is not None:
        age = _refresh_max_age(store, refresh_token, refresh_expires_in, now)
        cookies.append(policy.set(names.refresh, refresh_token, max_age=age))
    cookies.append(policy.set(names.csrf, csrf_token, max_age=session_age, http_only=False))
    return tuple(cookies)


def clear_session(store: AuthStore) -> tuple[bytes, ...]:
    """Deletions for every auth cookie, each repeating the attributes it was set with."""
    names, policy = store.names, store.policy
    return (
        policy.delete(names.access),
        policy.delete(names.type),
        policy.delete(names.state),
        policy.delete(names.refresh),
        policy.delete(names.csrf, http_only=False),
    )
