"""The built-in issuer as an application uses it: :func:`create_issuer`, and signing a
connection in and out through it.

:class:`Issuer` is the token work of :class:`~fastapi_authkit.sessiontokens.SessionTokens`
(minting, rotation, revocation, which know nothing of requests) with the token responses
for bearer clients (:mod:`fastapi_authkit.bearerclients`), plus the two conveniences a
login and a logout route call, ``await issuer.sign_in(request, subject)`` and
``await issuer.sign_out(request)``. They belong to the request layer: they queue cookie
writes on the connection's :class:`~fastapi_authkit.AuthState`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from starlette.requests import HTTPConnection

from .bearerclients import BearerIssuer, TokenResponse
from .clientinfo import client_info
from .errors import ConfigurationError, StoreUnavailableError
from .events import SignedOut
from .secretvalue import reveal
from .sessiontokens import ACCESS_TOKEN_TYPE, MAX_SESSIONS_LISTED, IssuedTokens
from .source import SESSION_CLAIM
from .state import end_session, get_auth_state, refuse_cross_site, start_session
from .stores.base import SessionInfo, SessionStore
from .tokens import HMAC_ALGORITHMS, check_algorithm, describe_key, prepare_key
from .validation import bool_argument, function, seconds

__all__ = [
    "ACCESS_TOKEN_TYPE",
    "IssuedTokens",
    "Issuer",
    "SessionInfo",
    "TokenResponse",
    "create_issuer",
]

logger = logging.getLogger("fastapi_authkit")

_DAY = 24 * 3600
_LATE_REPLAY = 60.0  # seconds: the default late-replay window


class Issuer(BearerIssuer):
    """Mints, rotates and revokes tokens on a :class:`~fastapi_authkit.stores.SessionStore`,
    and signs connections in and out with them: browsers with cookies, mobile apps and
    services with token responses (``issue_tokens``, ``token_endpoint``).

    Build it with :func:`create_issuer` and hand it to ``create_store(token_issuer=...)``,
    which then verifies its tokens, refreshes through it and checks on every request that
    the session has not been revoked.
    """

    # sign_in and sign_out do I/O (the store), so they are awaited, while the plain sign_in
    # and sign_out only queue cookies and are not. A forgotten await must not pass silently
    # (a 200 that signed nobody in): these are plain methods returning the coroutine,
    # registered on the request's state first, so that the middleware refuses to start a
    # response while it was never awaited (a ConfigurationError naming the call).

    def sign_in(
        self,
        conn: HTTPConnection,
        subject: str,
        *,
        user_state: Any = None,
        persistent: bool = True,
        idle_ttl: float | None = None,
        absolute_ttl: float | None = None,
    ) -> Coroutine[Any, Any, IssuedTokens]:
        """Issue a pair for ``subject`` and :func:`~fastapi_authkit.sign_in` with it:
        ``await issuer.sign_in(request, subject, user_state=...)``.

        ``persistent=False`` ("remember me" unticked) writes session cookies that the
        browser drops when it closes, on this response and on every refresh of the session.
        ``idle_ttl``/``absolute_ttl`` give this session shorter limits than the issuer's
        (a session that ends after 30 idle minutes, say); longer than the issuer's
        ``idle_ttl``/``absolute_ttl`` is a :class:`ValueError`. Every refresh keeps them.

        The session the request already had (its refresh cookie) is revoked first: a new
        sign-in replaces it, and it must not stay live at the issuer with nobody holding it
        (a store that cannot be reached fails the sign-in, as issuing would). A cross-site
        request raises :class:`~fastapi_authkit.errors.CrossSiteRequestError` before anything is
        issued or revoked.

        Must be awaited: a response started while the call was not awaited is refused with
        a :class:`ConfigurationError` saying so."""
        bool_argument("persistent", persistent)
        self.session_limits(idle_ttl, absolute_ttl)  # a ValueError now, not when awaited
        state = get_auth_state(conn)
        if "cookie" not in state.store.credentials:
            # Before anything is issued: no session without a holder.
            raise ConfigurationError(
                f"issuer.sign_in sets cookies, and auth_type={state.store.auth_type!r} reads "
                "none: answer the client with `await issuer.issue_tokens(request, subject)`"
            )
        return state.must_be_awaited(
            "issuer.sign_in",
            lambda: self._sign_in(
                conn, subject, user_state, persistent, idle_ttl=idle_ttl, absolute_ttl=absolute_ttl
            ),
        )

    async def _sign_in(
        self,
        conn: HTTPConnection,
        subject: str,
        user_state: Any,
        persistent: bool,
        *,
        idle_ttl: float | None,
        absolute_ttl: float | None,
    ) -> IssuedTokens:
        state = get_auth_state(conn)
        refuse_cross_site(conn, state.store.allowed_origins)
        if state.refresh_token is not None:
            await self.revoke(state.refresh_token)
        tokens = await self.issue(
            subject, client=client_info(conn.scope), idle_ttl=idle_ttl, absolute_ttl=absolute_ttl
        )
        start_session(
            conn,
            auth={"token": tokens.access_token, "type": "Bearer"},
            refresh=tokens.refresh_token,
            refresh_expires_in=tokens.refresh_expires_in,
            user_state=user_state,
            persistent=persistent,
            revoke_replaced=False,  # revoked above
        )
        return tokens

    def sign_out(
        self, conn: HTTPConnection, *, everywhere: bool = False
    ) -> Coroutine[Any, Any, bool]:
        """Revoke this session (or, with ``everywhere``, every session of its subject) and
        clear the cookies: ``await issuer.sign_out(request)``. The cookies are cleared even
        when the store is down; the result says whether the server-side revocation happened
        (False is logged). Must be awaited, like :meth:`sign_in`.

        The session is the one the refresh cookie names, and the one the (verified) access
        token names. One the store no longer holds (its data flushed, swapped or evicted)
        is revoked everywhere all the same: every worker refuses it from then on, and the
        result is True; the :class:`~fastapi_authkit.events.SignedOut` event's ``found``
        says whether the store still had it.

        A request authenticated by a bearer header (``AuthState.credential == "header"``)
        signs out the session its access token names; no cookie is touched."""
        return get_auth_state(conn).must_be_awaited(
            "issuer.sign_out", lambda: self._sign_out(conn, everywhere)
        )

    async def _sign_out(self, conn: HTTPConnection, everywhere: bool) -> bool:
        state = get_auth_state(conn)
        subject, session = _identity(conn)
        found: bool | None = None
        try:
            if everywhere and subject is not None:
                found = await self.revoke_subject(subject) > 0
            elif state.refresh_token is not None:
                found = await self.revoke(state.refresh_token)
            if not found and subject is not None and session is not None:
                # The store knew neither the refresh token nor (everywhere) a live session
                # of the subject, yet the verified access token names its session: ended
                # by id, which revokes it if the store still holds it and publishes it
                # either way, so that no worker's view keeps answering for it.
                found = await self.revoke_subject_session(subject, session)
            revoked = True
        except StoreUnavailableError as exc:
            logger.error("sign-out could not revoke the session server-side: %s", exc)
            revoked, found = False, None
        if found is False:
            logger.info(
                "sign-out: the store no longer held session %s (ended already, or its data "
                "was flushed, swapped or evicted); revoked everywhere all the same",
                session,
            )
        if state.credential == "header":
            # A bearer client's session (its access token's): no cookie here is its own.
            state.record(conn, SignedOut, everywhere=everywhere, revoked=revoked, found=found)
            state.unauthenticate()
        else:
            end_session(conn, everywhere=everywhere, revoked=revoked, found=found)
        return revoked

    # --- the signed-in user's sessions ---------------------------------------------------

    async def sessions(
        self, conn: HTTPConnection, *, limit: int = MAX_SESSIONS_LISTED
    ) -> list[SessionInfo]:
        """The live sessions of the connection's signed-in user, for a "your sessions"
        page: this one first (``current=True``), then the most recently active, at most
        ``limit`` (1 to 100). Each is a :class:`SessionInfo` (a dataclass: FastAPI answers
        it as JSON). Signed out, the list is empty; use it behind ``current_user`` or
        ``require_auth``. Raises :class:`StoreUnavailableError` when the store cannot
        answer."""
        subject, current = _identity(conn)
        if subject is None:
            return []
        return await self.list_sessions(subject, current=current, limit=limit)

    def revoke_session(self, conn: HTTPConnection, session_id: str) -> Coroutine[Any, Any, bool]:
        """End one of the signed-in user's sessions by its id (a :class:`SessionInfo`'s
        ``id``): ``await issuer.revoke_session(request, session_id)``. True when this ended
        it; False when the user has no such live session: an unknown or malformed id, one
        already ended, or **another user's** session, which is never touched (only the
        connection's own subject's sessions can be revoked here). Every worker refuses the
        ended session from then on. Ending the connection's own session also signs it out
        (its cookies are cleared on the response), as :meth:`sign_out` does.

        Call it from an unsafe-method route (POST, DELETE), so that the kit's CSRF check
        applies. Raises :class:`StoreUnavailableError` when the store cannot answer (nothing
        is revoked or cleared). Must be awaited, like :meth:`sign_in`."""
        return get_auth_state(conn).must_be_awaited(
            "issuer.revoke_session", lambda: self._revoke_session(conn, session_id)
        )

    async def _revoke_session(self, conn: HTTPConnection, session_id: str) -> bool:
        subject, current = _identity(conn)
        if subject is None:
            return False
        ended = await self.revoke_subject_session(subject, session_id)
        state = get_auth_state(conn)
        if session_id == current and state.credential == "header":
            state.record(conn, SignedOut, everywhere=False, revoked=ended, found=ended)
            state.unauthenticate()
        elif session_id == current:
            # Its own session: signed out here as well (also when it had ended already).
            end_session(conn, revoked=ended, found=ended)
        elif ended:
            # Another of the user's sessions, ended from this one: that session's sign-out.
            about = {"sub": subject, SESSION_CLAIM: session_id}
            state.record(conn, SignedOut, about=about, everywhere=False, revoked=True)
        return ended


def _identity(conn: HTTPConnection) -> tuple[str | None, str | None]:
    """The connection's subject and session id (its access token's ``sid``), or Nones."""
    claims = get_auth_state(conn).claims
    if not claims:
        return None, None
    subject, family = claims.get("sub"), claims.get(SESSION_CLAIM)
    return (
        subject if isinstance(subject, str) and subject else None,
        family if isinstance(family, str) else None,
    )


def create_issuer(
    *,
    backend: SessionStore,
    signing_key: Any,
    algorithm: str = "HS256",
    key_id: str | None = None,
    previous_keys: Mapping[str, Any] | None = None,
    access_ttl: float = 300,
    idle_ttl: float = 14 * _DAY,
    absolute_ttl: float = 30 * _DAY,
    grace: float = 10,
    late_replay: float | None = None,
    issuer: str | None = None,
    audience: str | None = None,
    clock: Callable[[], float] = time.time,
) -> Issuer:
    """Configure the built-in issuer, for ``create_store(token_issuer=issuer)``.

    The store then verifies its tokens, refreshes through it and checks on every request
    that the session has not been revoked. The middleware refreshes a token in the last
    fifth of its life, at most its last 60 s (``interval=min(60, access_ttl / 5)``: the
    default 300 s token is refreshed from 240 s on); pass
    ``create_store(refresh=create_refresh(interval=..., refresh_api_callback=issuer.refresh))``
    for another interval.

    Args:
        backend: Where sessions live: :class:`~fastapi_authkit.stores.MemoryStore` (one
            process) or :class:`~fastapi_authkit.stores.RedisStore` (several workers).
        signing_key: The HMAC secret, or the private key (PEM) for RS/PS/ES/EdDSA (either
            may be wrapped, as pydantic's ``SecretStr``/``SecretBytes`` or Starlette's
            ``Secret``).
        algorithm: The signing algorithm (``"HS256"``, ``"RS256"``, ``"ES256"``...).
        key_id: Names the key in the tokens' ``kid`` header.
        previous_keys: ``{kid: verification key}`` of retired keys, whose tokens stay valid
            during a rotation.
        access_ttl: Access-token lifetime, in seconds.
        idle_ttl: A session ends after this long without a refresh.
        absolute_ttl: A session ends after this long in any case.
        grace: Seconds during which the immediate predecessor of the current refresh token
            receives the same successor instead of being taken for theft.
        late_replay: Seconds after a rotation during which that predecessor, presented after
            ``grace`` while its successor is still unused, receives that successor once more
            (its holder may never have received it: a reply lost, a client gone
            mid-refresh); after it, a rotated-out token is reuse and revokes the session. It
            counts from the rotation, as ``grace`` does: 0 turns the late replay off,
            otherwise it is at least ``grace`` and shorter than ``idle_ttl``. Default: 60 s
            (``grace`` when that is longer, and never past ``idle_ttl``).
        issuer: The ``iss`` claim its tokens carry (the store then requires it).
        audience: The ``aud`` claim its tokens carry (the store then requires it).
        clock: Seconds since the epoch; tests inject their own.
    """
    if not isinstance(backend, SessionStore):
        raise ConfigurationError("backend must be a SessionStore (MemoryStore or RedisStore)")
    check_algorithm(algorithm)
    signing_key = reveal(signing_key)
    if isinstance(previous_keys, Mapping):
        previous_keys = {kid: reveal(key) for kid, key in previous_keys.items()}
    # The same checks as create_store's token_key (an HMAC secret's minimum length
    # included), named after this argument, so a weak or wrong key fails here.
    prepared = prepare_key(algorithm, signing_key, "signing_key", kind="private")
    if algorithm in HMAC_ALGORITHMS:
        verification = signing_key  # HMAC verifies with the secret itself
    elif hasattr(prepared, "public_key"):
        verification = prepared.public_key()  # asymmetric keys verify with their public half
    else:
        raise ConfigurationError(
            f"signing_key is {describe_key(signing_key)}: signing with {algorithm} needs the "
            "private key (its public half is what verifies)"
        )
    if key_id is not None and (not isinstance(key_id, str) or not key_id):
        raise ConfigurationError("key_id must be a non-empty string")
    if previous_keys and key_id is None:
        raise ConfigurationError("previous_keys needs key_id: tokens are told apart by kid")
    access = seconds("access_ttl", access_ttl, positive=True)
    idle = seconds("idle_ttl", idle_ttl, positive=True)
    absolute = seconds("absolute_ttl", absolute_ttl, positive=True)
    if not access < idle <= absolute:
        raise ConfigurationError("expected access_ttl < idle_ttl <= absolute_ttl")
    grace_s = seconds("grace", grace)
    if not grace_s < idle:
        raise ConfigurationError("grace must be shorter than idle_ttl")
    if late_replay is None:
        # The vendors' windows are seconds long (Auth0, Okta, Cognito); a short session keeps
        # the same shape rather than a configuration error it never asked for.
        late = min(max(_LATE_REPLAY, grace_s), idle)
    else:
        late = seconds("late_replay", late_replay)
        if not late < idle:
            raise ConfigurationError("late_replay must be shorter than idle_ttl")
    if 0 < late < grace_s:
        # Both count from the rotation: a late window ending inside the grace window would
        # do nothing, which is not what whoever set it meant.
        raise ConfigurationError(
            f"late_replay ({late:g} s) is shorter than grace ({grace_s:g} s): it counts "
            "from the rotation, as grace does; pass late_replay=0 (no late replay) or at "
            "least grace"
        )
    function("clock", clock)
    return Issuer(
        backend=backend,
        signing_key=signing_key,
        verification_key=verification,
        algorithm=algorithm,
        key_id=key_id,
        previous_keys=dict(previous_keys or {}),
        access_ttl=access,
        idle_ttl=idle,
        absolute_ttl=absolute,
        grace=grace_s,
        late_replay=late,
        issuer=issuer,
        audience=audience,
        clock=clock,
    )
