"""Refreshing through the built-in issuer's own rotation: one call to its store."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from ..callback import RefreshParam, RefreshResult
from ..clientinfo import ClientInfo
from ..errors import RefreshError, StoreUnavailableError
from ..session import new_state_id
from ..source import SESSION_CLAIM, Rotate, Rotation
from .acceptance import classified, failed
from .context import RefreshContext
from .outcomes import Ended, Outcome, Renewed

__all__ = ["run_rotation"]


async def run_rotation(
    context: RefreshContext,
    rotate: Rotate,
    param: RefreshParam,
    hint: Mapping[str, Any] | None,
    state_id: str | None,
    client: ClientInfo | None = None,
) -> Outcome:
    """Refresh through the token source's own rotation (the built-in issuer): one call to
    its store, exactly-once across processes by itself, so no cross-process flight around
    it. ``hint`` is the old access token's verified claims (also when expired): whom to mint
    the successor for before that call. What the cookies are built from (this process's
    time, the state id, the user state) is sealed with the pair, so a process that gets
    the pair again within the grace period builds the same cookies. ``client`` (who
    refreshes) is recorded with the rotation, in that same call. Never raises an Exception."""
    now = context.clock()
    state_id = state_id or new_state_id()
    sealed = json.dumps(
        {"n": now, "s": state_id, "u": param.auth_user_state}, separators=(",", ":")
    )
    subject = hint.get("sub") if hint is not None else None
    try:
        rotation = await rotate(
            param.refresh_token,
            subject=subject if isinstance(subject, str) else None,
            context=sealed,
            now=now,
            client=client,
        )
    except StoreUnavailableError as exc:
        return failed(context.notices, exc)
    except Exception as exc:
        error = RefreshError(f"the session could not be rotated: {exc!r}")
        return failed(context.notices, error, cause=exc, message="refresh failed; session kept: %s")
    context.notices.refresh_answered()
    if rotation.access_token is None:
        return _ended(rotation)
    try:
        written = json.loads(rotation.context)
        issued_at, state_id, user_state = float(written["n"]), str(written["s"]), written["u"]
    except (ValueError, TypeError, KeyError):
        issued_at, user_state = now, param.auth_user_state  # sealed by an older version
    result = RefreshResult(
        is_success=True,
        new_auth_token=rotation.access_token,
        new_refresh_token=rotation.refresh_token,
        new_refresh_token_expires_in=rotation.refresh_expires_in,
        new_auth_user_state=user_state,
    )
    outcome = classified(context, result, param, state_id, issued_at)
    if rotation.replay and isinstance(outcome, Renewed):
        # The pair the first call already handed out (and reported).
        return replace(outcome, repeat=True)
    return outcome


def _ended(rotation: Rotation) -> Ended:
    """The session a rotation found over, by what ended it."""
    if rotation.ended == "reuse":
        # The family the store revoked, which the presented token's holder named.
        family = {"sub": rotation.subject, SESSION_CLAIM: rotation.family_id}
        return Ended("reuse", family if rotation.subject else None)
    if rotation.ended == "revoked":
        return Ended("revoked")
    # Past its lifetime, or a token the store no longer knows (its idle lifetime ran out:
    # the store forgets it): the state cookie bound to it says it was issued.
    return Ended("expired")
