"""Sign-in through the provider: the authorization-code flow with PKCE (RFC 7636), ending in
:func:`~fastapi_authkit.sign_in`.

``GET {prefix}/login?next=/path`` sends the browser to the provider with a fresh ``state``,
``nonce`` and PKCE challenge, remembered in a short-lived HttpOnly cookie (SameSite=Lax, so
it comes back on the provider's top-level redirect). ``GET {prefix}/callback`` checks the
``state`` against it, exchanges the code (with the PKCE verifier) at the token endpoint,
verifies the ID token (signature, ``iss``, ``aud`` = client id, ``nonce``) and the access
token, signs in and redirects to ``next`` (a local path; anything else becomes ``/``).

Every failure is a clear answer, never a 500: 400 for a sign-in that cannot be completed
(refused at the provider, expired, started in another tab, code reused), 503 when the
provider cannot be reached, 502 when it answers something that does not verify here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Final, NamedTuple, Protocol
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from ..cookies import CookiePolicy
from ..errors import AuthKitError, ProviderError
from ..localpath import is_local_path
from ..state import get_auth_state, sign_in
from ..tokens import TokenVerifier
from .discovery import ProviderMetadata
from .grant import TokenEndpoint, token_result
from .jwks import JWKSKeySet

__all__ = ["sign_in_router"]

logger = logging.getLogger("fastapi_authkit")


class SignInClient(Protocol):
    """What the sign-in routes need of an :class:`~fastapi_authkit.oidc.OIDCClient` (a
    protocol, so that this module does not import the client that builds its router)."""

    issuer: str
    client_id: str
    scope: str
    resource: str | None
    redirect_uri: str | None
    keys: JWKSKeySet
    token_endpoint: TokenEndpoint
    user_state: Callable[[Mapping[str, Any]], Any]

    async def metadata(self) -> ProviderMetadata: ...


# Long enough to type a password and pass a second factor; short enough to be useless later.
_TRANSACTION_SECONDS: Final = 600


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _local_path(value: str | None) -> str:
    """``value`` when it is a path on this site, else ``/`` (no open redirect)."""
    return value if is_local_path(value) else "/"


class _Transaction(NamedTuple):
    state: str
    nonce: str
    verifier: str
    next: str

    def dumps(self) -> str:
        return ".".join((self.state, self.nonce, self.verifier, _b64(self.next.encode())))

    @classmethod
    def loads(cls, value: str | None) -> _Transaction | None:
        parts = (value or "").split(".")
        if len(parts) != 4 or not all(parts[:3]):
            return None
        try:
            padded = parts[3] + "=" * (-len(parts[3]) % 4)
            next_path = base64.urlsafe_b64decode(padded).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return cls(parts[0], parts[1], parts[2], _local_path(next_path))


def _problem(status: int, detail: str, *, retry_after: int | None = None) -> JSONResponse:
    headers = {"cache-control": "no-store"}
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def sign_in_router(client: SignInClient, *, prefix: str = "/auth") -> APIRouter:
    """The login and callback routes for ``client`` (mount with ``app.include_router``)."""
    router = APIRouter(prefix=prefix)

    def policy_and_name(request: Request) -> tuple[CookiePolicy, str]:
        store = get_auth_state(request).store
        policy = CookiePolicy(
            domain=store.cookie_domain, secure=store.cookie_secure, samesite="lax", path="/"
        )
        return policy, f"{store.names.access}_oidc"

    def redirect_uri(request: Request) -> str:
        return client.redirect_uri or str(request.url_for("fastapi_authkit_oidc_callback"))

    @router.get("/login", name="fastapi_authkit_oidc_login", include_in_schema=False)
    async def login(
        request: Request, next_path: Annotated[str | None, Query(alias="next")] = None
    ) -> Response:
        try:
            metadata = await client.metadata()
        except ProviderError as exc:
            logger.warning("sign-in not started, the identity provider is unavailable: %s", exc)
            return _problem(503, "the identity provider is unavailable", retry_after=5)
        if metadata.authorization_endpoint is None:
            return _problem(502, "the identity provider has no authorization endpoint")
        transaction = _Transaction(
            secrets.token_urlsafe(24),
            secrets.token_urlsafe(24),
            secrets.token_urlsafe(48),  # RFC 7636 §4.1: 43-128 characters
            _local_path(next_path),
        )
        challenge = _b64(hashlib.sha256(transaction.verifier.encode()).digest())
        params = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": redirect_uri(request),
            "scope": client.scope,
            "state": transaction.state,
            "nonce": transaction.nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if client.resource:
            params["resource"] = client.resource
        endpoint = metadata.authorization_endpoint
        separator = "&" if "?" in endpoint else "?"
        response = RedirectResponse(endpoint + separator + urlencode(params), status_code=302)
        policy, name = policy_and_name(request)
        cookie = policy.set(name, transaction.dumps(), max_age=_TRANSACTION_SECONDS)
        response.headers.append("set-cookie", cookie.decode("latin-1"))
        response.headers["cache-control"] = "no-store"
        return response

    @router.get("/callback", name="fastapi_authkit_oidc_callback", include_in_schema=False)
    async def callback(request: Request) -> Response:
        policy, name = policy_and_name(request)
        query = request.query_params
        transaction = _Transaction.loads(request.cookies.get(name))
        if "error" in query:
            return _problem(400, f"the identity provider refused the sign-in: {query['error']}")
        state = query.get("state", "")
        if (
            transaction is None
            or not hmac.compare_digest(state.encode(), transaction.state.encode())
            or not query.get("code")
        ):
            return _problem(400, "this sign-in expired or was started elsewhere; start again")
        form = {
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": redirect_uri(request),
            "code_verifier": transaction.verifier,
        }
        if client.resource:
            form["resource"] = client.resource
        try:
            answer = await client.token_endpoint.post(form)
            result = token_result(answer)
        except ProviderError as exc:
            logger.warning("sign-in failed at the token endpoint: %s", exc)
            return _problem(503, "the identity provider is unavailable", retry_after=5)
        if not result.is_success:
            return _problem(400, "the identity provider refused the code; start again")
        store = get_auth_state(request).store
        try:
            if result.new_auth_token is None:
                raise ProviderError("the token endpoint answered without an access_token")
            user_state = await _verified_user_state(
                client, store.clock(), store.verifier.leeway, answer.body, transaction.nonce
            )
            await store.verifier.reload_keys_for(result.new_auth_token, trusted=True)
            sign_in(
                request,
                auth={"token": result.new_auth_token, "type": result.new_auth_token_type},
                refresh=result.new_refresh_token,
                refresh_expires_in=result.new_refresh_token_expires_in,
                user_state=user_state,
            )
        except AuthKitError as exc:
            logger.error("sign-in failed, the identity provider's answer is unusable: %s", exc)
            return _problem(502, "the identity provider's answer does not verify here")
        response = RedirectResponse(transaction.next, status_code=303)
        response.headers.append("set-cookie", policy.delete(name).decode("latin-1"))
        return response

    return router


async def _verified_user_state(
    client: SignInClient, now: float, leeway: float, body: dict[str, Any], nonce: str
) -> Any:
    """The user state from the ID token, verified (OIDC Core §3.1.3.7), or None without one."""
    id_token = body.get("id_token")
    if id_token is None:
        return None
    if not isinstance(id_token, str):
        raise ProviderError("id_token is not a string")
    verifier = TokenVerifier(
        key=client.keys,
        audience=client.client_id,
        issuer=client.issuer,
        leeway=leeway,
        cache_size=0,
    )
    await verifier.reload_keys_for(id_token, trusted=True)
    claims = verifier.verify(id_token, now)
    if not isinstance(claims.get("nonce"), str) or not hmac.compare_digest(
        claims["nonce"].encode(), nonce.encode()
    ):
        raise ProviderError("the ID token's nonce does not match this sign-in")
    return client.user_state(claims)
