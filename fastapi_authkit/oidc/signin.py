"""Sign-in through the provider: the authorization-code flow with PKCE (RFC 7636), ending in
:func:`~fastapi_authkit.sign_in`.

``GET {prefix}/login?next=/path`` sends the browser to the provider with a fresh ``state``,
``nonce`` and PKCE challenge, remembered in a short-lived transaction cookie: sealed with the
store's ``secret_key`` (see :mod:`.transaction`), HttpOnly, host-only, ``__Host-`` when the
store's cookies are Secure, SameSite=Lax (so it comes back on the provider's top-level
redirect). It asks for ``offline_access`` (with ``prompt=consent``, OIDC Core §11) unless
the client was told the provider issues no refresh tokens.

``GET {prefix}/callback`` reads that cookie with the kit's strict parser, checks the
``state`` against it, claims the ``state`` once (a used or unknown one never reaches the
token endpoint), exchanges the code (with the PKCE verifier), verifies the ID token
(signature, ``iss``, ``aud`` = client id, ``azp``, ``nonce``, the same ``sub`` as the access
token) and the access token, signs in and redirects to ``next`` (a local path; anything else
becomes ``/``). The transaction cookie is deleted whatever the outcome.

Every failure is a clear answer, never a 500: 400 for a sign-in that cannot be completed
(refused at the provider, expired, started in another tab or on another site, replayed, code
reused), 503 when the provider cannot be reached or too many sign-ins are being completed at
once, 502 when it answers something that does not verify here or refuses this client (a
configuration error, logged as such, that retrying does not cure).
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Protocol
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from ..config import AuthStore
from ..cookies import CookiePolicy, cookie_header, parse_cookie_header
from ..errors import AuthKitError, ConfigurationError, ProviderError, StoreUnavailableError
from ..localpath import is_local_path
from ..state import get_auth_state, sign_in
from ..stores.base import SessionStore
from ..tokens.verifier import EXTERNAL_LEEWAY, TokenVerifier
from .discovery import ProviderMetadata
from .grant import ClientRefusedError, GrantRefusedError, TokenEndpoint, token_result
from .idtoken import verified_id_claims
from .jwks import JWKSKeySet
from .social import SocialClient, sign_in_here
from .transaction import Transaction, TransactionCodec, UsedStates, state_key

__all__ = ["sign_in_router"]

logger = logging.getLogger("fastapi_authkit")

DEFAULT_PREFIX = "/auth"


class SignInClient(SocialClient, Protocol):
    """What the sign-in routes need of an :class:`~fastapi_authkit.oidc.OIDCClient` (a
    protocol, so that this module does not import the client that builds its router)."""

    issuer: str
    client_id: str
    scope: str
    resource: str | None
    redirect_uri: str | None
    refresh_tokens: bool
    authorization_params: Mapping[str, str | None]
    max_concurrent_signins: int
    keys: JWKSKeySet
    token_endpoint: TokenEndpoint
    user_state: Callable[[Mapping[str, Any]], Any]


class NoRefreshTokenError(ProviderError):
    """The provider completed a sign-in without a refresh token although one is expected."""


def _local_path(value: str | None) -> str:
    """``value`` when it is a path on this site, else ``/`` (no open redirect)."""
    return value if is_local_path(value) else "/"


def _problem(status: int, detail: str, *, retry_after: int | None = None) -> JSONResponse:
    headers = {"cache-control": "no-store"}
    if retry_after is not None:
        headers["retry-after"] = str(retry_after)
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def transaction_cookie_name(access_name: str, secure: bool, prefix: str = DEFAULT_PREFIX) -> str:
    """``{auth_name}_oidc`` (from the access cookie's name), as ``__Host-`` when the
    store's cookies are Secure: a sibling subdomain or a plain-http page cannot set (toss) a
    ``__Host-`` cookie. Routes under another prefix than ``/auth`` (a second provider) get
    their own, named after it."""
    base = access_name
    for cookie_prefix in ("__host-", "__secure-"):
        if base.lower().startswith(cookie_prefix):
            base = base[len(cookie_prefix) :]
    if prefix != DEFAULT_PREFIX:
        base += "_" + re.sub(r"[^A-Za-z0-9]+", "_", prefix).strip("_")
    return f"__Host-{base}_oidc" if secure else f"{base}_oidc"


@dataclass(frozen=True, slots=True)
class _Site:
    """What the sign-in routes use of the configuration the middleware was given (the
    routes reach it through the request: they are mounted apart from the middleware)."""

    clock: Callable[[], float]
    verifier: TokenVerifier
    codec: TransactionCodec  # seals the transaction cookie with the store's secret_key
    cookie: str  # the transaction cookie's name
    # Host-only (no Domain): the callback comes back to this host, and __Host- needs it.
    policy: CookiePolicy
    # Where a transaction's state is claimed across workers: the store's shared store, else
    # the issuer's (social sign-in: its sessions are shared, and the refresh flights are its
    # own, so the store was given none); None in one process.
    shared: SessionStore | None

    @classmethod
    def of(cls, store: AuthStore, prefix: str) -> _Site:
        shared = store.refresh_route.shared
        if shared is None and store.token_issuer is not None:
            shared = store.token_issuer.shared_store
        return cls(
            clock=store.clock,
            verifier=store.verifier,
            codec=TransactionCodec(store.secret_keys),
            cookie=transaction_cookie_name(store.names.access, store.cookie_secure, prefix),
            policy=CookiePolicy(domain=None, secure=store.cookie_secure, samesite="lax", path="/"),
            shared=shared,
        )


def authorization_request(client: SignInClient, metadata: ProviderMetadata) -> dict[str, str]:
    """The scope and extra parameters of the authorization request: ``offline_access``
    (unless the client expects no refresh tokens, or discovery lists scopes without it)
    and, with it, ``prompt=consent`` unless discovery lists prompt values without
    ``consent`` (OIDC Core §11: providers grant offline access only on consent); then the
    client's ``authorization_params`` (a None value removes a parameter)."""
    scopes = client.scope.split()
    supported = metadata.scopes_supported
    wants_offline = supported is None or "offline_access" in supported
    if client.refresh_tokens and wants_offline and "offline_access" not in scopes:
        scopes.append("offline_access")
    params: dict[str, str] = {"scope": " ".join(scopes)}
    prompts = metadata.prompt_values_supported
    if "offline_access" in scopes and (prompts is None or "consent" in prompts):
        params["prompt"] = "consent"
    for name, value in client.authorization_params.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    return params


def sign_in_router(client: SignInClient, *, prefix: str = DEFAULT_PREFIX) -> APIRouter:
    """The login and callback routes for ``client`` (mount with ``app.include_router``).
    Their names are ``fastapi_authkit_oidc_login`` and ``fastapi_authkit_oidc_callback``,
    followed by the prefix when it is not ``/auth`` (one pair per provider)."""
    router = APIRouter(prefix=prefix)
    suffix = "" if prefix == DEFAULT_PREFIX else prefix
    login_name = "fastapi_authkit_oidc_login" + suffix
    callback_name = "fastapi_authkit_oidc_callback" + suffix
    used = UsedStates()
    exchanges = 0  # code exchanges in flight in this process, at most max_concurrent_signins
    owner = secrets.token_hex(8)

    def redirect_uri(request: Request) -> str:
        return client.redirect_uri or str(request.url_for(callback_name))

    @router.get("/login", name=login_name, include_in_schema=False)
    async def login(
        request: Request, next_path: Annotated[str | None, Query(alias="next")] = None
    ) -> Response:
        store = get_auth_state(request).store
        if client.session is not None and store.token_issuer is not client.session:
            raise ConfigurationError(
                f"{client!r} signs into the issuer passed as session=, but the middleware's "
                "store does not verify its tokens: create_store(token_issuer=issuer) with the "
                "same issuer"
            )
        try:
            metadata = await client.metadata()
        except ProviderError as exc:
            logger.warning("sign-in not started, the identity provider is unavailable: %s", exc)
            return _problem(503, "the identity provider is unavailable", retry_after=5)
        if metadata.authorization_endpoint is None:
            return _problem(502, "the identity provider has no authorization endpoint")
        site = _Site.of(store, prefix)
        transaction = Transaction.start(_local_path(next_path), site.clock())
        params = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": redirect_uri(request),
            "state": transaction.state,
            "nonce": transaction.nonce,
            "code_challenge": transaction.challenge,
            "code_challenge_method": "S256",
        }
        if client.resource:
            params["resource"] = client.resource
        params.update(authorization_request(client, metadata))
        endpoint = metadata.authorization_endpoint
        separator = "&" if "?" in endpoint else "?"
        response = RedirectResponse(endpoint + separator + urlencode(params), status_code=302)
        sealed = site.codec.seal(transaction, site.cookie)
        cookie = site.policy.set(
            site.cookie, sealed, max_age=int(transaction.expires_at - transaction.issued_at)
        )
        response.headers.append("set-cookie", cookie.decode("latin-1"))
        response.headers["cache-control"] = "no-store"
        return response

    @router.get("/callback", name=callback_name, include_in_schema=False)
    async def callback(request: Request) -> Response:
        site = _Site.of(get_auth_state(request).store, prefix)
        response = await _complete(request, site)
        # Whatever the outcome, the transaction is over: a second try starts again.
        response.headers.append("set-cookie", site.policy.delete(site.cookie).decode("latin-1"))
        response.headers["cache-control"] = "no-store"
        return response

    async def _complete(request: Request, site: _Site) -> Response:
        nonlocal exchanges
        query = request.query_params
        # The kit's strict parser: a duplicated (tossed beside ours) cookie counts as absent.
        name = site.cookie
        cookies = parse_cookie_header(
            cookie_header(request.scope["headers"]), frozenset({name.encode()})
        )
        now = site.clock()
        transaction = site.codec.open(cookies.get(name), name, now)
        if "error" in query:
            return _problem(400, f"the identity provider refused the sign-in: {query['error']}")
        state = query.get("state", "")
        if (
            transaction is None
            or not hmac.compare_digest(state.encode(), transaction.state.encode())
            or not query.get("code")
        ):
            return _problem(400, "this sign-in expired or was started elsewhere; start again")
        if exchanges >= client.max_concurrent_signins:
            logger.warning(
                "sign-in refused: %d code exchanges already in flight (max_concurrent_signins)",
                exchanges,
            )
            return _problem(503, "too many sign-ins at once; start again", retry_after=1)
        if not await _first_use(site.shared, transaction, now):
            logger.warning("sign-in refused: a callback replayed a transaction already used")
            return _problem(400, "this sign-in was already used; start again")
        exchanges += 1
        try:
            return await _exchange(request, site, transaction, query["code"])
        finally:
            exchanges -= 1

    async def _first_use(shared: SessionStore | None, transaction: Transaction, now: float) -> bool:
        if not used.claim(transaction.state, transaction.expires_at, now):
            return False
        # Across workers: a claim that is never finished, held until the transaction expires.
        if shared is None:
            return True
        try:
            claim = await shared.flight_claim(
                "oidc-state:" + state_key(transaction.state),
                owner,
                now=now,
                lease=max(1.0, transaction.expires_at - now),
            )
        except StoreUnavailableError as exc:
            logger.warning("sign-in refused, the shared store is unavailable: %s", exc)
            return False
        return claim.status == "claimed"

    async def _exchange(
        request: Request, site: _Site, transaction: Transaction, code: str
    ) -> Response:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri(request),
            "code_verifier": transaction.verifier,
        }
        if client.resource:
            form["resource"] = client.resource
        try:
            answer = await client.token_endpoint.post(form)
            result = token_result(answer)
        except ClientRefusedError as exc:
            logger.error(
                "sign-in impossible, this client is misconfigured at the identity provider: %s", exc
            )
            return _problem(
                502,
                "sign-in is misconfigured at the identity provider; retrying will not help "
                "until the site's operator fixes it",
            )
        except GrantRefusedError as exc:
            return _code_refused(exc)
        except ProviderError as exc:
            logger.warning("sign-in failed at the token endpoint: %s", exc)
            return _problem(503, "the identity provider is unavailable", retry_after=5)
        if not result.is_success:
            return _code_refused("the token endpoint refused the code: 'invalid_grant'")
        # The tokens were issued during the exchange: checked against a clock read before it,
        # a token issued in the next second would be "issued in the future".
        now = site.clock()
        if client.session is not None:
            return await sign_in_here(
                request,
                client,
                body=answer.body,
                access_token=result.new_auth_token,
                nonce=transaction.nonce,
                # The store's leeway is for the issuer's own tokens (0 by default); the
                # provider's clock is another machine's.
                leeway=max(site.verifier.leeway, EXTERNAL_LEEWAY),
                now=now,
                next_path=_local_path(transaction.next),
            )
        try:
            access = result.new_auth_token
            if access is None:
                raise ProviderError("the token endpoint answered without an access_token")
            await site.verifier.reload_keys_for(access, trusted=True)
            access_claims = site.verifier.verify(access, now)
            user_state = await _verified_user_state(
                client, now, site.verifier.leeway, answer.body, transaction.nonce, access_claims
            )
            if client.refresh_tokens and result.new_refresh_token is None:
                raise NoRefreshTokenError(
                    "the identity provider issued no refresh token, so this session would "
                    "end when its access token expires: allow the refresh_token grant and "
                    "offline_access for this client at the provider (or pass the parameters "
                    "it needs in authorization_params), or pass refresh_tokens=False to "
                    "OIDCClient if it never issues one"
                )
            sign_in(
                request,
                auth={"token": access, "type": result.new_auth_token_type},
                refresh=result.new_refresh_token,
                refresh_expires_in=result.new_refresh_token_expires_in,
                user_state=user_state,
            )
        except NoRefreshTokenError as exc:
            logger.error("sign-in refused: %s", exc)
            return _problem(502, "the identity provider issued no refresh token for this sign-in")
        except AuthKitError as exc:
            logger.error("sign-in failed, the identity provider's answer is unusable: %s", exc)
            return _problem(502, "the identity provider's answer does not verify here")
        return RedirectResponse(_local_path(transaction.next), status_code=303)

    return router


def _code_refused(reason: object) -> Response:
    # A used, expired or mistyped code (or its PKCE verifier): this sign-in is over, a
    # retry of the same callback cannot succeed, a new one can.
    logger.warning("sign-in refused by the identity provider: %s", reason)
    return _problem(400, "the identity provider refused the code; start again")


async def _verified_user_state(
    client: SignInClient,
    now: float,
    leeway: float,
    body: dict[str, Any],
    nonce: str,
    access_claims: Mapping[str, Any],
) -> Any:
    """The user state from the verified ID token, or None without one."""
    claims = await verified_id_claims(
        keys=client.keys,
        client_id=client.client_id,
        issuer=client.issuer,
        scope=client.scope,
        leeway=leeway,
        now=now,
        body=body,
        nonce=nonce,
        subject=access_claims.get("sub"),
    )
    return None if claims is None else client.user_state(claims)
