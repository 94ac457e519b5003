"""What ``create_store(token_issuer=...)`` needs from a token source: a protocol.

The built-in issuer (:func:`~fastapi_authkit.create_issuer`) implements it. Configuration
depends on this protocol rather than on the issuer, so the import graph has no cycle: the
issuer's request conveniences (``issuer.sign_in(request, ...)``) live in the request layer,
which sits above the configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from .callback import RefreshParam, RefreshResult
from .stores.base import SessionStore

__all__ = ["TokenSource"]


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
