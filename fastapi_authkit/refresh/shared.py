"""The cross-process single flight: one refresh call per refresh token across processes.

The processes meet in a shared store (Redis): the first to claim the flight calls the
callback and publishes its answer, sealed with the presented refresh token; the others poll
until it is there, and verify it again before they use it.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any, Final

import anyio

from ..callback import RefreshParam
from ..errors import AuthKitError, RefreshError, RefreshTimeoutError, StoreUnavailableError
from ..refreshconfig import RefreshConfig
from ..session import successor_cookies
from ..stores.base import SessionStore
from ..stores.sealing import open_sealed, seal, token_id
from .app_callback import run_callback
from .context import RefreshContext
from .flight import ENDED_MEMORY
from .outcomes import ENDED, Ended, Outcome, Renewed, Successor, Unavailable

__all__ = ["forget_shared", "run_shared"]

logger = logging.getLogger("fastapi_authkit")

# A published result stays readable at least this long, so that requests that were waiting
# on the flight always find it, even with grace_period=0.
_MIN_RESULT_TTL: Final = 1.0
# Waiting workers poll Redis: briefly at first (a callback often answers in milliseconds),
# never slower than every 20 ms.
_POLL_START: Final = 0.002
_POLL_MAX: Final = 0.02
_ENDED: Final = b"E"


def _flight_alias(refresh_token: str) -> str:
    """The id a published result is also known by: its successor refresh token's."""
    return token_id(refresh_token, "flight-alias")


async def forget_shared(shared: SessionStore | None, refresh_token: str) -> None:
    """After a sign-out, drop the shared refresh result that leads to that session, so a
    rotated-out predecessor presented within the grace period cannot revive it."""
    if shared is None:
        return
    try:
        await shared.flight_forget(_flight_alias(refresh_token))
    except StoreUnavailableError as exc:
        logger.error("sign-out could not drop the shared refresh result: %s", exc)


def _encode(outcome: Renewed | Successor) -> bytes:
    if isinstance(outcome, Successor):
        data: dict[str, Any] = {"k": "S"}
    else:
        data = {"k": "R", "t": outcome.token, "tt": outcome.token_type}
    data.update(
        u=outcome.user_state,
        s=outcome.state_id,
        r=outcome.refresh_token,
        sc=[cookie.decode("latin-1") for cookie in outcome.set_cookies],
    )
    return json.dumps(data, separators=(",", ":")).encode()


async def _decode(context: RefreshContext, param: RefreshParam, value: bytes) -> Outcome:
    if value == _ENDED:
        return ENDED
    opened = open_sealed(param.refresh_token, value[1:]) if value[:1] == b"R" else None
    if opened is None:
        return Unavailable(RefreshError("another process's refresh result cannot be opened"))
    data = json.loads(opened)
    cookies = tuple(cookie.encode("latin-1") for cookie in data["sc"])
    if data["k"] == "S":
        successor = Successor(data["s"], data["u"], data["r"], cookies)
        error = RefreshError("another process's refresh kept the successor; token unusable")
        return Unavailable(error, successor)
    token = data["t"]
    # The auth server handed this token to the other process: a new key id is a rotation.
    await context.verifier.reload_keys_for(token, trusted=True)
    try:
        # Verified again: the store is shared infrastructure, not part of the trust root.
        claims = context.verifier.verify(token, context.clock())
    except AuthKitError as exc:
        # Its refresh token was rotated all the same: keep the successor here too.
        logger.error("shared refresh result does not verify here; successor kept: %s", exc)
        kept = successor_cookies(
            context.writer,
            cookies,
            state_id=data["s"],
            user_state=data["u"],
            refresh_token=data["r"],
            access_tokens=(param.auth_token, token),
        )
        successor = Successor(data["s"], data["u"], data["r"], kept)
        return Unavailable(RefreshError(f"shared refresh result does not verify: {exc}"), successor)
    return Renewed(
        token=token,
        token_type=data["tt"],
        claims=claims,
        user_state=data["u"],
        state_id=data["s"],
        refresh_token=data["r"],
        set_cookies=cookies,
        repeat=True,
    )


async def _publish(
    shared: SessionStore,
    grace_period: float,
    now: float,
    key: str,
    owner: str,
    param: RefreshParam,
    outcome: Outcome,
) -> None:
    """Make ``outcome`` the flight's answer for the processes waiting on ``key`` (or let
    the next one try, when it is no answer to share)."""
    ttl = max(grace_period, _MIN_RESULT_TTL)
    kept: Renewed | Successor | None = outcome if isinstance(outcome, Renewed) else None
    if isinstance(outcome, Unavailable) and outcome.successor is not None:
        kept = outcome.successor
    if kept is not None:
        sealed = b"R" + seal(param.refresh_token, _encode(kept))
        alias = _flight_alias(kept.refresh_token)
        await shared.flight_finish(key, owner, sealed, now=now, ttl=ttl, alias=alias)
        # As in SingleFlight: the previous rotation's answer must not serve a grandparent.
        await shared.flight_forget(_flight_alias(param.refresh_token))
    elif isinstance(outcome, Ended):
        # Remembered as long as in one process, for every process.
        ttl = max(ttl, ENDED_MEMORY)
        await shared.flight_finish(key, owner, _ENDED, now=now, ttl=ttl, alias=None)
    else:
        await shared.flight_release(key, owner)


async def run_shared(
    context: RefreshContext,
    shared: SessionStore,
    refresh: RefreshConfig,
    param: RefreshParam,
    state_id: str | None,
) -> Outcome:
    """One callback call per refresh token across every process sharing ``shared``.

    The first process to claim the flight calls the callback and publishes the result
    (sealed with the presented refresh token); the others poll until it is there. The claim's
    lease outlasts the callback's timeout, so it cannot lapse while the call runs. A store
    that cannot be reached before the call makes the refresh unavailable (nothing consumed);
    one that fails after it does not take the answer away from this request. The answer
    given to the processes that did not call is a ``repeat``, unless it fails here.
    """
    key = token_id(param.refresh_token, "flight")
    owner = secrets.token_hex(8)
    lease = refresh.timeout + 5.0
    deadline = anyio.current_time() + lease
    delay = _POLL_START
    while True:
        try:
            flight = await shared.flight_claim(key, owner, now=context.clock(), lease=lease)
        except StoreUnavailableError as exc:
            logger.warning("refresh not attempted, shared store unavailable: %s", exc)
            return Unavailable(exc)
        if flight.status == "claimed":
            outcome = await run_callback(context, refresh, param, state_id)
            try:
                await _publish(
                    shared, refresh.grace_period, context.clock(), key, owner, param, outcome
                )
            except StoreUnavailableError as exc:
                logger.warning("refresh result not shared, store unavailable: %s", exc)
            return outcome
        if flight.status == "done" and flight.value is not None:
            return await _decode(context, param, flight.value)
        if anyio.current_time() >= deadline:
            return Unavailable(RefreshTimeoutError("another process's refresh did not finish"))
        await anyio.sleep(delay)
        delay = min(delay * 2, _POLL_MAX)
