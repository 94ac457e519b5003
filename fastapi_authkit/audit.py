"""The audit reports of what the middleware did for a request, to the ``on_event`` hook.

Each report goes to the configuration's :data:`~fastapi_authkit.eventdelivery.AuditSink`
(``store.events``): its hook, or :data:`~fastapi_authkit.eventdelivery.SILENT` when no hook
is set, so that reporting needs no check for a hook and builds no event without one. The
layers below report nothing: a refresh returns its outcome, and what the outcome carries is
what its event says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .errors import StoreUnavailableError
from .eventdelivery import AuditSink
from .events import (
    AuthEvent,
    Refreshed,
    RefreshFailed,
    RequestRefused,
    ReuseDetected,
    RevokedSession,
    SessionEnded,
    SignedOut,
    StoreUnavailable,
    refusal_reason,
)
from .refresh.outcomes import Ended, Outcome, Renewed

__all__ = [
    "report_refresh",
    "report_refused",
    "report_revoked",
    "report_route_events",
    "report_unchecked",
]


def report_refused(audit: AuditSink, scope: Mapping[str, Any], detail: str) -> None:
    """A request refused before any refresh (CSRF, cross-site), ``detail`` saying why."""
    audit.emit(RequestRefused, scope, None, reason=refusal_reason(detail), detail=detail)


def report_revoked(
    audit: AuditSink, scope: Mapping[str, Any], claims: Mapping[str, Any] | None
) -> None:
    """The session of ``claims`` found revoked: its cookies are cleared."""
    audit.emit(RevokedSession, scope, claims)


def report_unchecked(audit: AuditSink, scope: Mapping[str, Any], claims: Mapping[str, Any]) -> None:
    """The session of ``claims`` could not be checked (store down): the request fails closed."""
    audit.emit(StoreUnavailable, scope, claims, operation="session_check")


def report_refresh(
    audit: AuditSink,
    scope: Mapping[str, Any],
    hint: Mapping[str, Any] | None,
    outcome: Outcome,
) -> None:
    """The event of the refresh this request made, whose old access token's claims are
    ``hint``. A ``repeat`` was reported where it was first given, and is not again."""
    if isinstance(outcome, Renewed):
        if not outcome.repeat:
            new_jti = _jti(outcome.claims)
            audit.emit(Refreshed, scope, outcome.claims, old_jti=_jti(hint), new_jti=new_jti)
    elif isinstance(outcome, Ended):
        if outcome.repeat:
            return
        if outcome.reason == "reuse":
            # The family the store revoked, which the presented token's holder named.
            family = outcome.family
            audit.emit(ReuseDetected, scope, family if family is not None else hint)
        elif outcome.reason == "revoked":
            audit.emit(RevokedSession, scope, hint)
        else:
            audit.emit(SessionEnded, scope, hint, reason=outcome.reason)
    elif isinstance(outcome.error, StoreUnavailableError):
        audit.emit(StoreUnavailable, scope, hint, operation="refresh")
    else:
        # The callback's own exception type when there is one, never its message.
        error = outcome.cause or type(outcome.error).__name__
        audit.emit(RefreshFailed, scope, hint, error=error)


def report_route_events(
    audit: AuditSink, events: tuple[AuthEvent, ...], revoked: bool | None
) -> None:
    """The events of what the route did (sign-in, sign-out), now that the response carries
    it; a sign-out left to the revocation hook says what the hook answered (``revoked``)."""
    for event in events:
        if isinstance(event, SignedOut) and event.revoked is None:
            event = replace(event, revoked=revoked)
        audit.deliver(event)


def _jti(claims: Mapping[str, Any] | None) -> str | None:
    jti = claims.get("jti") if claims is not None else None
    return jti if isinstance(jti, str) else None
