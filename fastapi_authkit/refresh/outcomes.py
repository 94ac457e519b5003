"""What a refresh came to: renewed, ended, or unavailable (with the successor it kept).

Each outcome carries what the middleware needs to continue the request and to report what
happened to the audit hook; the refresh layer itself reports nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from ..errors import AuthKitError

__all__ = ["ENDED", "Ended", "Outcome", "Renewed", "Successor", "Unavailable", "successor_token"]


@dataclass(frozen=True, slots=True)
class Renewed:
    """A new, verified access token and the exact cookies that carry it.

    ``repeat``: a pair given out before (the issuer's rotation within its grace period,
    another process's published answer), and reported where it was first given."""

    token: str
    token_type: str
    claims: dict[str, Any]
    user_state: Any
    state_id: str
    refresh_token: str
    set_cookies: tuple[bytes, ...]
    repeat: bool = False


@dataclass(frozen=True, slots=True)
class Ended:
    """The session is over: every auth cookie goes.

    ``reason``: ``"callback"`` (the app's callback answered ``is_success=False``), or what
    the issuer's rotation found: ``"reuse"`` (a rotated-out token presented again; ``family``
    names the family it revoked, when the store said whose it was), ``"revoked"`` or
    ``"expired"``. ``repeat`` as for :class:`Renewed`."""

    reason: Literal["callback", "reuse", "revoked", "expired"] = "callback"
    family: Mapping[str, Any] | None = None
    repeat: bool = False


@dataclass(frozen=True, slots=True)
class Successor:
    """A rotated refresh token kept although its access token could not be used: the
    session's state and the cookies that carry it (refresh, state, CSRF; not the access
    cookie)."""

    state_id: str
    user_state: Any
    refresh_token: str
    set_cookies: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Unavailable:
    """No definitive answer (raised, timed out, unusable result, store unreachable):
    nothing may be cleared, the next request tries again. ``successor``: the refresh token
    was rotated all the same, and its cookies must be written. ``cause`` names the exception
    behind ``error`` when there is one (the audit names its type, never its message, which
    may quote what it was given)."""

    error: AuthKitError
    successor: Successor | None = None
    cause: str | None = None


Outcome: TypeAlias = Renewed | Ended | Unavailable

# The answer remembered for a refresh token whose session ended: given again, never reported.
ENDED: Final = Ended(repeat=True)


def successor_token(outcome: Outcome) -> str | None:
    """The refresh token an outcome leads to, when it is one to remember and share."""
    if isinstance(outcome, Renewed):
        return outcome.refresh_token
    if isinstance(outcome, Unavailable) and outcome.successor is not None:
        return outcome.successor.refresh_token
    return None
