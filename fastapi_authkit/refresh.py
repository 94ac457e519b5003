"""Deciding to refresh, calling the app's callback, and sharing one call between requests.

The callback's answer becomes one of three outcomes:

* :class:`Renewed` — a new, verified token and the exact cookies that carry it;
* :class:`Ended` — ``is_success=False``: the session is over;
* :class:`Unavailable` — no definitive answer (raised, timed out, unusable result): nothing
  may be cleared, the next request tries again. When the callback did rotate the refresh
  token but its access token cannot be used here (a key we do not hold yet, a provider clock
  ahead, a wrong audience), the outcome carries the :class:`Successor`: its cookies are
  written all the same, because the auth server has already consumed the old refresh token
  and would take its next presentation for theft.

:class:`SingleFlight` makes concurrent requests carrying the same refresh token share one
callback call, and keeps a success for ``grace_period`` seconds so requests that were
already in flight with the old cookies get the same new cookies instead of a second call
(which a rotating auth server would take for token reuse), and a definitive failure for
:data:`ENDED_MEMORY` seconds, so the ended session's cookies replayed do not ask the auth
server again.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import anyio
import anyio.to_thread

from .callback import RefreshParam, RefreshResult
from .clientinfo import ClientInfo
from .config import AuthStore, RefreshConfig
from .errors import (
    AuthKitError,
    InvalidRefreshResultError,
    RefreshError,
    RefreshTimeoutError,
    StoreUnavailableError,
)
from .events import (
    Refreshed,
    RefreshFailed,
    ReuseDetected,
    RevokedSession,
    SessionEnded,
    StoreUnavailable,
)
from .session import issue_session, issue_successor, new_sid, successor_cookies
from .source import SESSION_CLAIM, Rotate, Rotation
from .stores.base import SessionStore
from .stores.sealing import open_sealed, seal, token_id
from .tokens import is_number

__all__ = [
    "Ended",
    "Outcome",
    "Renewed",
    "SingleFlight",
    "Successor",
    "Unavailable",
    "flight_alias",
    "revoke_at_auth_server",
    "run_callback",
    "run_rotation",
    "run_shared",
]

logger = logging.getLogger("fastapi_authkit")

# Bounds the memory of recent results; entries also expire after the grace period.
_MAX_RECENT: Final = 32_768
# How long a definitive "session over" (is_success=False) is remembered for its refresh
# token: that session's cookies replayed meanwhile (a script, requests still in flight) are
# answered without asking the auth server again. The answer cannot change (it is definitive),
# so the time only bounds the memory.
ENDED_MEMORY: Final = 60.0


@dataclass(frozen=True, slots=True)
class Renewed:
    token: str
    token_type: str
    claims: dict[str, Any]
    user_state: Any
    sid: str
    refresh_token: str
    set_cookies: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Ended:
    pass


@dataclass(frozen=True, slots=True)
class Successor:
    """A rotated refresh token kept although its access token could not be used: the
    session's state and the cookies that carry it (refresh, state, CSRF; not the access
    cookie)."""

    sid: str
    user_state: Any
    refresh_token: str
    set_cookies: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Unavailable:
    error: AuthKitError
    successor: Successor | None = None


Outcome: TypeAlias = Renewed | Ended | Unavailable
_ENDED_OUTCOME: Final = Ended()


def successor_token(outcome: Outcome) -> str | None:
    """The refresh token an outcome leads to, when it is one to remember and share."""
    if isinstance(outcome, Renewed):
        return outcome.refresh_token
    if isinstance(outcome, Unavailable) and outcome.successor is not None:
        return outcome.successor.refresh_token
    return None


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


def _accept(
    store: AuthStore,
    result: object,
    param: RefreshParam,
    sid: str | None,
    issued_at: float | None = None,
) -> Outcome:
    """Turn the callback's answer into an outcome, or raise InvalidRefreshResultError.

    ``issued_at`` is the time the cookies are written at (their Max-Age and the state
    cookie's timestamp), when it is not now: every process handing out one rotated pair
    writes it at the time of the process that rotated, so that all write the same bytes."""
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
    sid = sid or new_sid()
    now = store.clock()
    try:
        token = result.new_auth_token
        if not isinstance(token, str) or not token:
            raise InvalidRefreshResultError("is_success=True but new_auth_token is missing")
        try:
            claims = store.verifier.verify(token, now)
        except AuthKitError as exc:
            raise InvalidRefreshResultError(
                f"the callback's new access token does not verify: {exc}"
            ) from exc
        refresh_token = new_refresh or param.refresh_token
        try:
            set_cookies = issue_session(
                store,
                token=token,
                token_type=result.new_auth_token_type,
                claims=claims,
                sid=sid,
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
        return _keep_successor(store, exc, result, param, new_refresh, sid, user_state, now)
    return Renewed(
        token=token,
        token_type=result.new_auth_token_type,
        claims=claims,
        user_state=user_state,
        sid=sid,
        refresh_token=refresh_token,
        set_cookies=set_cookies,
    )


def _keep_successor(
    store: AuthStore,
    error: InvalidRefreshResultError,
    result: RefreshResult,
    param: RefreshParam,
    refresh_token: str,
    sid: str,
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
            store,
            sid=sid,
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
    return Unavailable(error, Successor(sid, user_state, refresh_token, cookies))


def _jti(claims: Mapping[str, Any] | None) -> str | None:
    jti = claims.get("jti") if claims is not None else None
    return jti if isinstance(jti, str) else None


def _failed(
    store: AuthStore,
    scope: Mapping[str, Any] | None,
    hint: Mapping[str, Any] | None,
    error: AuthKitError,
    *,
    cause: BaseException | None = None,
    message: str = "refresh failed transiently; session kept: %s",
) -> Outcome:
    """A transient refresh failure: logged as part of its streak (with ``cause``'s
    traceback when it starts one), reported, and the session kept. The audit event names
    ``cause``'s type when there is one (its message may quote what it was given)."""
    store.notices.refresh_failed(message, error, exc=cause)
    outcome = Unavailable(error)
    _report(store, scope, hint, outcome, failure=type(cause).__name__ if cause else None)
    return outcome


def _report(
    store: AuthStore,
    scope: Mapping[str, Any] | None,
    hint: Mapping[str, Any] | None,
    outcome: Outcome,
    *,
    failure: str | None = None,
) -> None:
    """The audit event of one refresh answer (the callback's, or the rotation's), for the
    request ``scope`` whose old access token's claims are ``hint``. ``failure`` names
    what failed, when it is not the outcome's error type (the callback's own exception)."""
    audit = store.events
    if audit is None or scope is None:
        return
    if isinstance(outcome, Renewed):
        audit.emit(
            Refreshed,
            scope,
            outcome.claims,
            old_jti=_jti(hint),
            new_jti=_jti(outcome.claims),
        )
    elif isinstance(outcome, Ended):
        audit.emit(SessionEnded, scope, hint, reason="callback")
    elif isinstance(outcome.error, StoreUnavailableError):
        audit.emit(StoreUnavailable, scope, hint, operation="refresh")
    else:
        audit.emit(RefreshFailed, scope, hint, error=failure or type(outcome.error).__name__)


async def run_callback(
    store: AuthStore,
    refresh: RefreshConfig,
    param: RefreshParam,
    sid: str | None,
    *,
    scope: Mapping[str, Any] | None = None,
    hint: Mapping[str, Any] | None = None,
) -> Outcome:
    """Call the refresh callback once and classify its answer. Never raises an Exception.
    ``scope`` (the request) and ``hint`` (its old access token's claims) are what the
    audit event of the answer is about."""
    # While the auth server is down every refresh fails the same way: the first failure of
    # a streak is logged with its traceback, the rest are counted (store.notices).
    try:
        result = await _invoke(refresh.refresh_api_callback, param, refresh.timeout)
    except TimeoutError:
        timeout = RefreshTimeoutError(
            f"refresh_api_callback did not answer within {refresh.timeout}s"
        )
        return _failed(store, scope, hint, timeout)
    except Exception as exc:
        error = RefreshError(f"refresh_api_callback raised {type(exc).__name__}: {exc}")
        return _failed(store, scope, hint, error, cause=exc)
    store.notices.refresh_answered()
    token = getattr(result, "new_auth_token", None)
    if isinstance(token, str):
        # A key id we do not hold in a token the auth server itself just handed us is a key
        # rotation: reload the key set now rather than refusing the token.
        await store.verifier.reload_keys_for(token, trusted=True)
    outcome = _classified(store, result, param, sid)
    _report(store, scope, hint, outcome)
    return outcome


def _classified(
    store: AuthStore,
    result: object,
    param: RefreshParam,
    sid: str | None,
    issued_at: float | None = None,
) -> Outcome:
    """:func:`_accept`, with an unusable answer logged as the transient failure it is."""
    try:
        return _accept(store, result, param, sid, issued_at)
    except InvalidRefreshResultError as exc:
        logger.error("refresh result rejected, nothing stored: %s", exc)
        return Unavailable(exc)
    except Exception as exc:
        # Whatever else an unexpected answer trips over is the same case, never a 500.
        error = InvalidRefreshResultError(f"unusable refresh result: {exc!r}")
        logger.error("refresh result rejected, nothing stored: %s", error, exc_info=exc)
        return Unavailable(error)


async def run_rotation(
    store: AuthStore,
    rotate: Rotate,
    param: RefreshParam,
    hint: Mapping[str, Any] | None,
    sid: str | None,
    client: ClientInfo | None = None,
    *,
    scope: Mapping[str, Any] | None = None,
) -> Outcome:
    """Refresh through the token source's own rotation (the built-in issuer): one call to
    its store, exactly-once across processes by itself, so no cross-process flight around
    it. ``hint`` is the old access token's verified claims (also when expired): whom to mint
    the successor for before that call. What the cookies are built from (this process's
    time, the session id, the user state) is sealed with the pair, so a process that gets
    the pair again within the grace period builds the same cookies. ``client`` (who
    refreshes) is recorded with the rotation, in that same call; ``scope`` is the request
    the audit event of the answer is about. Never raises an Exception."""
    now = store.clock()
    sid = sid or new_sid()
    context = json.dumps({"n": now, "s": sid, "u": param.auth_user_state}, separators=(",", ":"))
    subject = hint.get("sub") if hint is not None else None
    try:
        rotation = await rotate(
            param.refresh_token,
            subject=subject if isinstance(subject, str) else None,
            context=context,
            now=now,
            client=client,
        )
    except StoreUnavailableError as exc:
        return _failed(store, scope, hint, exc)
    except Exception as exc:
        error = RefreshError(f"the session could not be rotated: {exc!r}")
        return _failed(
            store, scope, hint, error, cause=exc, message="refresh failed; session kept: %s"
        )
    store.notices.refresh_answered()
    if rotation.access_token is None:
        _report_ended(store, scope, hint, rotation)
        return _ENDED_OUTCOME
    try:
        written = json.loads(rotation.context)
        issued_at, sid, user_state = float(written["n"]), str(written["s"]), written["u"]
    except (ValueError, TypeError, KeyError):
        issued_at, user_state = now, param.auth_user_state  # sealed by an older version
    result = RefreshResult(
        is_success=True,
        new_auth_token=rotation.access_token,
        new_refresh_token=rotation.refresh_token,
        new_refresh_token_expires_in=rotation.refresh_expires_in,
        new_auth_user_state=user_state,
    )
    outcome = _classified(store, result, param, sid, issued_at)
    if not (rotation.replay and isinstance(outcome, Renewed)):
        # A replay hands out a pair the first call already reported.
        _report(store, scope, hint, outcome)
    return outcome


def _report_ended(
    store: AuthStore,
    scope: Mapping[str, Any] | None,
    hint: Mapping[str, Any] | None,
    rotation: Rotation,
) -> None:
    """The audit event of a rotation that ended the session, by what ended it."""
    audit = store.events
    if audit is None or scope is None:
        return
    if rotation.ended == "reuse":
        # The family the store revoked, which the presented token's holder named.
        family = {"sub": rotation.subject, SESSION_CLAIM: rotation.family_id}
        audit.emit(ReuseDetected, scope, family if rotation.subject else hint)
    elif rotation.ended == "revoked":
        audit.emit(RevokedSession, scope, hint)
    else:
        # Past its lifetime, or a token the store no longer knows (its idle lifetime ran
        # out: the store forgets it): the state cookie bound to it says it was issued.
        audit.emit(SessionEnded, scope, hint, reason="expired")


class _Flight:
    __slots__ = ("done", "outcome")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.outcome: Outcome = Unavailable(RefreshError("refresh was interrupted"))


class SingleFlight:
    """One callback call per refresh token at a time, shared by every waiting request.

    Keys are SHA-256 digests, so refresh tokens are not kept as dict keys. This is the one
    piece of mutable state in the middleware, and it is per process.
    """

    __slots__ = ("_by_successor", "_clock", "_ended", "_inflight", "_recent")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._inflight: dict[bytes, _Flight] = {}
        # Refresh tokens whose session the callback ended -> until when that is remembered
        # (one lifetime for all, so insertion order is expiry order here too).
        self._ended: OrderedDict[bytes, float] = OrderedDict()
        # Successes kept for the grace period. The grace period is the same for every entry,
        # so insertion order is expiry order: pruning only ever looks at the front.
        # OrderedDict for O(1) pruning at the front (see fifo.py); pruning here is by expiry.
        self._recent: OrderedDict[bytes, tuple[float, Outcome]] = OrderedDict()
        # The successor refresh token's digest -> the key its result is kept under.
        self._by_successor: dict[bytes, bytes] = {}

    async def run(
        self, refresh_token: str, grace: float, call: Callable[[], Awaitable[Outcome]]
    ) -> Outcome:
        key = _digest(refresh_token)
        recent = self._recent.get(key)
        if recent is not None:
            if recent[0] > self._clock():
                return recent[1]
            self._drop(key)
        ended = self._ended.get(key)
        if ended is not None:
            if ended > self._clock():
                return _ENDED_OUTCOME
            del self._ended[key]
        flight = self._inflight.get(key)
        if flight is not None:
            await flight.done.wait()
            return flight.outcome
        flight = self._inflight[key] = _Flight()
        try:
            # Shielded: a client that disconnects must not throw away an answer the auth
            # server already gave (a rotated refresh token would be lost with it).
            with anyio.CancelScope(shield=True):
                flight.outcome = await call()
        finally:
            del self._inflight[key]
            flight.done.set()
        successor = successor_token(flight.outcome)
        if successor is not None and grace > 0:
            self._remember(key, grace, flight.outcome, successor)
        elif isinstance(flight.outcome, Ended):
            self._remember_ended(key)
        return flight.outcome

    def forget(self, refresh_token: str) -> None:
        """Drop remembered results that lead to ``refresh_token``'s session (sign-out):
        a rotated-out predecessor must not revive a session that was just ended."""
        digest = _digest(refresh_token)
        self._drop(digest)
        predecessor = self._by_successor.get(digest)
        if predecessor is not None:
            self._drop(predecessor)

    def _drop(self, key: bytes) -> None:
        entry = self._recent.pop(key, None)
        if entry is not None:
            self._by_successor.pop(_digest(successor_token(entry[1]) or ""), None)

    def _remember_ended(self, key: bytes) -> None:
        now = self._clock()
        ended = self._ended
        while ended:
            oldest = next(iter(ended))
            if ended[oldest] > now and len(ended) < _MAX_RECENT:
                break
            del ended[oldest]
        ended.pop(key, None)
        ended[key] = now + ENDED_MEMORY

    def _remember(self, key: bytes, grace: float, outcome: Outcome, successor: str) -> None:
        now = self._clock()
        # Expired entries sit at the front; each is dropped once (amortized constant work).
        while self._recent:
            oldest = next(iter(self._recent))
            if self._recent[oldest][0] > now and len(self._recent) < _MAX_RECENT:
                break
            self._drop(oldest)
        self._drop(key)
        # The presented token has just been rotated out, so its own predecessor is now a
        # grandparent: it must reach the callback (which may take it for theft), not get
        # the remembered answer of the previous rotation.
        predecessor = self._by_successor.get(key)
        if predecessor is not None:
            self._drop(predecessor)
        self._recent[key] = (now + grace, outcome)
        self._by_successor[_digest(successor)] = key


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


# --- across processes ----------------------------------------------------------------------

# A published result stays readable at least this long, so that requests that were waiting
# on the flight always find it, even with grace_period=0.
_MIN_RESULT_TTL: Final = 1.0
# Waiting workers poll Redis: briefly at first (a callback often answers in milliseconds),
# never slower than every 20 ms.
_POLL_START: Final = 0.002
_POLL_MAX: Final = 0.02
_ENDED: Final = b"E"


def flight_alias(refresh_token: str) -> str:
    """The id a published result is also known by: its successor refresh token's."""
    return token_id(refresh_token, "flight-alias")


def _encode(outcome: Renewed | Successor) -> bytes:
    if isinstance(outcome, Successor):
        data: dict[str, Any] = {"k": "S"}
    else:
        data = {"k": "R", "t": outcome.token, "tt": outcome.token_type}
    data.update(
        u=outcome.user_state,
        s=outcome.sid,
        r=outcome.refresh_token,
        sc=[cookie.decode("latin-1") for cookie in outcome.set_cookies],
    )
    return json.dumps(data, separators=(",", ":")).encode()


async def _decode(store: AuthStore, param: RefreshParam, value: bytes) -> Outcome:
    if value == _ENDED:
        return Ended()
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
    await store.verifier.reload_keys_for(token, trusted=True)
    try:
        # Verified again: the store is shared infrastructure, not part of the trust root.
        claims = store.verifier.verify(token, store.clock())
    except AuthKitError as exc:
        # Its refresh token was rotated all the same: keep the successor here too.
        logger.error("shared refresh result does not verify here; successor kept: %s", exc)
        kept = successor_cookies(
            store,
            cookies,
            sid=data["s"],
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
        sid=data["s"],
        refresh_token=data["r"],
        set_cookies=cookies,
    )


async def _publish(
    store: AuthStore,
    shared: SessionStore,
    refresh: RefreshConfig,
    key: str,
    owner: str,
    param: RefreshParam,
    outcome: Outcome,
) -> None:
    ttl = max(refresh.grace_period, _MIN_RESULT_TTL)
    now = store.clock()
    kept: Renewed | Successor | None = outcome if isinstance(outcome, Renewed) else None
    if isinstance(outcome, Unavailable) and outcome.successor is not None:
        kept = outcome.successor
    if kept is not None:
        sealed = b"R" + seal(param.refresh_token, _encode(kept))
        alias = flight_alias(kept.refresh_token)
        await shared.flight_finish(key, owner, sealed, now=now, ttl=ttl, alias=alias)
        # As in SingleFlight: the previous rotation's answer must not serve a grandparent.
        await shared.flight_forget(flight_alias(param.refresh_token))
    elif isinstance(outcome, Ended):
        # Remembered as long as in one process, for every process.
        ttl = max(ttl, ENDED_MEMORY)
        await shared.flight_finish(key, owner, _ENDED, now=now, ttl=ttl, alias=None)
    else:
        await shared.flight_release(key, owner)


async def run_shared(
    store: AuthStore,
    shared: SessionStore,
    refresh: RefreshConfig,
    param: RefreshParam,
    sid: str | None,
    *,
    scope: Mapping[str, Any] | None = None,
    hint: Mapping[str, Any] | None = None,
) -> Outcome:
    """One callback call per refresh token across every process sharing ``shared``.

    The first process to claim the flight calls the callback and publishes the result
    (sealed with the presented refresh token); the others poll until it is there. The claim's
    lease outlasts the callback's timeout, so it cannot lapse while the call runs. A store
    that cannot be reached before the call makes the refresh unavailable (nothing consumed);
    one that fails after it does not take the answer away from this request. ``scope``
    and ``hint`` as for :func:`run_callback`: the process that calls reports the answer,
    the others report only what fails here.
    """
    key = token_id(param.refresh_token, "flight")
    owner = secrets.token_hex(8)
    lease = refresh.timeout + 5.0
    deadline = anyio.current_time() + lease
    delay = _POLL_START
    while True:
        try:
            flight = await shared.flight_claim(key, owner, now=store.clock(), lease=lease)
        except StoreUnavailableError as exc:
            logger.warning("refresh not attempted, shared store unavailable: %s", exc)
            outcome: Outcome = Unavailable(exc)
            _report(store, scope, hint, outcome)
            return outcome
        if flight.status == "claimed":
            outcome = await run_callback(store, refresh, param, sid, scope=scope, hint=hint)
            try:
                await _publish(store, shared, refresh, key, owner, param, outcome)
            except StoreUnavailableError as exc:
                logger.warning("refresh result not shared, store unavailable: %s", exc)
            return outcome
        if flight.status == "done" and flight.value is not None:
            outcome = await _decode(store, param, flight.value)
            if isinstance(outcome, Unavailable):
                _report(store, scope, hint, outcome)
            return outcome
        if anyio.current_time() >= deadline:
            outcome = Unavailable(RefreshTimeoutError("another process's refresh did not finish"))
            _report(store, scope, hint, outcome)
            return outcome
        await anyio.sleep(delay)
        delay = min(delay * 2, _POLL_MAX)
