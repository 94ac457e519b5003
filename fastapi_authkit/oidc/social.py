"""Social sign-in: the provider says who signed in, the issuer keeps the session here."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from ..errors import AuthKitError, ConfigurationError, ProviderError, StoreUnavailableError
from .discovery import ProviderMetadata
from .http import ProviderHTTP
from .identity import AppUser, IdentityHook, IdentityRefused, ProviderIdentity
from .idtoken import verified_id_claims
from .jwks import JWKSKeySet

__all__ = ["SocialClient", "app_user", "provider_identity", "sign_in_here"]

logger = logging.getLogger("fastapi_authkit")


class SocialClient(Protocol):
    """What a social sign-in needs of its client."""

    name: str
    issuer: str
    client_id: str
    scope: str
    keys: JWKSKeySet
    userinfo_endpoint: str | None
    discovered: bool  # False for a plain OAuth 2.0 provider whose endpoints were given
    subject_claim: str
    http: ProviderHTTP
    session: Any  # the Issuer (its sign_in starts the session)
    on_identity: IdentityHook | None  # set with session
    fetch_userinfo: bool  # with OpenID Connect, also ask discovery's userinfo_endpoint

    async def metadata(self) -> ProviderMetadata: ...


async def _userinfo_url(client: SocialClient) -> str | None:
    """The userinfo endpoint to ask: the one given, else (OpenID Connect) discovery's."""
    if client.userinfo_endpoint is not None:
        return client.userinfo_endpoint
    if client.discovered and client.fetch_userinfo:
        return (await client.metadata()).userinfo_endpoint
    return None


async def _userinfo(client: SocialClient, url: str, access_token: str) -> dict[str, Any]:
    status, body = await client.http.get(url, {"authorization": f"Bearer {access_token}"})
    error = body.get("error") if isinstance(body, dict) else None
    # Some providers answer a refused token with 200 and an OAuth error body (GitHub-style):
    # an error is a refusal whatever the status, never a user's profile.
    if isinstance(error, str):
        description = body.get("error_description")
        raise ProviderError(
            f"the userinfo endpoint refused the access token it was just given: HTTP "
            f"{status} {error!r}"
            + (f" ({description})" if isinstance(description, str) else "")
            + (
                "; if the provider issues this client's access tokens for another API, "
                "pass fetch_userinfo=False to use the ID token's claims only"
                if client.discovered and client.userinfo_endpoint is None
                else ""
            )
        )
    if status != 200 or not isinstance(body, dict):
        raise ProviderError(f"the userinfo endpoint answered HTTP {status}, not a JSON object")
    return body


def _subject(value: object, claim: str) -> str:
    # GitHub's user id is a number: as a string it is the same stable identifier.
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise ProviderError(f"the userinfo answer has no {claim!r} to identify the user by")
    return str(value)


async def provider_identity(
    client: SocialClient,
    *,
    body: Mapping[str, Any],
    access_token: str | None,
    nonce: str,
    leeway: float,
    now: float,
) -> ProviderIdentity:
    """Who signed in, from the token endpoint's answer: the verified ID token (OpenID
    Connect) and the userinfo endpoint's answer to the access token (the one given, else,
    with OpenID Connect and ``fetch_userinfo``, discovery's; for the ID token's ``sub``
    only: OIDC Core §5.3.2). Raises :class:`ProviderError` when the answer does not verify."""
    if not client.discovered:
        # No openid asked, no keys to verify one with: an ID token is not the identity here.
        body = {name: value for name, value in body.items() if name != "id_token"}
    claims = await verified_id_claims(
        keys=client.keys,
        client_id=client.client_id,
        issuer=client.issuer,
        scope=client.scope,
        leeway=leeway,
        now=now,
        body=body,
        nonce=nonce,
    )
    userinfo: dict[str, Any] | None = None
    # After the ID token's checks: a forged or replayed answer spends no provider call.
    url = await _userinfo_url(client)
    if url is not None:
        if access_token is None:
            raise ProviderError("the token endpoint answered without an access_token")
        userinfo = await _userinfo(client, url, access_token)
    if claims is not None:
        subject = claims["sub"]
        # OIDC Core §5.3.2: a userinfo answer for another user than the ID token's is refused.
        if userinfo is not None and userinfo.get("sub") != subject:
            raise ProviderError("the userinfo answer's sub is not the ID token's")
    elif userinfo is not None:
        subject = _subject(userinfo.get(client.subject_claim), client.subject_claim)
    else:
        raise ProviderError("the provider said nothing about who signed in")
    return ProviderIdentity(
        provider=client.name,
        issuer=client.issuer,
        subject=subject,
        id_claims=claims or {},
        userinfo=userinfo,
    )


async def app_user(hook: IdentityHook, identity: ProviderIdentity) -> AppUser:
    """The hook's answer for ``identity``; raises :class:`IdentityRefused` when it refuses."""
    answer = hook(identity)
    if inspect.isawaitable(answer):
        answer = await answer
    if answer is None:
        raise IdentityRefused()
    if not isinstance(answer, AppUser) or not isinstance(answer.subject, str) or not answer.subject:
        raise TypeError(
            "on_identity must return AppUser(subject, user_state=...) with a non-empty "
            f"subject, or None to refuse; it returned {answer!r}"
        )
    return answer


def _problem(status: int, detail: str, *, retry_after: int | None = None) -> Response:
    headers = {"cache-control": "no-store"}
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


async def sign_in_here(
    request: Request,
    client: SocialClient,
    *,
    body: Mapping[str, Any],
    access_token: str | None,
    nonce: str,
    leeway: float,
    now: float,
    next_path: str,
) -> Response:
    """The end of a verified code exchange in social sign-in: the provider's identity to
    the hook, its user signed in by the issuer (a session of this app's, as a password
    sign-in starts), and the redirect to ``next_path``. No provider token is kept."""
    try:
        identity = await provider_identity(
            client, body=body, access_token=access_token, nonce=nonce, leeway=leeway, now=now
        )
    except AuthKitError as exc:
        logger.error("sign-in failed, the identity provider's answer is unusable: %s", exc)
        return _problem(502, "the identity provider's answer does not verify here")
    if client.on_identity is None:
        raise ConfigurationError("session= needs on_identity=")  # OIDCClient checks it
    try:
        user = await app_user(client.on_identity, identity)
    except IdentityRefused as exc:
        logger.info(
            "sign-in refused by on_identity for %s subject %r: %s",
            identity.provider,
            identity.subject,
            exc.detail,
        )
        return _problem(403, exc.detail)
    try:
        await client.session.sign_in(request, user.subject, user_state=user.user_state)
    except StoreUnavailableError as exc:
        logger.warning("sign-in failed, the session store is unavailable: %s", exc)
        return _problem(503, "sign-in is unavailable; try again shortly", retry_after=5)
    return RedirectResponse(next_path, status_code=303)
