"""The built-in issuer's identifiers: a session family's id, and the opaque refresh tokens
that name their family."""

from __future__ import annotations

import re
import secrets

__all__ = ["family_of", "idle_of", "is_family_id", "new_family_id", "new_refresh_token"]

# A family id as new_family_id makes them (base64url), within a bound.
_FAMILY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


_RANDOM_ID_CHARS = 22  # len(secrets.token_urlsafe(16))


def new_family_id(idle_ttl: int | None = None) -> str:
    """A new family id. A session signed in with an idle limit of its own (shorter than
    the issuer's) carries it in its id, ``<22 random chars>i<seconds>``: every rotation
    reads it there, so no store needs a field for it, and it is authentic, since the
    store finds a refresh token only by the id of the whole token (which names the
    family) and the access token's ``sid`` is signed."""
    family_id = secrets.token_urlsafe(16)
    return family_id if idle_ttl is None else f"{family_id}i{idle_ttl}"


def idle_of(family_id: str | None) -> int | None:
    """The idle limit a family id carries (see :func:`new_family_id`), or None."""
    if family_id is None or len(family_id) <= _RANDOM_ID_CHARS + 1:
        return None
    mark, digits = family_id[_RANDOM_ID_CHARS], family_id[_RANDOM_ID_CHARS + 1 :]
    return int(digits) if mark == "i" and digits.isdigit() and len(digits) <= 10 else None


def new_refresh_token(family_id: str) -> str:
    """An opaque refresh token that names its family (``<family id>.<secret>``), so that
    a sharded store finds the family's slot from the token alone. The family id is not a
    secret (it is the access token's ``sid``); the token's id in the store covers all of it."""
    return f"{family_id}.{secrets.token_urlsafe(32)}"


def is_family_id(value: str) -> bool:
    """Whether ``value`` has the form of a family id this issuer makes."""
    return _FAMILY_ID.fullmatch(value) is not None


def family_of(refresh_token: str) -> str | None:
    """The family a refresh token names, or None (an earlier version's token, or junk)."""
    family_id, dot, secret = refresh_token.partition(".")
    return family_id if dot and secret and _FAMILY_ID.fullmatch(family_id) else None
