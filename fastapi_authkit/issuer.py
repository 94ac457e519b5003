"""The built-in token issuer, for apps that are their own auth server.

It mints short-lived access JWTs (``typ: at+jwt``, with ``jti`` and the session family id as
``sid``) and opaque rotating refresh tokens, and its :meth:`Issuer.refresh` is a ready-made
``refresh_api_callback``. Rotation follows RFC 9700 §4.14: every refresh hands out a new
refresh token; presenting a rotated-out one revokes the whole family, except that the
*immediate* predecessor presented within ``grace`` seconds (a request that was already in
flight, another tab, another worker) receives the *same* successor pair, sealed in the store
under a key only that predecessor can derive. Sessions also end on sign-out, on "sign out
everywhere" for their subject, after ``idle_ttl`` without a refresh and after
``absolute_ttl`` in any case.
"""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.algorithms import get_default_algorithms
from starlette.requests import HTTPConnection

from .callback import RefreshParam, RefreshResult
from .config import seconds
from .errors import ConfigurationError, StoreUnavailableError
from .state import get_auth_state, sign_in, sign_out
from .stores.base import SessionStore
from .stores.sealing import open_sealed, seal, token_id
from .tokens import HMAC_ALGORITHMS, check_algorithm

__all__ = ["ACCESS_TOKEN_TYPE", "IssuedTokens", "Issuer", "create_issuer"]

logger = logging.getLogger("fastapi_authkit")

# RFC 9068: tells access tokens apart from other JWTs.
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret
_DAY = 24 * 3600
# A family id as new_family_id makes them (base64url), within a bound.
_FAMILY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def new_family_id() -> str:
    return secrets.token_urlsafe(16)


def new_refresh_token(family_id: str) -> str:
    """An opaque refresh token that names its family (``<family id>.<secret>``), so that
    a sharded store finds the family's slot from the token alone. The family id is not a
    secret (it is the access token's ``sid``); the token's id in the store covers all of it."""
    return f"{family_id}.{secrets.token_urlsafe(32)}"


def family_of(refresh_token: str) -> str | None:
    """The family a refresh token names, or None (an earlier version's token, or junk)."""
    family_id, dot, secret = refresh_token.partition(".")
    return family_id if dot and secret and _FAMILY_ID.fullmatch(family_id) else None


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """A freshly issued pair and the session family it starts."""

    access_token: str
    refresh_token: str
    refresh_expires_in: int
    family_id: str


