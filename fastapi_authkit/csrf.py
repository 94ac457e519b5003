"""Signed double-submit CSRF tokens bound to the session; pure.

The token is an HMAC of the state id (which lives in the signed, HttpOnly state
cookie), so it is the same before and after a token refresh, differs between sessions, and
can be checked without server-side storage. The CSRF cookie only carries the value to page
JavaScript, which echoes it in the ``X-CSRF-Token`` header; the server recomputes rather
than trusting the cookie.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from itsdangerous import Signer

__all__ = ["CsrfSigner"]


class CsrfSigner:
    """Derives and checks CSRF tokens for state ids. Immutable after construction."""

    __slots__ = ("_signer",)

    def __init__(self, secret_keys: Sequence[bytes]) -> None:
        self._signer = Signer(
            list(secret_keys), salt="fastapi-authkit.csrf", digest_method=hashlib.sha256
        )

    def token_for(self, state_id: str) -> str:
        """The CSRF token of session ``state_id``, signed with the newest secret key."""
        return self._signer.get_signature(state_id).decode("ascii")

    def verify(self, state_id: str, token: str) -> bool:
        """Constant-time check against every configured key (old keys stay valid in overlap)."""
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError:
            return False
        return self._signer.verify_signature(state_id, raw)
