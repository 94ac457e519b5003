"""Who a provider says signed in, and what the app makes of it: the social sign-in hook's types."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AppUser", "IdentityHook", "IdentityRefused", "ProviderIdentity"]


@dataclass(frozen=True, slots=True)
class ProviderIdentity:
    """What the provider said about the user who just signed in there, verified.

    ``provider``: the client's ``name`` (which of the app's providers this is);
    ``issuer``: the provider's issuer URL (its identifier); ``subject``: the user's
    identifier at that provider, stable and never reassigned (the ID token's ``sub``, or the
    userinfo answer's ``subject_claim``, as a string). ``(issuer, subject)`` is the key to
    link an account by, never the e-mail address. ``id_claims``: the verified ID token's
    claims (empty without OpenID Connect); ``userinfo``: the userinfo endpoint's answer
    (None when it was not asked); :attr:`claims`: both in one mapping.
    """

    provider: str
    issuer: str
    subject: str
    id_claims: Mapping[str, Any] = field(default_factory=dict)
    userinfo: Mapping[str, Any] | None = None

    @property
    def claims(self) -> dict[str, Any]:
        """The userinfo answer's claims, then the ID token's over them: the ID token is
        signed (verified here), the userinfo answer adds what the token does not carry (a
        provider's ID token often holds only ``sub`` when an access token is issued, the
        scopes' claims being at its userinfo endpoint, OIDC Core §5.4)."""
        return {**(self.userinfo or {}), **self.id_claims}


@dataclass(frozen=True, slots=True)
class AppUser:
    """The hook's answer: the session's subject in this app, and its user state."""

    subject: str
    user_state: Any = None


class IdentityRefused(Exception):
    """Raised by the hook to refuse the sign-in: answered 403 with ``detail``, no session."""

    def __init__(self, detail: str = "this account cannot sign in here") -> None:
        super().__init__(detail)
        self.detail = detail


# The hook: maps the provider's identity to the app's user, or refuses (None or
# IdentityRefused); it may be async (it usually looks the account up).
IdentityHook = Callable[[ProviderIdentity], "AppUser | Awaitable[AppUser | None] | None"]
