"""The set of cookies that makes one signed-in session: issuing them and clearing them.

One place builds them so that ``sign_in`` and an automatic refresh emit exactly the same
shape of cookies; :class:`CookieWriter`, built once by ``create_store``, holds what they
are built with.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from .cookies import CookieNames, CookiePolicy
from .csrf import CsrfSigner
from .errors import CookieError
from .notices import Notices
from .tokens import unverified_expiry
from .userstate import StateCodec
from .validation import is_number

__all__ = [
    "CookieWriter",
    "clear_session",
    "issue_session",
    "is_persistent",
    "issue_successor",
    "new_state_id",
    "successor_cookies",
]


@dataclass(frozen=True, slots=True)
class CookieWriter:
    """What a session's cookies are written with: their names and attributes, the state
    cookie's codec, the CSRF signer and the lifetimes (``leeway``: how long past ``exp`` the
    verifier still accepts an access token, and so keeps its cookie). ``refresh_interval``
    (None without refresh) and ``notices``: a token living less than the interval is
    logged once."""

    names: CookieNames
    policy: CookiePolicy
    state_codec: StateCodec
    csrf: CsrfSigner
    leeway: float
    state_max_age: int
    refresh_max_age: int
    refresh_interval: float | None
    notices: Notices


# The mark of a session whose cookies are session cookies ("remember me" unticked). The
# state id is signed into the state cookie and kept by every refresh, in this process and
# in the others (the shared flight carries it), so the choice made at sign-in lasts as long
# as the session: no other field has to travel with it. token_urlsafe never yields a '~'.
_SESSION_ONLY = "~"


def new_state_id(*, persistent: bool = True) -> str:
    """A fresh state id: the browser session's id, signed into the state cookie and the
    CSRF token (not the issuer's session family, the access token's ``sid`` claim). A new
    one on every sign-in defeats session fixation. ``persistent=False`` marks a session
    whose cookies the browser drops when it closes."""
    state_id = secrets.token_urlsafe(18)
    return state_id if persistent else _SESSION_ONLY + state_id


def is_persistent(state_id: str) -> bool:
    """Whether the session ``state_id`` names writes persistent cookies (Max-Age)."""
    return not state_id.startswith(_SESSION_ONLY)


def _seconds(name: str, value: object) -> int | None:
    # A callback's answer reaches here unchecked: a wrong type must be a clear error, not a
    # TypeError that becomes a 500.
    if value is None:
        return None
    if not is_number(value):
        raise CookieError(f"{name} must be a number of seconds, got {value!r}")
    return int(value)  # type: ignore[call-overload, no-any-return]


def _refresh_max_age(
    writer: CookieWriter, refresh_token: str, expires_in: int | None, now: float
) -> int:
    """The lifetime stated for the refresh token, else its own ``exp``, else
    ``refresh_max_age``; never beyond the session cookies' ``state_max_age``, since a refresh
    cookie without its state cookie is refused (a provider's six-month refresh token is no
    reason to keep it in the browser longer than the session can use it)."""
    if expires_in is not None:
        age = expires_in
    else:
        exp = unverified_expiry(refresh_token)
        age = int(exp - now) if exp is not None else writer.refresh_max_age
    return min(age, writer.state_max_age)


def issue_session(
    writer: CookieWriter,
    *,
    token: str,
    token_type: str,
    claims: dict[str, Any],
    state_id: str,
    user_state: Any,
    refresh_token: str | None,
    refresh_expires_in: int | None,
    access_expires_in: int | None,
    session_refresh_token: str | None,
    now: float,
) -> tuple[bytes, ...]:
    """Set-Cookie values for a verified access token and its session.

    ``refresh_token`` is written only when given (sign-in or rotation);
    ``session_refresh_token`` is the session's refresh token after this (the new one, the
    kept one, or None). It decides how long the session cookies live, and the state cookie
    is bound to it (or to the access token without one), so that an old state cookie cannot
    be paired with a newer session, and to the access token, so that an old state cookie
    (an old user state) cannot be paired with a newer access token of the same session.
    Raises :class:`CookieError`/:class:`UserStateError` before anything is emitted.
    """
    for label, value in (("token type", token_type), ("refresh token", refresh_token)):
        if value is not None and not isinstance(value, str):
            raise CookieError(f"the {label} must be a str, got {type(value).__name__}")
    refresh_expires_in = _seconds("refresh token expires_in", refresh_expires_in)
    access_expires_in = _seconds("access token expire_in", access_expires_in)
    if writer.refresh_interval is not None:
        # Every new token passes here (sign-in and refresh): the first one whose whole life
        # is inside the refresh interval says so.
        iat = claims.get("iat")
        lifetime = claims["exp"] - (iat if is_number(iat) else now)
        writer.notices.interval_beyond_lifetime(writer.refresh_interval, lifetime)
    names, policy = writer.names, writer.policy
    # The cookie never outlives the token; the leeway keeps it while the token is accepted.
    access_age = int(claims["exp"] - now + writer.leeway)
    if access_expires_in is not None:
        access_age = min(access_age, access_expires_in)
    has_refresh = session_refresh_token is not None
    session_age = writer.state_max_age if has_refresh else min(access_age, writer.state_max_age)
    # A session-only session's cookies carry no Max-Age: the browser drops them when it
    # closes. The token's exp and the state cookie's signed age still bound them here.
    access_cookie_age = access_age if is_persistent(state_id) else None
    return (
        policy.set(names.access, token, max_age=access_cookie_age),
        policy.set(names.type, token_type, max_age=access_cookie_age),
        *_session_cookies(
            writer,
            state_id=state_id,
            user_state=user_state,
            bound_to=session_refresh_token or token,
            access_tokens=(token,),
            session_age=session_age,
            refresh_token=refresh_token,
            refresh_expires_in=refresh_expires_in,
            now=now,
        ),
    )


def issue_successor(
    writer: CookieWriter,
    *,
    state_id: str,
    user_state: Any,
    refresh_token: str,
    refresh_expires_in: int | None,
    access_tokens: tuple[str | None, ...],
    now: float,
) -> tuple[bytes, ...]:
    """Set-Cookie values that keep a rotated refresh token when its access token cannot be
    used here: the refresh cookie, the state cookie re-bound to it, and the CSRF cookie. The
    access cookie is left as it is (still valid, or expired and so refreshed next time).

    ``access_tokens``: the access token the browser keeps (None when it sent none) and the
    unusable new one. The state cookie is bound to both: another process that can use the
    new token writes it with a state cookie bound to it alone, and whichever of the two
    responses the browser stores last, its access and state cookies pair. Raises like
    :func:`issue_session`.
    """
    if not isinstance(refresh_token, str):
        raise CookieError(f"the refresh token must be a str, got {type(refresh_token).__name__}")
    return _session_cookies(
        writer,
        state_id=state_id,
        user_state=user_state,
        bound_to=refresh_token,
        access_tokens=access_tokens,
        session_age=writer.state_max_age,
        refresh_token=refresh_token,
        refresh_expires_in=_seconds("refresh token expires_in", refresh_expires_in),
        now=now,
    )


def successor_cookies(
    writer: CookieWriter,
    cookies: tuple[bytes, ...],
    *,
    state_id: str,
    user_state: Any,
    refresh_token: str,
    access_tokens: tuple[str | None, ...],
) -> tuple[bytes, ...]:
    """``cookies`` from :func:`issue_session` (another process's refresh, whose access token
    does not verify here) as :func:`issue_successor` would have written them: without the
    access and type cookies, the state cookie bound to ``access_tokens`` (the refresh and
    CSRF cookies, and their lifetimes, are the other process's)."""
    names = writer.names
    skip = (f"{names.access}=".encode(), f"{names.type}=".encode())
    state = f"{names.state}=".encode()
    rebound = writer.policy.set(
        names.state,
        writer.state_codec.dumps(state_id, user_state, refresh_token, access_tokens),
        max_age=writer.state_max_age if is_persistent(state_id) else None,
    )
    return tuple(
        rebound if cookie.startswith(state) else cookie
        for cookie in cookies
        if not cookie.startswith(skip)
    )


def _session_cookies(
    writer: CookieWriter,
    *,
    state_id: str,
    user_state: Any,
    bound_to: str,
    access_tokens: tuple[str | None, ...],
    session_age: int,
    refresh_token: str | None,
    refresh_expires_in: int | None,
    now: float,
) -> tuple[bytes, ...]:
    names, policy = writer.names, writer.policy
    persistent = is_persistent(state_id)
    state = writer.state_codec.dumps(state_id, user_state, bound_to, access_tokens, now=now)
    age: int | None = session_age if persistent else None
    cookies = [policy.set(names.state, state, max_age=age)]
    if refresh_token is not None:
        refresh_age = _refresh_max_age(writer, refresh_token, refresh_expires_in, now)
        cookies.append(
            policy.set(names.refresh, refresh_token, max_age=refresh_age if persistent else None)
        )
    cookies.append(
        policy.set(names.csrf, writer.csrf.token_for(state_id), max_age=age, http_only=False)
    )
    return tuple(cookies)


def clear_session(writer: CookieWriter) -> tuple[bytes, ...]:
    """Deletions for every auth cookie, each repeating the attributes it was set with."""
    names, policy = writer.names, writer.policy
    return (
        policy.delete(names.access),
        policy.delete(names.type),
        policy.delete(names.state),
        policy.delete(names.refresh),
        policy.delete(names.csrf, http_only=False),
    )
