"""The ID token of a sign-in, verified as OpenID Connect Core §3.1.3.7 requires."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from ..errors import ProviderError
from ..tokens import TokenVerifier
from .jwks import JWKSKeySet

__all__ = ["verified_id_claims"]


async def verified_id_claims(
    *,
    keys: JWKSKeySet,
    client_id: str,
    issuer: str,
    scope: str,
    leeway: float,
    now: float,
    body: Mapping[str, Any],
    nonce: str,
    subject: str | None = None,
) -> dict[str, Any] | None:
    """The ID token's verified claims, or None without one (only when ``openid`` was not
    asked for: an OpenID sign-in without an ID token is refused, or nothing would bind the
    answer to this sign-in's ``nonce``). ``subject``, when known (the access token's or
    userinfo's ``sub``), must be the ID token's. Raises :class:`ProviderError`."""
    id_token = body.get("id_token")
    if id_token is None:
        if "openid" in scope.split():
            raise ProviderError(
                "the token endpoint answered without an id_token although the openid scope "
                "was requested (OIDC Core §3.1.3.3)"
            )
        return None
    if not isinstance(id_token, str):
        raise ProviderError("id_token is not a string")
    verifier = TokenVerifier(
        key=keys, audience=client_id, issuer=issuer, leeway=leeway, cache_size=0
    )
    await verifier.reload_keys_for(id_token, trusted=True)
    claims = verifier.verify(id_token, now)
    if not isinstance(claims.get("nonce"), str) or not hmac.compare_digest(
        claims["nonce"].encode(), nonce.encode()
    ):
        raise ProviderError("the ID token's nonce does not match this sign-in")
    # OIDC Core §3.1.3.7 (4, 5): with several audiences, azp names the party it was issued
    # to, and it must be us; an azp present at all must be us.
    audience, azp = claims.get("aud"), claims.get("azp")
    if isinstance(audience, list) and len(audience) > 1 and azp is None:
        raise ProviderError("the ID token has several audiences and no azp")
    if azp is not None and azp != client_id:
        raise ProviderError(f"the ID token was issued to another client (azp {azp!r})")
    id_subject = claims.get("sub")
    if not isinstance(id_subject, str) or not id_subject:
        raise ProviderError("the ID token has no sub")
    # The ID token says who signed in, the access token whose session this is: the same user.
    if subject is not None and subject != id_subject:
        raise ProviderError("the ID token's sub is not the access token's")
    return dict(claims)
