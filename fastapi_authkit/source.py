"""What ``create_store(token_issuer=...)`` needs from a token source: a protocol.

The built-in issuer (:func:`~fastapi_authkit.create_issuer`) implements it. Configuration
depends on this protocol rather than on the issuer, so the import graph has no cycle: the
issuer's request conveniences (``issuer.sign_in(request, ...)``) live in the request layer,
which sits above the configuration.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, runtime_checkable

from .callback import RefreshParam, RefreshResult
from .clientinfo import ClientInfo
from .stores.base import SessionStore

__all__ = ["SESSION_CLAIM", "Rotate", "Rotation", "SessionCheck", "SessionKnown", "TokenSource"]

# The access-token claim that names the token's session (its family of refresh tokens).
# Not the state id that AuthState.state_id holds (the CSRF token's): that one lives in the
# state cookie.
SESSION_CLAIM: Final = "sid"

# Whether a token's session is still live, asked of the store (the issuer's revocation
# check); and the same answered without I/O from this process's view when it can: True or
# False, or None when the check must ask.
SessionCheck = Callable[[dict[str, Any]], Awaitable[bool]]
SessionKnown = Callable[[str, float], "bool | None"]


@dataclass(frozen=True, slots=True)
class Rotation:
    """What :meth:`TokenSource.rotate` answered: the successor pair (``access_token`` None
    when the session is over), and the ``context`` the pair was sealed with, by this call or
    by the one that rotated the token first (a replay within the grace period).

    ``replay``: the pair was handed out before (to the call that rotated the token first).
    ``ended``: why the session is over, when it is: ``"reuse"`` (a rotated-out token
    presented again: the family is now revoked), ``"revoked"``, ``"expired"`` or
    ``"unknown"``."""

    access_token: str | None
    refresh_token: str | None = None
    refresh_expires_in: int = 0
    context: str = ""
    replay: bool = False
    ended: Literal["reuse", "revoked", "expired", "unknown"] | None = None
    # Whose family it was, when the store said (reuse detection revokes a family that the
    # presented token alone does not name to the caller).
    subject: str | None = None
    family_id: str | None = None


class Rotate(Protocol):
    """:attr:`TokenSource.rotate`: :meth:`TokenSource.refresh` for the kit itself.

    ``subject`` (the old access token's, when there is one) lets the successor be offered in
    the first call to the store; ``context`` is sealed with the pair, so that every process
    handing out this pair (within the grace period) builds the same cookies from it, and
    comes back in :attr:`Rotation.context`. ``client`` made the request that refreshes (the
    session's list records it).
    """

    def __call__(
        self,
        refresh_token: str,
        *,
        subject: str | None,
        context: str,
        now: float,
        client: ClientInfo | None = None,
    ) -> Awaitable[Rotation]: ...


@runtime_checkable
class TokenSource(Protocol):
    """An auth server inside the app: it says how its access tokens are verified, refreshes
    them, and knows whether a session is still live.

    Verification settings: ``token_key`` (a key, or ``{kid: key}``), its one ``algorithm``,
    the ``issuer``/``audience`` claims its tokens carry, their ``typ`` header
    (``token_typ``) and lifetime (``access_ttl``). ``grace`` is the refresh grace period.
    ``revoke`` ends a session on sign-out.
    ``shared_store`` is where concurrent refreshes in several processes meet (None when the
    source's state lives in one process).
    """

    token_key: Any
    algorithm: str
    issuer: str | None
    audience: str | None
    token_typ: str
    access_ttl: float
    grace: float

    @property
    def shared_store(self) -> SessionStore | None: ...

    async def refresh(self, param: RefreshParam) -> RefreshResult:
        """The refresh callback: rotate ``param.refresh_token``."""
        ...

    async def revoke(self, refresh_token: str) -> bool:
        """End the session of ``refresh_token`` (sign-out); False when it was unknown."""
        ...

    async def is_active(self, claims: Mapping[str, Any]) -> bool:
        """The session check: whether the session of a verified access token is still live
        (raises ``StoreUnavailableError`` when that cannot be known now)."""
        ...

    def known_active(self, family_id: str, now: float) -> bool | None:
        """The session check without I/O, from this process's view of the store: True or
        False when certain, None when :meth:`is_active` must ask. The session is named by
        the token's :data:`SESSION_CLAIM` claim."""
        ...

    @property
    def rotate(self) -> Rotate:
        """The kit's own refresh: see :class:`Rotate`."""
        ...
