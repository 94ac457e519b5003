"""The contract between the middleware and the app's refresh callback.

Names follow React Auth Kit's ``refreshApiCallback``: the callback receives a
:class:`RefreshParam` and answers with a :class:`RefreshResult`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

__all__ = ["RefreshCallback", "RefreshParam", "RefreshResult"]


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

    On success ``new_auth_token`` is required and is verified like any incoming token.
    ``new_refresh_token`` replaces the refresh cookie when given (rotation), otherwise the
    current one is kept. ``new_auth_user_state`` replaces the user state when not None.
    ``new_auth_token_expire_in`` and ``new_refresh_token_expires_in`` (seconds) cap the
    cookies' Max-Age; the access cookie never outlives the token's own ``exp``.
    """

    is_success: bool
    new_auth_token: str | None = None
    new_auth_token_type: str = "Bearer"  # noqa: S105 - a token type, not a secret
    new_refresh_token: str | None = None
    new_auth_token_expire_in: int | None = None
    new_refresh_token_expires_in: int | None = None
    new_auth_user_state: Any = None


RefreshCallback: TypeAlias = Callable[[RefreshParam], "Awaitable[RefreshResult] | RefreshResult"]
