"""What a request says about its session, decided without I/O: the request reader; pure.

:meth:`RequestReader.read` takes a request's headers, method (None for a WebSocket
handshake), path and scheme, the time, and the configuration it was built with, and
answers with one decision (:mod:`fastapi_authkit.decision`): a :class:`Refused`, a
:class:`CachedReading` (a signed-in Cookie header seen before, while everything that made
it signed in still holds), or a :class:`Reading` whose ``then`` (:class:`Then`) says what
the middleware still has to do: nothing (anonymous, or signed in), ask the session check
and/or refresh, clear a session known to be over, reload the keys and read again, or
answer that the token cannot be verified now.

The middleware (the ASGI layer) feeds the reader and carries out the I/O; this module needs
neither ASGI nor an event loop, so it is tested on its own. The readings it remembers are
per-process memory, bounded (:mod:`fastapi_authkit.readercache`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection
from dataclasses import replace
from typing import Any, Final

from .bearer import bearer_token, live_bearer
from .config import AuthStore, Credential
from .cookies import CookieNames, cookie_header
from .decision import (
    CHECK,
    CLEAR,
    DONE,
    REFRESH,
    RELOAD,
    SAFE_METHODS,
    UNAVAILABLE,
    CachedReading,
    Decision,
    Reading,
    Refused,
    Then,
)
from .errors import TokenError, TokenExpiredError, UnknownKeyError, VerificationUnavailableError
from .forgery import ForgeryCheck, route_path
from .readercache import ParsedHeader, ReaderCache
from .source import SESSION_CLAIM, SessionKnown
from .tokens import TokenVerifier
from .userstate import StateCodec, belongs

__all__ = ["RequestReader"]

logger = logging.getLogger("fastapi_authkit")


# No cookies, or nothing valid in them: one shared answer. And one for a session known over.
_ANONYMOUS: Final = Reading()
_SESSION_OVER: Final = Reading(then=CLEAR)
_BEARER: Final = "Bearer"


class RequestReader:
    """Reads requests for one configuration. What it remembers of the signed-in sessions it
    read is in its :class:`~fastapi_authkit.readercache.ReaderCache`, bounded like the
    token cache."""

    def __init__(
        self,
        *,
        credentials: frozenset[Credential],
        names: CookieNames,
        verifier: TokenVerifier,
        state_codec: StateCodec,
        forgery: ForgeryCheck,
        refresh_interval: float | None = None,
        session_check: bool = False,
        session_known: SessionKnown | None = None,
        audited: bool = False,
        debug: bool = False,
    ) -> None:
        """A reader of the credentials ``credentials`` names (``auth_type``'s), in cookies
        named ``names``; ``refresh_interval`` None without refresh; ``session_check``: one is
        configured, and ``session_known`` answers it without I/O when it can; ``audited``: an
        audit hook listens (a session known over is read with its claims)."""
        self._header_only = credentials == {"header"}
        # With a cookie kind as well, a valid bearer header is read first (the precedence
        # docs/behaviour.md states): a client attaches it on purpose to this one request,
        # where a browser attaches cookies to every request, and no other site can make a
        # browser send it (so it needs no CSRF check). Anything else in it counts as absent.
        self._bearer_first = "header" in credentials and len(credentials) > 1
        self._gateway = "gateway" in credentials
        self._verifier, self._codec, self._forgery = verifier, state_codec, forgery
        self._refresh_interval, self._checked = refresh_interval, session_check
        self._known, self._audited, self._debugging = session_known, audited, debug
        # As many records as the verifier remembers tokens: a record takes its token's place.
        self._cache = ReaderCache(names, verifier.cache_size, session_known)

    @classmethod
    def for_store(cls, store: AuthStore) -> RequestReader:
        """The reader of ``store``'s configuration, given the parts of it that it uses."""
        return cls(
            credentials=store.credentials,
            names=store.names,
            verifier=store.verifier,
            state_codec=store.state_codec,
            forgery=ForgeryCheck(
                store.allowed_origins, store.csrf_exempt_paths, store.csrf_header, store.csrf
            ),
            refresh_interval=None if store.refresh is None else store.refresh.interval,
            session_check=store.session_check is not None,
            session_known=store.session_known,
            audited=store.events.listening,
            debug=store.debug,
        )

    def read(
        self,
        headers: Collection[tuple[bytes, bytes]],
        method: str | None,
        path: str,
        scheme: str,
        now: float,
        *,
        root_path: str = "",
        keys_reloaded: bool = False,
    ) -> Decision:
        """Decide what the request's credentials mean at ``now``; see the module docstring.

        ``headers`` are the raw header pairs (lower-case names, as ASGI gives them),
        ``method`` None for a WebSocket handshake, ``scheme`` the scope's (``https``,
        ``wss``...), which with ``Host`` makes the app's own origin. ``path`` is the scope's
        (it includes ``root_path``, which ``csrf_exempt_paths`` do not, as routes do not).
        ``keys_reloaded``: the second read after a :data:`RELOAD`; a key id still unknown
        is a foreign token.
        """
        if self._header_only:
            return self._bearer(headers, now, keys_reloaded)
        if self._bearer_first:
            reading = self._bearer(headers, now, keys_reloaded)
            if reading.claims is not None or reading.then:
                return reading
        if self._gateway:
            return self._gateway_cookie(headers, method, scheme, now, keys_reloaded)
        header = cookie_header(headers)
        safe = method in SAFE_METHODS
        found = self._cache.find(header, safe, now)
        if isinstance(found, CachedReading):
            return found
        if root_path:
            path = route_path(path, root_path)
        return self._cookies(found, headers, method, path, scheme, now, safe, keys_reloaded)

    def _debug(self, message: str, *args: object) -> None:
        if self._debugging:
            logger.debug(message, *args)

    def _bearer(
        self, headers: Collection[tuple[bytes, bytes]], now: float, keys_reloaded: bool
    ) -> Reading:
        token, why = bearer_token(headers)
        if token is None:
            if why or self._header_only:
                self._debug("bearer: %s, unauthenticated", why or "no Authorization header")
            return _ANONYMOUS
        reading = self._verified(token, "header", now, keys_reloaded)
        if reading.claims is None or self._known is None:
            return reading
        live = live_bearer(reading, reading.claims, self._known, now, self._audited)
        if live is None:
            self._debug("bearer: session revoked, header ignored")
            return _ANONYMOUS
        return live

    def _verified(
        self, token: str, credential: Credential, now: float, keys_reloaded: bool
    ) -> Reading:
        """A token that is an identity by itself (a bearer header, a gateway's cookie):
        its claims when it verifies, else anonymous (or a key reload first, when it names a
        key id the key set does not hold yet)."""
        verifier = self._verifier
        try:
            claims = verifier.verify(token, now)
        except UnknownKeyError as exc:
            if not keys_reloaded and verifier.key_source is not None:
                return Reading(access=token, then=RELOAD)
            self._debug("%s: token rejected: %s", credential, exc)
            return _ANONYMOUS
        except TokenError as exc:
            self._debug("%s: token rejected: %s", credential, exc)
            return _ANONYMOUS
        return Reading(
            token=token,
            token_type="Bearer",  # noqa: S106 - a token type, not a secret
            claims=claims,
            access=token,
            credential=credential,
        )

    def _gateway_cookie(
        self,
        headers: Collection[tuple[bytes, bytes]],
        method: str | None,
        scheme: str,
        now: float,
        keys_reloaded: bool,
    ) -> Reading | Refused:
        """The access cookie an auth gateway sets (``auth_type="gateway"``): an identity by
        itself, with no state cookie, no refresh and no cookie ever written here."""
        access = self._cache.header(cookie_header(headers)).key[0]
        if access is None:
            return _ANONYMOUS
        reading = self._verified(access, "gateway", now, keys_reloaded)
        if reading.claims is not None and method not in SAFE_METHODS:
            reason = self._forgery.gateway_forgery(headers, method, scheme)
            if reason is not None:
                return Refused(reason)
        return reading

    def _cookies(
        self,
        parsed: ParsedHeader,
        headers: Collection[tuple[bytes, bytes]],
        method: str | None,
        path: str,
        scheme: str,
        now: float,
        safe: bool,
        keys_reloaded: bool,
    ) -> Reading | Refused:
        """The full read: the cookies, the state cookie's binding, the forgery checks, the
        access token, and whether a session check or a refresh is needed."""
        if not parsed.present:
            if not safe and method is not None:
                reason = self._forgery.login_forgery(headers, path, scheme)
                if reason is not None:
                    return Refused(reason)
            return _ANONYMOUS  # none of the kit's cookies: nothing to check or refresh
        access, raw_state, refresh_token = parsed.key
        # These very cookies were read before and their windows still hold: the session's
        # record says what the state codec and the verifier would (they handed it what
        # they remembered of them).
        record = self._cache.known(parsed, now)
        session = None
        if record is None and raw_state is not None:
            session = self._codec.loads(raw_state)
        migrate = False
        if record is None and raw_state is not None and session is None:
            self._debug("state cookie rejected (tampered, foreign or too old)")
        elif session is not None:
            bound = belongs(session, access, refresh_token)
            if bound is None:
                # A state cookie from version 0.1.0 (bound to the refresh token only): it
                # still holds its session, and with refresh configured it carries it into a
                # refresh now, which issues the cookies bound to the access token too, so
                # nobody is signed out by the upgrade.
                if self._refresh_interval is not None:
                    self._debug("state cookie from version 0.1.0; refreshing to re-bind it")
                    migrate = True
            elif not bound:
                # Another session's state (its user state, its CSRF binding), or an older
                # one of this session (an old user state) next to a newer access token.
                self._debug("state cookie belongs to another session or access token; ignored")
                session = None

        if record is not None:
            state_id: str | None = record.state_id
        else:
            state_id = session.state_id if session is not None else None
        if (access is not None or refresh_token is not None) and not safe:
            reason = self._forgery.cookie_forgery(headers, method, path, scheme, state_id)
            if reason is not None:
                # Before any refresh: a forged request must not even rotate tokens.
                return Refused(reason)
        token = token_type = claims = expired_claims = None
        expired = False
        if record is not None:
            user_state = record.user_state.copy()
            claims, token, token_type = record.claims.copy(), access, parsed.token_type
        elif session is None:
            # An identity is the access token *and* its session's state cookie (the session
            # id, the user state, the binding to these tokens). Without the state cookie the
            # user would be the bare claims instead of the user state sign_in gave, so a
            # route reading user["name"] would fail: the request is anonymous, its cookies
            # are left as they are, and no refresh is attempted (anyone can send a refresh
            # cookie; only one paired with its signed state cookie is a session's).
            if access is not None or refresh_token is not None:
                self._debug(
                    "no valid state cookie for these tokens (missing, rejected, or issued "
                    "with other tokens): anonymous, cookies left as they are"
                )
            return Reading(refresh_token=refresh_token)
        else:
            user_state = session.user_state
        if record is None and access is not None:
            try:
                claims = self._verifier.verify(access, now)
            except TokenExpiredError as exc:
                expired, expired_claims = True, exc.claims
                self._debug("access token expired")
            except VerificationUnavailableError as exc:
                self._debug("access token cannot be verified now: %s", exc)
                return Reading(
                    state_id=state_id,
                    user_state=user_state,
                    refresh_token=refresh_token,
                    then=UNAVAILABLE,
                )
            except TokenError as exc:
                reload = isinstance(exc, UnknownKeyError) and not keys_reloaded
                if reload and self._verifier.reloads:
                    return Reading(
                        state_id=state_id,
                        user_state=user_state,
                        refresh_token=refresh_token,
                        access=access,
                        then=RELOAD,
                    )
                # A forged or foreign token (or a key unknown after the reload) is not an
                # expired session: no refresh for it.
                self._debug("access token rejected: %s", exc)
                return Reading(
                    state_id=state_id, user_state=user_state, refresh_token=refresh_token
                )
            else:
                token, token_type = access, parsed.token_type
        interval = self._refresh_interval
        then: Then = DONE
        if (
            interval is not None
            and refresh_token is not None
            and (migrate or claims is None or claims["exp"] - now <= interval)
        ):
            then = REFRESH
        family = None
        if claims is not None and self._known is not None:
            family = claims.get(SESSION_CLAIM)
            known = self._known(family, now) if isinstance(family, str) else False
            if known is False:
                self._debug("session revoked; clearing every auth cookie")
                # With the claims of the token presented, for the audit event that says so;
                # the one shared answer when nobody receives that event.
                if self._audited:
                    return Reading(claims=claims, then=CLEAR)
                return _SESSION_OVER
            if known is None:
                then |= CHECK
        elif claims is not None and self._checked:
            then |= CHECK
        reading = Reading(
            token=token,
            token_type=token_type,
            claims=claims,
            state_id=state_id,
            user_state=user_state,
            refresh_token=refresh_token,
            access=access,
            expired=expired,
            then=then,
            expired_claims=expired_claims,
            credential="cookie",
        )
        if then is DONE and safe and token is not None and claims is not None:
            self._remember(parsed, record, reading, claims, now, family)
        return reading

    def _remember(
        self,
        parsed: ParsedHeader,
        record: CachedReading | None,
        reading: Reading,
        claims: dict[str, Any],
        now: float,
        family: str | None,
    ) -> None:
        """Remember a signed-in session for as long as it stays the same: the token's and
        the state cookie's validity windows, and (with refresh configured) until a refresh
        falls due. Only outcomes that needed no I/O are remembered; with a session check,
        the family is asked of its view again on every use. Unsafe methods never read it."""
        token_type = reading.token_type or _BEARER
        if record is None:
            interval, due = self._refresh_interval, math.inf
            if interval is not None and reading.refresh_token is not None:
                due = claims["exp"] - interval
            self._cache.take_over(parsed, self._verifier, self._codec, reading, due, family, now)
        elif record.token_type != token_type:
            # The same session under another token-type cookie: its record, retyped.
            retyped = replace(record, token_type=token_type, header=None)
            self._cache.remember(parsed, retyped, now)
