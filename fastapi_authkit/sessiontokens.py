"""The built-in issuer's token work: minting, rotation with reuse detection, revocation.

It mints short-lived access JWTs (``typ: at+jwt``, with ``jti`` and the session family id as
``sid``) and opaque rotating refresh tokens, and its :meth:`SessionTokens.refresh` is a
ready-made ``refresh_api_callback``. Rotation follows RFC 9700 §4.14: every refresh hands out a
new refresh token; presenting a rotated-out one revokes the whole family, except that the
*immediate* predecessor presented within ``grace`` seconds (a request that was already in
flight, another tab, another worker) receives the *same* successor pair, sealed in the store
under a key only that predecessor can derive; and, while that successor is unused, up to
``late_replay`` seconds after the rotation (a reply that never reached its holder). Sessions
also end on sign-out, on "sign out everywhere" for their subject, after ``idle_ttl`` without
a refresh and after ``absolute_ttl`` in any case.

This module knows nothing of requests: it implements the
:class:`~fastapi_authkit.source.TokenSource` protocol that configuration depends on. Signing
a connection in and out (``issuer.sign_in(request, ...)``) is the request layer's part, in
:mod:`fastapi_authkit.issuer`.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import jwt

from .callback import RefreshParam, RefreshResult
from .clientinfo import ClientInfo
from .familyids import family_of, idle_of, is_family_id, new_family_id, new_refresh_token
from .source import SESSION_CLAIM, Rotation
from .stores.base import SessionInfo, SessionStore
from .stores.listeners import RevocationListeners
from .stores.memory import MemoryStore
from .stores.sealing import open_sealed, seal, token_id
from .tokens import unverified_expiry
from .validation import is_int, is_number

__all__ = ["ACCESS_TOKEN_TYPE", "IssuedTokens", "SessionTokens"]

logger = logging.getLogger("fastapi_authkit")

# RFC 9068: tells access tokens apart from other JWTs.
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret
# The most sessions one call lists (and its default): a page, not a dump.
MAX_SESSIONS_LISTED = 100


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """A freshly issued pair and the session family it starts."""

    access_token: str
    refresh_token: str
    refresh_expires_in: int
    family_id: str


class SessionTokens:
    """Mints, rotates and revokes tokens on a :class:`~fastapi_authkit.stores.SessionStore`.

    The application-facing :class:`~fastapi_authkit.issuer.Issuer` (from
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
        late_replay: float,
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
        self.late_replay = late_replay
        self.issuer = issuer
        self.audience = audience
        self.clock = clock
        # The backend's view of revocations, asked on every request without I/O.
        self.known_active: Callable[[str, float], bool | None] = backend.known_active
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
            SESSION_CLAIM: family_id,
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

    def session_limits(
        self, idle_ttl: float | None, absolute_ttl: float | None
    ) -> tuple[int | None, float, float]:
        """The limits of one session signed in with ``idle_ttl``/``absolute_ttl`` (None: the
        issuer's): ``(idle to carry in the family id or None, idle, absolute)``. Each is
        at most the issuer's own; raises :class:`ValueError` otherwise."""
        absolute = self.absolute_ttl
        if absolute_ttl is not None:
            if not is_number(absolute_ttl) or not 0 < absolute_ttl <= self.absolute_ttl:
                raise ValueError(
                    f"absolute_ttl must be a number of seconds above 0 and at most the "
                    f"issuer's absolute_ttl ({self.absolute_ttl:g}), got {absolute_ttl!r}"
                )
            absolute = float(absolute_ttl)
        if idle_ttl is None:
            if absolute >= self.idle_ttl:
                return None, self.idle_ttl, absolute
            idle_ttl = absolute  # a shorter absolute limit bounds the idle one
        floor = max(self.access_ttl, self.grace, self.late_replay)
        if not is_number(idle_ttl) or not floor < idle_ttl <= min(self.idle_ttl, absolute):
            raise ValueError(
                f"idle_ttl must be a number of seconds above {floor:g} (the access token's "
                f"lifetime, grace and late_replay) and at most the issuer's idle_ttl "
                f"({self.idle_ttl:g}) and the session's absolute_ttl ({absolute:g}), "
                f"got {idle_ttl!r}"
            )
        idle = int(idle_ttl)
        return (None if idle >= self.idle_ttl else idle), float(idle), absolute

    def _idle_for(self, family_id: str | None) -> float:
        idle = idle_of(family_id)
        return self.idle_ttl if idle is None else min(float(idle), self.idle_ttl)

    async def issue(
        self,
        subject: str,
        *,
        client: ClientInfo | None = None,
        idle_ttl: float | None = None,
        absolute_ttl: float | None = None,
    ) -> IssuedTokens:
        """Start a new session family for ``subject`` and return its first pair; ``client``
        (who signs in) is recorded for :meth:`list_sessions`. ``idle_ttl``/``absolute_ttl``
        give this session shorter limits than the issuer's (never longer: ValueError)."""
        if not isinstance(subject, str) or not subject:
            raise ValueError("subject must be a non-empty string")
        carried, idle, absolute = self.session_limits(idle_ttl, absolute_ttl)
        now = self.clock()
        family_id = new_family_id(carried)
        refresh_token = new_refresh_token(family_id)
        await self.backend.create_family(
            family_id=family_id,
            subject=subject,
            token_id=token_id(refresh_token, "refresh"),
            now=now,
            idle_ttl=idle,
            absolute_ttl=absolute,
            client=client,
        )
        return IssuedTokens(
            access_token=self.mint_access(subject, family_id, now),
            refresh_token=refresh_token,
            refresh_expires_in=int(idle),
            family_id=family_id,
        )

    # --- the refresh callback --------------------------------------------------------------

    def _successor(
        self, presented: str, subject: str, family_id: str, now: float, context: str
    ) -> tuple[str, str, bytes]:
        """A successor pair and its sealed form (readable only with ``presented``)."""
        access = self.mint_access(subject, family_id, now)
        successor = new_refresh_token(family_id)
        blob = json.dumps({"a": access, "r": successor, "c": context}).encode()
        return access, successor, seal(presented, blob)

    async def rotate(
        self,
        refresh_token: str,
        *,
        subject: str | None = None,
        context: str = "",
        now: float | None = None,
        client: ClientInfo | None = None,
    ) -> Rotation:
        """Rotate ``refresh_token``: its successor pair, or the same pair again for the
        immediate predecessor within the grace period (or within ``late_replay`` of the
        rotation while the successor is unused), or the end of the session.

        With ``subject`` (the old access token's ``sub``) and a refresh token that names its
        family, the successor is minted first and offered in the one call that rotates,
        which is exactly-once across processes by itself (one caller gets ``rotated``, every
        other within the grace period ``replay`` with that caller's sealed pair); a
        successor offered by a caller that did not win is discarded, never handed out.
        Without them (no access token left, or a token of an earlier version) the store is
        asked first. ``client`` (who refreshes) is recorded with the rotation, in the same
        call. Raises :class:`StoreUnavailableError` when the store cannot answer.
        """
        presented = refresh_token
        tid = token_id(presented, "refresh")
        now = self.clock() if now is None else now
        family = family_of(presented)
        idle = self._idle_for(family)
        options: dict[str, Any] = {
            "family_id": family,
            "now": now,
            "grace": self.grace,
            "late_replay": self.late_replay,
            "idle_ttl": idle,
        }
        outcome = None
        if subject and family:
            access, successor, sealed = self._successor(presented, subject, family, now, context)
            outcome = await self.backend.rotate(
                tid,
                successor_id=token_id(successor, "refresh"),
                sealed=sealed,
                subject_hint=subject,
                client=client,
                **options,
            )
            if outcome.status == "rotated":
                return Rotation(access, successor, int(idle), context)
        if outcome is None:
            outcome = await self.backend.rotate(tid, successor_id=None, sealed=None, **options)
        if outcome.status == "active" and outcome.family_id and outcome.subject:
            # Nothing offered yet, or offered for another subject than the session's.
            access, successor, sealed = self._successor(
                presented, outcome.subject, outcome.family_id, now, context
            )
            outcome = await self.backend.rotate(
                tid,
                successor_id=token_id(successor, "refresh"),
                sealed=sealed,
                subject_hint=outcome.subject,
                client=client,
                **options,
            )
            if outcome.status == "rotated":
                return Rotation(access, successor, int(idle), context)
            # Another worker rotated it between our two calls: fall through.
        if outcome.status == "replay" and outcome.sealed is not None:
            opened = open_sealed(presented, outcome.sealed)
            if opened is not None:
                pair = json.loads(opened)
                access, context = pair["a"], pair.get("c", "")
                exp = unverified_expiry(access)
                if (exp is None or exp <= now) and outcome.family_id and outcome.subject:
                    # A late replay (the successor's holder may never have got it): the
                    # same successor, with an access token that is alive now, and cookies
                    # written now (no other process answers this one at the same time).
                    access = self.mint_access(outcome.subject, outcome.family_id, now)
                    context = ""
                return Rotation(access, pair["r"], int(idle), context, replay=True)
            logger.error("sealed successor of family %s cannot be opened", outcome.family_id)
            return Rotation(None, ended="unknown")
        if outcome.status == "reuse":
            logger.warning(
                "refresh token reuse detected: family %s of subject %r revoked",
                outcome.family_id,
                outcome.subject,
            )
        status = outcome.status
        ended = status if status in ("reuse", "revoked", "expired") else "unknown"
        return Rotation(None, ended=ended, subject=outcome.subject, family_id=outcome.family_id)

    async def refresh(self, param: RefreshParam) -> RefreshResult:
        """``refresh_api_callback`` for ``create_refresh``: rotate ``param.refresh_token``.

        Raises :class:`StoreUnavailableError` when the store cannot answer: that is a
        transient failure, so the middleware clears nothing.
        """
        # Unverified: only a hint of whom to mint for; the store rotates only if it matches.
        sub = _unverified_claims(param.auth_token).get("sub")
        rotation = await self.rotate(
            param.refresh_token, subject=sub if isinstance(sub, str) else None
        )
        if rotation.access_token is None:
            return RefreshResult(is_success=False)
        return RefreshResult(
            is_success=True,
            new_auth_token=rotation.access_token,
            new_refresh_token=rotation.refresh_token,
            new_refresh_token_expires_in=rotation.refresh_expires_in,
        )

    # --- revocation -------------------------------------------------------------------------

    async def is_active(self, claims: Mapping[str, Any]) -> bool:
        """Whether the access token's session family is still live (the middleware asks)."""
        family_id = claims.get(SESSION_CLAIM)
        if not isinstance(family_id, str):
            return False
        return await self.backend.family_active(family_id, self.clock())

    def watch_revocations(self) -> RevocationListeners | None:
        """Who is told of each revocation this process learns, when the backend tells
        (the kit's own stores do; the open connections of a revoked session end by it)."""
        watch = getattr(self.backend, "watch_revocations", None)
        listeners = watch() if callable(watch) else None
        return listeners if isinstance(listeners, RevocationListeners) else None

    async def revoke(self, refresh_token: str) -> bool:
        """Revoke the session family of ``refresh_token``; False if it was unknown."""
        tid = token_id(refresh_token, "refresh")
        family = family_of(refresh_token)
        return await self.backend.revoke_token_family(tid, family_id=family) is not None

    async def revoke_subject(self, subject: str) -> int:
        """Revoke every session of ``subject`` ("sign out everywhere")."""
        return await self.backend.revoke_subject(subject)

    # --- a subject's sessions ------------------------------------------------------------

    async def list_sessions(
        self, subject: str, *, current: str | None = None, limit: int = MAX_SESSIONS_LISTED
    ) -> list[SessionInfo]:
        """The live sessions of ``subject``, for a "your sessions" page: the one whose id is
        ``current`` first (marked ``current``), then the most recently refreshed or signed
        in; at most ``limit`` (1 to 100). Raises
        :class:`StoreUnavailableError` when the store cannot answer.

        For the signed-in user's own sessions, :meth:`Issuer.sessions` takes the request
        instead. This one is for the app's own tools (support staff looking at a user)."""
        if not isinstance(subject, str) or not subject:
            raise ValueError("subject must be a non-empty string")
        if not is_int(limit) or not 1 <= limit <= MAX_SESSIONS_LISTED:
            raise ValueError(f"limit must be an int from 1 to {MAX_SESSIONS_LISTED}")
        found = await self.backend.sessions(subject, now=self.clock())
        found.sort(key=lambda s: (s.id != current, -(s.refreshed_at or s.created_at or 0.0), s.id))
        return [
            replace(session, current=True) if session.id == current else session
            for session in found[:limit]
        ]

    async def revoke_subject_session(self, subject: str, session_id: str) -> bool:
        """End the session ``session_id`` of ``subject``: True when this call ended it,
        False when ``subject`` has no such live session (an unknown id, a session already
        ended, or another subject's: never revoked through here). Every worker refuses it
        from then on, as after a sign-out. Raises :class:`StoreUnavailableError` when the
        store cannot answer."""
        if not isinstance(subject, str) or not subject:
            raise ValueError("subject must be a non-empty string")
        if not isinstance(session_id, str) or not is_family_id(session_id):
            return False  # not an id this issuer makes: no session of anyone's
        return await self.backend.revoke_family(session_id, subject=subject)


def _unverified_claims(token: str | None) -> dict[str, Any]:
    if not token:
        return {}
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except Exception:  # any shape of garbage: no hint
        return {}
    return claims if isinstance(claims, dict) else {}