class Issuer:
    """Mints, rotates and revokes tokens on a :class:`~fastapi_authkit.stores.SessionStore`.

    Build it with :func:`create_issuer` and hand it to ``create_store(issuer=...)``, which
    then verifies its tokens, refreshes through it and checks on every request that the
    session has not been revoked.
    """

    def __init__(
        self,
        *,
        backend: SessionStore,
        signing_key: Any,
        verification_key: Any,
        algorithm: str,
        key_id: str | None,
        previous_keys: Mapping[str, Any],
        access_ttl: float,
        idle_ttl: float,
        absolute_ttl: float,
        grace: float,
        issuer: str | None,
        audience: str | None,
        clock: Callable[[], float],
    ) -> None:
        self.backend = backend
        self.algorithm = algorithm
        self.key_id = key_id
        self.access_ttl = access_ttl
        self.idle_ttl = idle_ttl
        self.absolute_ttl = absolute_ttl
        self.grace = grace
        self.issuer = issuer
        self.audience = audience
        self.clock = clock
        self._signing_key = signing_key
        self._headers: dict[str, Any] = {"typ": ACCESS_TOKEN_TYPE}
        if key_id is not None:
            self._headers["kid"] = key_id
            self.token_key: Any = {**previous_keys, key_id: verification_key}
        else:
            self.token_key = verification_key

    def __repr__(self) -> str:
        return (
            f"Issuer(algorithm={self.algorithm!r}, key_id={self.key_id!r}, "
            f"access_ttl={self.access_ttl}, backend={type(self.backend).__name__})"
        )

    # --- minting ---------------------------------------------------------------------------

    def mint_access(self, subject: str, family_id: str, now: float) -> str:
        claims: dict[str, Any] = {
            "sub": subject,
            "sid": family_id,
            "jti": secrets.token_urlsafe(12),
            "iat": int(now),
            # Rounded up: the token lives at least access_ttl seconds.
            "exp": math.ceil(now + self.access_ttl),
        }
        if self.issuer is not None:
            claims["iss"] = self.issuer
        if self.audience is not None:
            claims["aud"] = self.audience
        return jwt.encode(
            claims, self._signing_key, algorithm=self.algorithm, headers=self._headers
        )

    async def issue(self, subject: str) -> IssuedTokens:
        """Start a new session family for ``subject`` and return its first pair."""
        if not isinstance(subject, str) or not subject:
            raise ValueError("subject must be a non-empty string")
        now = self.clock()
        family_id = new_family_id()
        refresh_token = new_refresh_token(family_id)
        await self.backend.create_family(
            family_id=family_id,
            subject=subject,
            token_id=token_id(refresh_token, "refresh"),
            now=now,
            idle_ttl=self.idle_ttl,
            absolute_ttl=self.absolute_ttl,
        )
        return IssuedTokens(
            access_token=self.mint_access(subject, family_id, now),
            refresh_token=refresh_token,
            refresh_expires_in=int(self.idle_ttl),
            family_id=family_id,
        )

    # --- the refresh callback --------------------------------------------------------------

    def _success(self, access: str, refresh: str) -> RefreshResult:
        return RefreshResult(
            is_success=True,
            new_auth_token=access,
            new_refresh_token=refresh,
            new_refresh_token_expires_in=int(self.idle_ttl),
        )

    async def refresh(self, param: RefreshParam) -> RefreshResult:
        """``refresh_api_callback`` for ``create_refresh``: rotate ``param.refresh_token``.

        Raises :class:`StoreUnavailableError` when the store cannot answer: that is a
        transient failure, so the middleware clears nothing.
        """
        presented = param.refresh_token
        tid = token_id(presented, "refresh")
        now = self.clock()
        options = {"now": now, "grace": self.grace, "idle_ttl": self.idle_ttl}
        family = family_of(presented)
        # Look first, so a replay within the grace window mints nothing at all.
        outcome = await self.backend.rotate(
            tid, family_id=family, successor_id=None, sealed=None, **options
        )
        if outcome.status == "active" and outcome.family_id and outcome.subject:
            access = self.mint_access(outcome.subject, outcome.family_id, now)
            successor = new_refresh_token(outcome.family_id)
            sealed = seal(presented, json.dumps({"a": access, "r": successor}).encode())
            outcome = await self.backend.rotate(
                tid,
                family_id=family,
                successor_id=token_id(successor, "refresh"),
                sealed=sealed,
                **options,
            )
            if outcome.status == "rotated":
                return self._success(access, successor)
            # Another worker rotated it between our look and our write: fall through.
        if outcome.status == "replay" and outcome.sealed is not None:
            opened = open_sealed(presented, outcome.sealed)
            if opened is not None:
                pair = json.loads(opened)
                return self._success(pair["a"], pair["r"])
            logger.error("sealed successor of family %s cannot be opened", outcome.family_id)
            return RefreshResult(is_success=False)
        if outcome.status == "reuse":
            logger.warning(
                "refresh token reuse detected: family %s of subject %r revoked",
                outcome.family_id,
                outcome.subject,
            )
        return RefreshResult(is_success=False)

    # --- revocation -------------------------------------------------------------------------

    async def is_active(self, claims: Mapping[str, Any]) -> bool:
        """Whether the access token's session family is still live (the middleware asks)."""
        family_id = claims.get("sid")
        if not isinstance(family_id, str):
            return False
        return await self.backend.family_active(family_id, self.clock())

    async def revoke(self, refresh_token: str) -> bool:
        """Revoke the session family of ``refresh_token``; False if it was unknown."""
        tid = token_id(refresh_token, "refresh")
        family = family_of(refresh_token)
        return await self.backend.revoke_token_family(tid, family_id=family) is not None

    async def revoke_subject(self, subject: str) -> int:
        """Revoke every session of ``subject`` ("sign out everywhere")."""
        return await self.backend.revoke_subject(subject)

    # --- conveniences for routes -------------------------------------------------------------

    async def sign_in(
        self, conn: HTTPConnection, subject: str, *, user_state: Any = None
    ) -> IssuedTokens:
        """Issue a pair for ``subject`` and :func:`~fastapi_authkit.sign_in` with it."""
        tokens = await self.issue(subject)
        sign_in(
            conn,
            auth={"token": tokens.access_token, "type": "Bearer"},
            refresh=tokens.refresh_token,
            refresh_expires_in=tokens.refresh_expires_in,
            user_state=user_state,
        )
        return tokens

    async def sign_out(self, conn: HTTPConnection, *, everywhere: bool = False) -> bool:
        """Revoke this session (or, with ``everywhere``, every session of its subject) and
        clear the cookies. The cookies are cleared even when the store is down; the return
        value says whether the server-side revocation happened (False is logged)."""
        state = get_auth_state(conn)
        subject = state.claims.get("sub") if state.claims else None
        try:
            if everywhere and isinstance(subject, str):
                await self.revoke_subject(subject)
            elif state.refresh_token is not None:
                await self.revoke(state.refresh_token)
            revoked = True
        except StoreUnavailableError as exc:
            logger.error("sign-out could not revoke the session server-side: %s", exc)
            revoked = False
        sign_out(conn)
        return revoked


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
    issuer: str | None = None,
    audience: str | None = None,
    clock: Callable[[], float] = time.time,
) -> Issuer:
    """Configure the built-in issuer.

    ``backend``: :class:`~fastapi_authkit.stores.MemoryStore` (one process) or
    :class:`~fastapi_authkit.stores.RedisStore` (several workers). ``signing_key``: the HMAC
    secret, or the private key (PEM) for RS/PS/ES/EdDSA. ``key_id`` names it in the ``kid``
    header; ``previous_keys`` (``{kid: verification key}``) keeps tokens signed with retired
    keys valid during a rotation. ``access_ttl``: access-token lifetime; ``idle_ttl``: a
    session ends after this long without a refresh; ``absolute_ttl``: and after this long in
    any case. ``grace``: seconds during which the immediate predecessor of the current
    refresh token receives the same successor instead of being taken for theft.
    """
    if not isinstance(backend, SessionStore):
        raise ConfigurationError("backend must be a SessionStore (MemoryStore or RedisStore)")
    check_algorithm(algorithm)
    try:
        prepared = get_default_algorithms()[algorithm].prepare_key(signing_key)
    except Exception as exc:
        raise ConfigurationError(f"signing_key is not a valid {algorithm} key: {exc}") from exc
    # HMAC verifies with the secret itself; asymmetric keys with their public half.
    verification = signing_key if algorithm in HMAC_ALGORITHMS else prepared.public_key()
    if key_id is not None and (not isinstance(key_id, str) or not key_id):
        raise ConfigurationError("key_id must be a non-empty string")
    if previous_keys and key_id is None:
        raise ConfigurationError("previous_keys needs key_id: tokens are told apart by kid")
    access = seconds("access_ttl", access_ttl, positive=True)
    idle = seconds("idle_ttl", idle_ttl, positive=True)
    absolute = seconds("absolute_ttl", absolute_ttl, positive=True)
    if not access < idle <= absolute:
        raise ConfigurationError("expected access_ttl < idle_ttl <= absolute_ttl")
    if not seconds("grace", grace) < idle:
        raise ConfigurationError("grace must be shorter than idle_ttl")
    if not callable(clock):
        raise ConfigurationError("clock must be callable")
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
        grace=float(grace),
        issuer=issuer,
        audience=audience,
        clock=clock,
    )
