"""The ``Authorization: Bearer`` credential as the request reader reads it; pure."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from .decision import CHECK, Reading
from .source import SESSION_CLAIM
from .tokens import MAX_TOKEN_BYTES

__all__ = ["bearer_token", "live_bearer"]


def bearer_token(headers: Collection[tuple[bytes, bytes]]) -> tuple[str | None, str]:
    """The token of the request's one well-formed ``Authorization: Bearer`` header, or
    None and why not (``""`` when there is no such header at all)."""
    values = [v for k, v in headers if k == b"authorization"]
    if len(values) != 1:
        return None, f"{len(values)} Authorization headers" if values else ""
    scheme, _, token = values[0].partition(b" ")
    token = token.strip(b" ")
    if scheme.lower() != b"bearer" or not token or len(token) > MAX_TOKEN_BYTES:
        return None, "malformed Authorization header"
    try:
        return token.decode("ascii"), ""
    except UnicodeDecodeError:
        return None, "token is not ASCII"


def live_bearer(
    reading: Reading,
    claims: dict[str, Any],
    known: Callable[[str, float], bool | None],
    now: float,
    reported: bool,
) -> Reading | None:
    """A verified bearer token of the built-in issuer is an identity only while its session
    is live, by the same check as a cookie session's (``known``, the view of the session
    check): a sign-out everywhere, a revoked session or a reused refresh token ends bearer
    clients too. ``reading`` as it is (live), with ``CHECK`` for the middleware to ask the
    store (not known), or None: over, the header counts as absent and the cookies are read
    instead; never a cookie cleared for it. With ``reported`` (an audit hook listens) an
    ended session goes to the middleware too, which reports it before reading the cookies."""
    family = claims.get(SESSION_CLAIM)
    live = known(family, now) if isinstance(family, str) else False
    if live is True:
        return reading
    if live is None or reported:
        return reading._replace(then=CHECK)
    return None
