"""The contract between the middleware and the app's refresh callback.

Names follow React Auth Kit's ``refreshApiCallback``: the callback receives a
:class:`RefreshParam` and answers with a :class:`RefreshResult`.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

__all__ = ["RefreshCallback", "RefreshParam", "RefreshResult", "RevokeCallback", "check_lifetime"]


def check_lifetime(name: str, value: object) -> None:
    """``value`` must be None or a positive, finite number of seconds: a cookie lifetime.

    Raises :class:`TypeError` or :class:`ValueError` naming ``name``. Zero and negative
    lifetimes are refused because they would silently delete the cookie they size.
    """
    if value is None:
        return
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(
            f"{name} must be a number of seconds or None, got {type(value).__name__} {value!r}"
        )
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds or None, got {value!r}")
    if value <= 0:
        hint = " (an auth server's 0 for 'does not expire' is None here)" if value == 0 else ""
        raise ValueError(
            f"{name} must be a positive number of seconds or None, got {value!r}{hint}: "
            "a cookie with that lifetime would be deleted at once"
        )


def _check_str(name: str, value: object, *, optional: bool) -> None:
    if (value is None and optional) or isinstance(value, str):
        return
    kind = "a str or None" if optional else "a str"
    raise TypeError(f"RefreshResult.{name} must be {kind}, got {type(value).__name__} {value!r}")


@dataclass(frozen=True, slots=True)
class RefreshParam:
    """What the refresh callback is given.

    ``auth_token`` is the current access token (possibly expired; None when the browser
    already dropped it), ``refresh_token`` the refresh cookie's value, and
    ``auth_user_state`` the verified user state (None when absent or tampered).
    """

    auth_token: str | None
    refresh_token: str
    auth_user_state: Any = None


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """What the refresh callback answers.

    ``is_success=False`` is definitive: the session is over and every auth cookie is
    cleared. For a transient failure (the auth server is down), raise instead: nothing is
    cleared and the next request tries again.

    On success ``new_auth_token`` is required (a :class:`ValueError` here without it, unless
    a rotated ``new_refresh_token`` is all there is to keep) and is verified like any
    incoming token.
    ``new_refresh_token`` replaces the refresh cookie when given (rotation), otherwise the
    current one is kept. ``new_auth_user_state`` replaces the user state when not None.
    ``new_auth_token_expire_in`` and ``new_refresh_token_expires_in`` (seconds) cap the
    cookies' Max-Age; the access cookie never outlives the token's own ``exp``.

    The fields are checked here, when the callback builds its answer: a wrong type is a
    :class:`TypeError`, a lifetime that is not a positive, finite number of seconds a
    :class:`ValueError` (an auth server's ``refresh_expires_in: 0`` for "never expires" is
    ``None``). Raised inside the callback, either is a transient failure, logged with its
    message, and nothing is cleared.
    """

    is_success: bool
    new_auth_token: str | None = None
    new_auth_token_type: str = "Bearer"  # noqa: S105 - a token type, not a secret
    new_refresh_token: str | None = None
    new_auth_token_expire_in: int | None = None
    new_refresh_token_expires_in: int | None = None
    new_auth_user_state: Any = None

    def __post_init__(self) -> None:
        if not isinstance(self.is_success, bool):
            raise TypeError(
                "RefreshResult.is_success must be a bool, got "
                f"{type(self.is_success).__name__} {self.is_success!r}"
            )
        _check_str("new_auth_token", self.new_auth_token, optional=True)
        # A rotated refresh token alone is an answer (an auth server that rotated it but
        # whose access token cannot be used here: the kit keeps the successor); nothing is not.
        if self.is_success and self.new_auth_token is None and self.new_refresh_token is None:
            raise ValueError(
                "RefreshResult(is_success=True) needs new_auth_token (the new access token); "
                "for a session that is over answer RefreshResult(is_success=False), and for "
                "a transient failure raise"
            )
        _check_str("new_auth_token_type", self.new_auth_token_type, optional=False)
        _check_str("new_refresh_token", self.new_refresh_token, optional=True)
        check_lifetime("RefreshResult.new_auth_token_expire_in", self.new_auth_token_expire_in)
        check_lifetime(
            "RefreshResult.new_refresh_token_expires_in", self.new_refresh_token_expires_in
        )


RefreshCallback: TypeAlias = Callable[[RefreshParam], "Awaitable[RefreshResult] | RefreshResult"]

RevokeCallback: TypeAlias = Callable[[str], "Awaitable[object] | object"]
"""The revocation hook: ``revoke(refresh_token)``, a method of the refresh callback object
(RFC 7009 token revocation at the auth server), sync or async. ``sign_out`` calls it with
the session's refresh token; raising means "not revoked" (logged, the cookies are cleared
all the same). Its return value is ignored."""
