"""What the request reader decides about a request: the typed answers it gives the middleware.

:meth:`~fastapi_authkit.reader.RequestReader.read` answers with one of three:

* :class:`Refused`: a cookie-carrying request that looks forged (cross-site, or an unsafe
  method without the session's CSRF token), to be refused before anything else happens;
* :class:`Reading`: what the cookies (or the bearer header) say, and in ``then`` the I/O
  the middleware still has to carry out (:class:`Then`);
* :class:`CachedReading`: a signed-in session's cookies read before, served again while
  everything that made it signed in still holds. A browser repeats the same header on
  every request, so this is the common answer, and the cheapest.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from .config import Credential
from .cookies import CookieNames, session_tokens
from .jsoncopy import Copyable

__all__ = [
    "CHECK",
    "CLEAR",
    "DONE",
    "REFRESH",
    "RELOAD",
    "SAFE_METHODS",
    "UNAVAILABLE",
    "CachedReading",
    "Decision",
    "Reading",
    "Refused",
    "Then",
]

# Everything else can change state: POST, PUT, PATCH, DELETE and any extension method.
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class Then(enum.IntFlag):
    """What a :class:`Reading` still needs, carried out by the middleware in this order.

    Only ``CHECK`` and ``REFRESH`` combine; ``RELOAD``, ``CLEAR`` and ``UNAVAILABLE`` always
    stand alone, so they are tested with ``is``. ``in`` tests the others: a flag's ``&`` is
    Python code that builds a new member, where ``is`` and truth are the int's own.
    """

    DONE = 0
    CHECK = 1  # ask the session check (revocation) about the verified token
    REFRESH = 2  # refresh the access token
    # The access token names a key id the key set does not hold yet (a provider's key
    # rotation): reload the keys (rate-limited I/O), then read the request again with
    # keys_reloaded=True.
    RELOAD = 4
    CLEAR = 8  # the session is over: no identity, every cookie deleted
    # The access token cannot be verified now (its introspection endpoint is down): no
    # identity, no refresh, cookies untouched; protected routes answer 503.
    UNAVAILABLE = 16


# The members under module names too, as ``re.IGNORECASE`` is ``re.RegexFlag.IGNORECASE``.
DONE: Final = Then.DONE
CHECK: Final = Then.CHECK
REFRESH: Final = Then.REFRESH
RELOAD: Final = Then.RELOAD
CLEAR: Final = Then.CLEAR
UNAVAILABLE: Final = Then.UNAVAILABLE


class Refused(NamedTuple):
    """Refuse the request (403, or a WebSocket close before accept): it looks forged."""

    reason: str


class Reading(NamedTuple):
    """What the cookies (or the bearer header) say, and the I/O still needed (``then``).

    ``token``/``token_type``/``claims`` describe a verified, unexpired access token (all
    None otherwise); ``state_id`` and ``user_state`` come from a valid state cookie of this
    session. In cookie mode there are claims only with that state cookie: an access token
    without its session's state cookie is no identity, so the user is always the user
    state ``sign_in`` gave (or the claims when it gave none), never one for the other.
    ``refresh_token`` is the refresh cookie. ``access`` is the access token as
    presented (also when expired: it goes to the refresh callback), ``expired`` whether it
    was correctly signed but past ``exp``.

    With ``then`` :data:`CLEAR` (the session is known to be over: revoked, or past its
    absolute lifetime) every cookie goes and there is no refresh; its ``claims``, when an
    audit hook wants them, are the presented token's: never an identity.

    A tuple (built with keywords, read by name) rather than a dataclass: one is built for
    most requests that are not a :class:`CachedReading`, and a tuple is the cheapest to build.
    """

    token: str | None = None
    token_type: str | None = None
    claims: dict[str, Any] | None = None
    state_id: str | None = None
    user_state: Any = None
    refresh_token: str | None = None
    access: str | None = None
    expired: bool = False
    then: Then = DONE
    # An expired token's claims (authentic, not valid): whom a refresh is for.
    expired_claims: dict[str, Any] | None = None
    # Which credential the claims came from (None without claims).
    credential: Credential | None = None


@dataclass(slots=True, eq=False)
class CachedReading:
    """A signed-in session's reading, served again for its cookies until ``valid_until``
    (and, with a session check, while its view says ``family`` is live; its window opened
    before it was made, which the cache's ``since`` stands for). Always a cookie session
    with nothing left to do.

    It is also the one record the reader's cache keeps of the session
    (:mod:`fastapi_authkit.readercache`): what the verifier and the state codec would
    otherwise each remember of it, less the access and refresh tokens: whatever served it
    (the Cookie header, or exactly these cookies) means the request carries them, so
    :class:`~fastapi_authkit.authstate.AuthState` reads them from its own cookies when a
    route asks. ``claims`` and ``user_state`` are remembered values
    (:func:`fastapi_authkit.jsoncopy.copyable`): ``.copy()`` gives each request a private
    copy, since every request may change its own. ``session`` is the digest of the
    session's cookies the cache knows it by; ``header``, the digest of the Cookie header
    it was last served for (the cache's, and the one field that changes).
    """

    valid_until: float
    token_type: str
    claims: Copyable
    state_id: str
    user_state: Copyable
    family: str | None  # asked of the session check's view on every use, when there is one
    session: bytes
    header: bytes | None = None

    def reading(self, headers: Iterable[tuple[bytes, bytes]], names: CookieNames) -> Reading:
        """This session's :class:`Reading`, nothing left to do (for a request read again),
        with the access and refresh tokens of the request's own ``headers`` (the record
        keeps neither)."""
        access, refresh_token = session_tokens(headers, names)
        return Reading(
            token=access,
            token_type=self.token_type,
            claims=self.claims.copy(),
            state_id=self.state_id,
            user_state=self.user_state.copy(),
            refresh_token=refresh_token,
            access=access,
            credential="cookie",
        )


Decision = CachedReading | Reading | Refused
