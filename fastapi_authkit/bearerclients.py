"""The built-in issuer's token route for mobile apps and services: OAuth 2.0 token responses.

A browser's session lives in cookies that the middleware refreshes; a client that sends
``Authorization: Bearer`` holds its tokens itself, so the app answers it in the body
(RFC 6749 §5.1) when it signs in (:meth:`BearerIssuer.issue_tokens`) and when it refreshes
(:meth:`BearerIssuer.refresh_tokens`, or the ready-made :meth:`BearerIssuer.token_endpoint`
for the standard ``grant_type=refresh_token`` form POST). Rotation is the very one the
cookie refresh uses: reuse detection, the grace period, the late replay of a lost reply.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal
from urllib.parse import parse_qsl

import jwt
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from .clientinfo import client_info
from .errors import InvalidGrantError, StoreUnavailableError
from .events import Refreshed, ReuseDetected, SignedIn
from .sessiontokens import SessionTokens
from .source import SESSION_CLAIM
from .state import get_auth_state
from .tokens import unverified_expiry

__all__ = ["BearerIssuer", "TokenResponse"]

# RFC 6749 §5.1: token responses (and their errors) are never cached.
_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# A refresh token request is a few hundred bytes; anything far larger is not one.
_MAX_BODY: Final = 8192
_MAX_REFRESH_TOKEN: Final = 1024
_FORM: Final = "application/x-www-form-urlencoded"


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """An OAuth 2.0 access token response (RFC 6749 §5.1): FastAPI answers it as that JSON
    body. ``expires_in`` is the access token's remaining lifetime in seconds; the client
    sends ``Authorization: Bearer <access_token>`` and refreshes with ``refresh_token``."""

    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    refresh_token: str


class BearerIssuer(SessionTokens):
    """:class:`~fastapi_authkit.sessiontokens.SessionTokens` plus the answers to clients that
    hold their tokens themselves (see the module docstring); the application-facing
    :class:`~fastapi_authkit.issuer.Issuer` builds on it."""

    async def issue_tokens(
        self,
        conn: HTTPConnection,
        subject: str,
        *,
        idle_ttl: float | None = None,
        absolute_ttl: float | None = None,
    ) -> TokenResponse:
        """Start a session for ``subject`` and return its first pair as a token response
        body: a mobile app's or a service's sign-in, answered after the app has checked
        its credentials (``return await issuer.issue_tokens(request, user.id)``).

        The session is one of the issuer's like a browser's: listed by ``sessions``,
        ended by a sign-out everywhere, ``revoke_session``, reuse of a rotated-out refresh
        token, and its idle and absolute limits (``idle_ttl``/``absolute_ttl`` as for
        ``issuer.sign_in``). Raises :class:`StoreUnavailableError` when the store cannot
        answer (the middleware answers 503 with ``Retry-After``)."""
        state = get_auth_state(conn)
        tokens = await self.issue(
            subject, client=client_info(conn.scope), idle_ttl=idle_ttl, absolute_ttl=absolute_ttl
        )
        about = {"sub": subject, SESSION_CLAIM: tokens.family_id}
        state.record(conn, SignedIn, about=about, jti=_jti(tokens.access_token))
        return self._response(tokens.access_token, tokens.refresh_token)

    async def refresh_tokens(self, conn: HTTPConnection, refresh_token: str) -> TokenResponse:
        """Rotate ``refresh_token`` (a client's, sent in the body of its token request) and
        return the successor pair as a token response body.

        The same rotation as the cookie refresh: the immediate predecessor within
        ``grace``, or within ``late_replay`` while its successor is unused (a reply the
        client never got), receives that successor again; any other rotated-out token is
        reuse and revokes the whole session, its bearer access tokens included at once.
        Raises :class:`~fastapi_authkit.errors.InvalidGrantError` (a 400) for a token that
        is not valid, and :class:`StoreUnavailableError` (503) when the store cannot
        answer."""
        state = get_auth_state(conn)
        if not isinstance(refresh_token, str) or not 0 < len(refresh_token) <= _MAX_REFRESH_TOKEN:
            raise InvalidGrantError("unknown")
        rotation = await self.rotate(refresh_token, client=client_info(conn.scope))
        if rotation.access_token is None or rotation.refresh_token is None:
            if rotation.ended == "reuse":
                about = {"sub": rotation.subject, SESSION_CLAIM: rotation.family_id}
                state.record(conn, ReuseDetected, about=about if rotation.subject else {})
            # Anything else is reported to the client only: anyone can post a token that
            # is not (or no longer) one, and no session changed.
            raise InvalidGrantError(rotation.ended or "unknown")
        if not rotation.replay:
            claims = _claims(rotation.access_token)
            state.record(conn, Refreshed, about=claims, old_jti=None, new_jti=_jti(claims))
        return self._response(rotation.access_token, rotation.refresh_token)

    async def token_endpoint(self, request: Request) -> Response:
        """Answer a client's refresh at the app's token route, as an OAuth 2.0 token
        endpoint does (RFC 6749 §6): a form POST ``grant_type=refresh_token&refresh_token=
        ...`` gets the new pair (200), anything else the standard error body with 400
        (``invalid_request``, ``unsupported_grant_type``, ``invalid_grant``), and a store
        outage 503 with ``Retry-After``; never cached.

        ``app.post("/token")(issuer.token_endpoint)``, or ``return await
        issuer.token_endpoint(request)`` from a route of the app's own. Sign-in is the
        app's own route (a password, a code), which answers with :meth:`issue_tokens`."""
        form = await _form(request)
        if isinstance(form, str):
            return _error("invalid_request", form)
        if form.get("grant_type") != "refresh_token":
            return _error(
                "unsupported_grant_type", "this endpoint answers grant_type=refresh_token"
            )
        token = form.get("refresh_token")
        if not token:
            return _error("invalid_request", "refresh_token is missing")
        try:
            tokens = await self.refresh_tokens(request, token)
        except InvalidGrantError as exc:
            return JSONResponse(exc.body, status_code=400, headers=_NO_STORE)
        except StoreUnavailableError:
            retry_after = str(get_auth_state(request).store.retry_after)
            body = {"error": "temporarily_unavailable", "error_description": "try again later"}
            return JSONResponse(body, 503, headers={**_NO_STORE, "Retry-After": retry_after})
        return JSONResponse(asdict(tokens), headers=_NO_STORE)

    def _response(self, access_token: str, refresh_token: str) -> TokenResponse:
        exp = unverified_expiry(access_token)
        now = self.clock()
        expires_in = self.access_ttl if exp is None else max(0.0, exp - now)
        return TokenResponse(access_token, "Bearer", math.floor(expires_in), refresh_token)


async def _form(request: Request) -> dict[str, str] | str:
    """The token request's parameters, or what is wrong with it (RFC 6749 §3.2: a form,
    each parameter at most once)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != _FORM:
        return f"send the parameters as {_FORM}"
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY:
            return "the request body is too large"
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return "the request body is not a form"
    form = dict(pairs)
    if len(form) != len(pairs):
        return "a parameter is repeated"
    return form


def _error(error: str, description: str) -> JSONResponse:
    body = {"error": error, "error_description": description}
    return JSONResponse(body, status_code=400, headers=_NO_STORE)


def _claims(token: str) -> dict[str, Any]:
    """The claims of a token this issuer has just minted (for its audit event)."""
    claims = jwt.decode(token, options={"verify_signature": False})
    return claims if isinstance(claims, dict) else {}


def _jti(token_or_claims: str | dict[str, Any]) -> str | None:
    claims = _claims(token_or_claims) if isinstance(token_or_claims, str) else token_or_claims
    jti = claims.get("jti")
    return jti if isinstance(jti, str) else None
