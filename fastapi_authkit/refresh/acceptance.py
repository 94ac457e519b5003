"""Accepting a refresh answer: a :class:`RefreshResult` checked and turned into an outcome.

When the answer rotated the refresh token but its access token cannot be used here (a key
we do not hold yet, a provider clock ahead, a wrong audience), the outcome keeps the
:class:`Successor`: its cookies are written all the same, because the auth server has
already consumed the old refresh token and would take its next presentation for theft.
"""

from __future__ import annotations

import logging
from typing import Any

from ..callback import RefreshParam, RefreshResult
from ..errors import AuthKitError, InvalidRefreshResultError
from ..notices import Notices
from ..session import issue_session, issue_successor, new_state_id
from ..validation import is_number
from .context import RefreshContext
from .outcomes import Ended, Outcome, Renewed, Successor, Unavailable

__all__ = ["classified", "failed"]

logger = logging.getLogger("fastapi_authkit")


def classified(
    context: RefreshContext,
    result: object,
    param: RefreshParam,
    state_id: str | None,
    issued_at: float | None = None,
) -> Outcome:
    """The outcome of the answer ``result`` to ``param``; an unusable answer is logged and
    is the transient failure it is. Never raises an Exception.

    ``issued_at`` is the time the cookies are written at (their Max-Age and the state
    cookie's timestamp), when it is not now: every process handing out one rotated pair
    writes it at the time of the process that rotated, so that all write the same bytes."""
    try:
        return _accept(context, result, param, state_id, issued_at)
    except InvalidRefreshResultError as exc:
        logger.error("refresh result rejected, nothing stored: %s", exc)
        return Unavailable(exc)
    except Exception as exc:
        # Whatever else an unexpected answer trips over is the same case, never a 500.
        error = InvalidRefreshResultError(f"unusable refresh result: {exc!r}")
        logger.error("refresh result rejected, nothing stored: %s", error, exc_info=exc)
        return Unavailable(error)


def failed(
    notices: Notices,
    error: AuthKitError,
    *,
    cause: BaseException | None = None,
    message: str = "refresh failed transiently; session kept: %s",
) -> Unavailable:
    """A transient refresh failure, the session kept: logged as part of its streak (with
    ``cause``'s traceback when it starts one; while the auth server is down every refresh
    fails the same way, and the rest of the streak is counted)."""
    notices.refresh_failed(message, error, exc=cause)
    return Unavailable(error, cause=type(cause).__name__ if cause is not None else None)


def _accept(
    context: RefreshContext,
    result: object,
    param: RefreshParam,
    state_id: str | None,
    issued_at: float | None,
) -> Outcome:
    """The outcome of ``result``, or InvalidRefreshResultError."""
    if not isinstance(result, RefreshResult):
        raise InvalidRefreshResultError(
            f"refresh_api_callback must return RefreshResult, got {type(result).__name__}"
        )
    if not result.is_success:
        return Ended()
    new_refresh = result.new_refresh_token
    if new_refresh is not None and not isinstance(new_refresh, str):
        raise InvalidRefreshResultError("new_refresh_token must be a str or None")
    user_state = (
        result.new_auth_user_state
        if result.new_auth_user_state is not None
        else param.auth_user_state
    )
    state_id = state_id or new_state_id()
    now = context.clock()
    try:
        token = result.new_auth_token
        if not isinstance(token, str) or not token:
            raise InvalidRefreshResultError("is_success=True but new_auth_token is missing")
        try:
            claims = context.verifier.verify(token, now)
        except AuthKitError as exc:
            raise InvalidRefreshResultError(
                f"the callback's new access token does not verify: {exc}"
            ) from exc
        refresh_token = new_refresh or param.refresh_token
        try:
            set_cookies = issue_session(
                context.writer,
                token=token,
                token_type=result.new_auth_token_type,
                claims=claims,
                state_id=state_id,
                user_state=user_state,
                refresh_token=new_refresh,
                refresh_expires_in=result.new_refresh_token_expires_in,
                access_expires_in=result.new_auth_token_expire_in,
                session_refresh_token=refresh_token,
                now=now if issued_at is None else issued_at,
            )
        except AuthKitError as exc:
            raise InvalidRefreshResultError(
                f"the callback's result cannot be stored: {exc}"
            ) from exc
    except InvalidRefreshResultError as exc:
        if not new_refresh or new_refresh == param.refresh_token:
            raise  # nothing was rotated: the presented refresh token still works
        return _keep_successor(context, exc, result, param, new_refresh, state_id, user_state, now)
    return Renewed(
        token=token,
        token_type=result.new_auth_token_type,
        claims=claims,
        user_state=user_state,
        state_id=state_id,
        refresh_token=refresh_token,
        set_cookies=set_cookies,
    )


def _keep_successor(
    context: RefreshContext,
    error: InvalidRefreshResultError,
    result: RefreshResult,
    param: RefreshParam,
    refresh_token: str,
    state_id: str,
    user_state: Any,
    now: float,
) -> Unavailable:
    """The access token is unusable but the refresh token was rotated: keep the successor,
    or there is no session left to continue (the auth server consumed the old token)."""
    expires_in = result.new_refresh_token_expires_in
    if not is_number(expires_in):
        expires_in = None  # unreadable: the token's own exp or refresh_max_age decides
    try:
        new_token = result.new_auth_token
        cookies = issue_successor(
            context.writer,
            state_id=state_id,
            user_state=user_state,
            refresh_token=refresh_token,
            refresh_expires_in=expires_in,
            access_tokens=(param.auth_token, new_token if isinstance(new_token, str) else None),
            now=now,
        )
    except AuthKitError as exc:
        logger.error(
            "refresh result rejected, nothing stored: %s (its rotated refresh token cannot "
            "be stored either: %s; the session ends at the next refresh)",
            error,
            exc,
        )
        return Unavailable(error)
    logger.error(
        "refresh result's access token rejected; the rotated refresh token is kept, the "
        "next request refreshes with it: %s",
        error,
    )
    return Unavailable(error, Successor(state_id, user_state, refresh_token, cookies))
