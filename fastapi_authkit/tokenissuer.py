"""The built-in issuer's token work: minting, rotation with reuse detection, revocation.

It mints short-lived access JWTs (``typ: at+jwt``, with ``jti`` and the session family id as
``sid``) and opaque rotating refresh tokens, and its :meth:`TokenIssuer.refresh` is a
ready-made ``refresh_api_callback``. Rotation follows RFC 9700 §4.14: every refresh hands out a
new refresh token; presenting a rotated-out one revokes the whole family, except that the
*immediate* predecessor presented within ``grace`` seconds (a request that was already in
flight, another tab, another worker) receives the *same* successor pair, sealed in the store
under a key only that predecessor can derive. Sessions also end on sign-out, on "sign out
everywhere" for their subject, after ``idle_ttl`` without a refresh and after
``absolute_ttl`` in any case.

This module knows nothing of requests: it implements the
:class:`~fastapi_authkit.source.TokenSource` protocol that configuration depends on. Signing
a connection in and out (``issuer.sign_in(request, ...)``) is the request layer's part, in
:mod:`fastapi_authkit.issuer`.
"""

from __future__ import annotations

import json
import logging
import math
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from .callback import RefreshParam, RefreshResult
from .stores.base import SessionStore
from .stores.memory import MemoryStore
from .stores.sealing import open_sealed, seal, token_id
from .tokens import unverified_expiry

__all__ = ["ACCESS_TOKEN_TYPE", "IssuedTokens", "TokenIssuer"]

logger = logging.getLogger("fastapi_authkit")

# RFC 9068: tells access tokens apart from other JWTs.
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret
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


class TokenIssuer:
    """Mints, rotates and revokes tokens on a :class:`~fastapi_authkit.stores.SessionStore`.

    The application-facing :class:`~fastapi_authkit.Issuer` (from
    :func:`~fastapi_authkit.create_issuer`) is this plus signing connections in and out.
    """

    token_typ = ACCESS_TOKEN_TYPE

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

    @property
    def shared_store(self) -> SessionStore | None:
        """Where refreshes in several processes meet: the backend, unless it lives in this
        process's memory."""
        return None if isinstance(self.backend, MemoryStore) else self.backend

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(algorithm={self.algorithm!r}, key_id={self.key_id!r}, "
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
                access = pair["a"]
                exp = unverified_expiry(access)
                if (exp is None or exp <= now) and outcome.family_id and outcome.subject:
                    # A late replay (the successor's holder never got it): the same
                    # successor, with an access token that is alive now.
                    access = self.mint_access(outcome.subject, outcome.family_id, now)
                return self._success(access, pair["r"])
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
