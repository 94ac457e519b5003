"""Calling the app's refresh and revocation callbacks, sync or async, within their time limit."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread

from ..callback import RefreshParam
from ..errors import ClientRefusedError, RefreshError, RefreshTimeoutError
from ..refreshconfig import RefreshConfig
from .acceptance import classified, failed
from .context import RefreshContext
from .outcomes import Outcome, Unavailable

__all__ = ["revoke_at_auth_server", "run_callback"]

logger = logging.getLogger("fastapi_authkit")


async def run_callback(
    context: RefreshContext, refresh: RefreshConfig, param: RefreshParam, state_id: str | None
) -> Outcome:
    """Call the refresh callback once and classify its answer. Never raises an Exception."""
    try:
        result = await _invoke(refresh.refresh_api_callback, param, refresh.timeout)
    except TimeoutError:
        timeout = RefreshTimeoutError(
            f"refresh_api_callback did not answer within {refresh.timeout}s"
        )
        return failed(context.notices, timeout)
    except ClientRefusedError as exc:
        # The operator's mistake, not the user's and not the auth server's outage: the
        # session is kept (503 meanwhile), said once per run at ERROR, not as "transient".
        context.notices.client_refused(
            "refresh impossible, the auth server refuses this app's client; sessions are "
            "kept and protected routes answer 503 until the configuration is fixed: %s",
            exc,
            exc=exc,
        )
        return Unavailable(exc, cause=type(exc).__name__)
    except Exception as exc:
        error = RefreshError(f"refresh_api_callback raised {type(exc).__name__}: {exc}")
        return failed(context.notices, error, cause=exc)
    context.notices.refresh_answered()
    token = getattr(result, "new_auth_token", None)
    if isinstance(token, str):
        # A key id we do not hold in a token the auth server itself just handed us is a key
        # rotation: reload the key set now rather than refusing the token.
        await context.verifier.reload_keys_for(token, trusted=True)
    return classified(context, result, param, state_id)


async def revoke_at_auth_server(refresh: RefreshConfig, refresh_token: str) -> bool | None:
    """After a sign-out, call the revocation hook (``refresh.revoke``, RFC 7009) with the
    session's refresh token, within the callback timeout: True when it answered, False when
    it failed, None without a hook. Never raises: a hook that fails is logged as an error,
    and the cookies are cleared all the same."""
    if refresh.revoke is None:
        return None
    try:
        # Shielded: a client that goes away mid-logout must not leave the session alive.
        with anyio.CancelScope(shield=True):
            await _invoke(refresh.revoke, refresh_token, refresh.timeout)
        return True
    except TimeoutError:
        logger.error(
            "sign-out could not revoke the session at the auth server: the revocation hook "
            "did not answer within %ss (the cookies are cleared)",
            refresh.timeout,
        )
    except Exception as exc:
        logger.error(
            "sign-out could not revoke the session at the auth server: %s: %s (the cookies "
            "are cleared)",
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
    return False


async def _invoke(callback: Callable[[Any], object], argument: object, limit: float) -> object:
    """Call one of the app's callbacks (refresh, revoke), sync or async, within ``limit``
    seconds (the configured callback timeout)."""
    with anyio.fail_after(limit):
        if inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
            getattr(callback, "__call__", None)  # noqa: B004 - async callable objects
        ):
            result: object = await callback(argument)  # type: ignore[misc]
        else:
            # A sync callback may block (requests, a DB driver); keep it off the event loop.
            # If it hangs, the request stops waiting; the thread is abandoned.
            result = await anyio.to_thread.run_sync(callback, argument, abandon_on_cancel=True)
            if inspect.isawaitable(result):
                result = await result
    return result
