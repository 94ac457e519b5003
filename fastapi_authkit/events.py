"""Audit events: what happened to a session, as typed records, and how they reach the hook.

``create_store(on_event=hook)`` gives the kit one callable, ``hook(event)``, plain or
``async``. Each event is a frozen dataclass deriving from :class:`AuthEvent`: when
(``at``, the configuration's clock), whose (``subject``, ``session``), and which request
(``path``, ``method``, client ``ip`` and ``user_agent``), plus the fields of its kind. No
event holds a token, a refresh token, a cookie value or a key: tokens are named by their
``jti`` (an id, not a credential) and sessions by the id the issuer's sessions list shows
(the access token's ``sid`` claim); a failure is named by its exception's type, never by
its message (which may quote what it failed on).

How they reach the hook (inline, or through a bounded queue that coalesces floods) is
:mod:`fastapi_authkit.eventdelivery`'s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

__all__ = [
    "AuthEvent",
    "EventHook",
    "EventKind",
    "LoginFailed",
    "LoginLocked",
    "RefreshFailed",
    "Refreshed",
    "RequestRefused",
    "ReuseDetected",
    "RevokedSession",
    "SessionEnded",
    "SignedIn",
    "SignedOut",
    "StoreUnavailable",
    "refusal_reason",
]

EventKind: TypeAlias = Literal[
    "signed_in",
    "refreshed",
    "refresh_failed",
    "session_ended",
    "reuse_detected",
    "signed_out",
    "request_refused",
    "revoked_session",
    "store_unavailable",
    "login_failed",
    "login_locked",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthEvent:
    """What every event says. ``kind`` names the event (each subclass has its own);
    ``at`` is the time (seconds since the epoch, the configuration's clock); ``subject`` the
    ``sub`` claim and ``session`` the ``sid`` claim (the built-in issuer's session id, as
    its sessions list shows it) of the access token concerned, each None when unknown;
    ``path`` and ``method`` the request's (``"WEBSOCKET"`` for a WebSocket handshake);
    ``ip`` and ``user_agent`` the client's (as the server saw it; see
    :func:`~fastapi_authkit.clientinfo.client_info`); ``count`` how many events this one
    stands for: 1, unless it is of
    :data:`~fastapi_authkit.eventdelivery.COALESCED_KINDS` and the same kind about the same
    session and client came again while it waited for an async hook (then this is the first
    of them, and ``at``, ``path`` and ``user_agent`` are the first's)."""

    kind: EventKind = field(init=False)
    at: float
    subject: str | None
    session: str | None
    path: str
    method: str
    ip: str | None
    user_agent: str | None
    count: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedIn(AuthEvent):
    """A session started (``sign_in``, ``issuer.sign_in``, ``issuer.issue_tokens``): ``jti``
    is its access token's."""

    kind: Literal["signed_in"] = field(init=False, default="signed_in")
    jti: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Refreshed(AuthEvent):
    """The refresh callback (or the issuer's rotation) handed out a new access token:
    ``old_jti`` (None when the browser had none left) and ``new_jti``. One event per call:
    requests that share the call (single flight, the grace period) add none."""

    kind: Literal["refreshed"] = field(init=False, default="refreshed")
    old_jti: str | None
    new_jti: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RefreshFailed(AuthEvent):
    """A refresh failed transiently (the callback raised, timed out or answered something
    unusable): nothing was cleared, the next request tries again. ``error`` is the
    exception's type name (``RefreshTimeoutError``, ``InvalidRefreshResultError``,
    ``RefreshError`` for whatever the callback raised)."""

    kind: Literal["refresh_failed"] = field(init=False, default="refresh_failed")
    error: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEnded(AuthEvent):
    """A refresh ended the session: ``reason`` is ``"callback"`` (it answered
    ``is_success=False``) or ``"expired"`` (the built-in issuer no longer holds the
    session: past its idle or absolute lifetime). Every auth cookie is cleared."""

    kind: Literal["session_ended"] = field(init=False, default="session_ended")
    reason: Literal["callback", "expired"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReuseDetected(AuthEvent):
    """A rotated-out refresh token was presented when no window covers it: after the
    issuer's ``grace`` and ``late_replay``, or after its successor was used (RFC 9700 reuse
    detection). The whole session family is revoked. ``subject`` and ``session`` are the
    family's."""

    kind: Literal["reuse_detected"] = field(init=False, default="reuse_detected")


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedOut(AuthEvent):
    """A session ended at the route's request (``sign_out``, ``issuer.sign_out``, the
    route revoking its own session). ``everywhere``: every session of the subject.
    ``revoked``: whether it was revoked server-side (at the issuer, or by the refresh
    callback's revocation hook); False when that failed (the cookies are cleared all the
    same), None when there is nothing to revoke it at. ``found`` (built-in issuer): whether
    the store still held the session (with ``everywhere``, any live session of the
    subject); False when its data was gone (flushed, swapped, evicted) or it had ended
    already: it is refused everywhere all the same. None when the store was not asked."""

    kind: Literal["signed_out"] = field(init=False, default="signed_out")
    everywhere: bool
    revoked: bool | None
    found: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRefused(AuthEvent):
    """A request was refused as cross-site, before anything else happened (403, or a
    WebSocket handshake closed): ``reason`` is ``"csrf"`` (no valid CSRF token),
    ``"origin"`` (a foreign, null or malformed ``Origin``) or ``"fetch_site"``
    (``Sec-Fetch-Site: cross-site``); ``detail`` says it in words."""

    kind: Literal["request_refused"] = field(init=False, default="request_refused")
    reason: Literal["csrf", "origin", "fetch_site"]
    detail: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RevokedSession(AuthEvent):
    """A request presented a session the issuer no longer holds live (signed out, revoked
    from the sessions list or by reuse detection, past its absolute lifetime): anonymous,
    every auth cookie cleared."""

    kind: Literal["revoked_session"] = field(init=False, default="revoked_session")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreUnavailable(AuthEvent):
    """The store (Redis) could not answer, so the kit failed closed: no session accepted
    that could not be checked, nothing cleared or consumed (protected routes answer 503).
    ``operation`` is what needed it: ``"session_check"``, ``"refresh"`` or ``"login_guard"``
    (the login guard could not count a sign-in attempt; see its ``fail_open``)."""

    kind: Literal["store_unavailable"] = field(init=False, default="store_unavailable")
    operation: Literal["session_check", "refresh", "login_guard"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginFailed(AuthEvent):
    """A sign-in attempt the login guard let in failed (the app's password check said no,
    or the route ended without saying it succeeded). ``account`` is the submitted account
    name as the guard counts it (normalized: NFKC, case-folded, at most 256 printable
    characters), whether or not such an account exists; ``failures`` how many attempts on
    it have not succeeded, this one included. ``subject`` and ``session`` are None."""

    kind: Literal["login_failed"] = field(init=False, default="login_failed")
    account: str
    failures: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginLocked(AuthEvent):
    """A failed attempt locked a counter of the login guard: ``locked`` says which, the
    ``"account"`` attempted (``account``, as in :class:`LoginFailed`) or the client
    ``"address"`` (``ip``; behind trusted proxies the forwarded one); ``failures`` its count
    of attempts not succeeded; ``until`` when the lock ends (seconds since the epoch).
    Sign-in attempts on it are answered 429 until then."""

    kind: Literal["login_locked"] = field(init=False, default="login_locked")
    account: str
    locked: Literal["account", "address"]
    failures: int
    until: float


EventHook: TypeAlias = Callable[[AuthEvent], "Awaitable[None] | None"]
"""``create_store(on_event=...)``: ``hook(event)``, a plain function (called inline, on the
event loop, in the request's context: keep it quick) or an async one (called from a
bounded queue, :data:`~fastapi_authkit.eventdelivery.HOOK_TIMEOUT` seconds per event).
What it raises is logged; its return value is ignored."""


def refusal_reason(detail: str) -> Literal["csrf", "origin", "fetch_site"]:
    """The :attr:`RequestRefused.reason` of a refusal the reader or ``sign_in`` explained
    with ``detail`` (see :func:`~fastapi_authkit.origins.cross_site_refused`)."""
    if detail.startswith("CSRF"):
        return "csrf"
    if detail.startswith("Sec-Fetch-Site"):
        return "fetch_site"
    return "origin"
