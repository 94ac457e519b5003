"""The login guard: password guessing slowed, then stopped, across every worker.

A login route wraps its password check in ``async with guard.attempt(request, account=name)
as attempt:``. Entering counts the attempt against two counters on the store (the submitted
account name and the client address) and refuses it with
:class:`~fastapi_authkit.errors.LoginThrottled` (429, ``Retry-After``) while either is
locked. The attempt that reaches a counter's limit locks it, for a delay that doubles with
each further attempt let in (capped); ``attempt.succeeded()`` gives the attempt back and
clears the account's counter. Anything else (``attempt.failed()``, no verdict, an exception)
leaves it counted: a forgotten call never opens the door.

Attempts are counted when they are let in, not when they fail, and the attempt that reaches
the limit locks at once, so that a burst of concurrent guesses cannot slip past the limit
while passwords are being hashed. The counters are the store's (one process with
``MemoryStore``, every worker with ``RedisStore``), each decided atomically, both in one
round trip.

The account counter is keyed by the submitted name, normalized (NFKC, case-folded, outer
spaces dropped) and hashed, whether or not such an account exists: the guard does the same
work and gives the same answers for every name, so it tells nothing about which accounts
exist. (The app's own check must take as long for an unknown name: verify against a dummy
hash.) A success resets the account, never the address: an attacker signing in to an
account of their own between guesses gains nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
import unicodedata
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Final, Literal

from starlette.requests import HTTPConnection

from .errors import ConfigurationError, LoginThrottled, StoreUnavailableError
from .eventdelivery import SILENT, AuditSink
from .events import AuthEvent, LoginFailed, LoginLocked, StoreUnavailable
from .forwarded import TrustedProxies, address_key
from .notices import Streak
from .state import SCOPE_KEY, AuthState
from .stores.base import SessionStore, ThrottleRule, ThrottleState
from .validation import flag, function, limit, seconds

__all__ = ["UNAVAILABLE_RETRY_AFTER", "LoginAttempt", "LoginGuard", "create_login_guard"]

logger = logging.getLogger("fastapi_authkit")

# Retry-After of the 503 while the store is down (fail closed): a store back within seconds
# is the common case (a failover), and a client should not hammer it meanwhile.
UNAVAILABLE_RETRY_AFTER: Final = 5
# An account name as events show it: enough for any real name, bounded for the audit log.
_MAX_ACCOUNT: Final = 256


def normalize_account(account: str) -> str:
    """The account name as the guard counts it: NFKC, case-folded, outer spaces dropped,
    so that ``"Alice"``, ``" alice"`` and ``"ALICE"`` (full-width too) share one counter."""
    return unicodedata.normalize("NFKC", account).casefold().strip()


def _account_counter(normalized: str) -> str:
    # Hashed: the store's key names stay short and bounded whatever is submitted, and a
    # reader of the store does not see the names people tried.
    digest = hashlib.blake2b(
        normalized.encode("utf-8", "surrogatepass"), digest_size=16, person=b"authkit-login"
    )
    return "a:" + digest.hexdigest()


class LoginGuard:
    """Counts sign-in attempts per account and per client address on a store, and refuses
    them while either is locked. Build it with :func:`create_login_guard`; use
    :meth:`attempt` in the login route."""

    __slots__ = ("_account", "_address", "_clock", "_fail_open", "_outage", "_proxies", "_store")

    def __init__(
        self,
        *,
        backend: SessionStore,
        account_rule: ThrottleRule,
        address_rule: ThrottleRule,
        trusted_proxies: TrustedProxies,
        fail_open: bool,
        clock: Callable[[], float],
    ) -> None:
        self._store = backend
        self._account = account_rule
        self._address = address_rule
        self._proxies = trusted_proxies
        self._fail_open = fail_open
        self._clock = clock
        self._outage = Streak(
            clock,
            still="login guard: store still unavailable",
            again="login guard: store back after %d failed call(s)",
        )

    def __repr__(self) -> str:
        return (
            f"LoginGuard(max_failures={self._account.limit}, "
            f"max_address_failures={self._address.limit}, fail_open={self._fail_open})"
        )

    def attempt(self, conn: HTTPConnection, account: str) -> LoginAttempt:
        """One sign-in attempt by ``conn`` on ``account`` (the name as submitted), to be
        entered with ``async with``: raises :class:`~fastapi_authkit.errors.LoginThrottled` on
        entry while the account or the address is locked (or the store is down and the
        guard fails closed)."""
        if not isinstance(account, str):
            raise TypeError(f"account must be a str, got {type(account).__name__}")
        return LoginAttempt(self, conn, account)

    def client_address(self, conn: HTTPConnection) -> str | None:
        """The address ``conn`` is counted under (behind trusted proxies, the forwarded
        client's; an IPv6 address by its /64), or None when the server gave none."""
        address = self._proxies.client(conn.scope)
        return address_key(address) if address is not None else None

    def _client(self, conn: HTTPConnection) -> tuple[str | None, str | None]:
        """The client's address (behind trusted proxies, the forwarded one) and the key
        it is counted under."""
        address = self._proxies.client(conn.scope)
        if address is None:
            return None, None
        return str(address), address_key(address)

    async def unlock(self, account: str) -> None:
        """Clear ``account``'s counter (support staff unlocking it). Addresses are not
        touched. Raises :class:`~fastapi_authkit.StoreUnavailableError` when the store
        cannot be reached."""
        name = _account_counter(normalize_account(account))
        await self._store.throttle_give([(name, True)], now=self._clock())


class LoginAttempt:
    """One attempt, from :meth:`LoginGuard.attempt`: say :meth:`succeeded` once the
    password checked out; without it the attempt counts as failed."""

    __slots__ = (
        "_account",
        "_address",
        "_client",
        "_conn",
        "_counted",
        "_guard",
        "_states",
        "_verdict",
        "account",
    )

    def __init__(self, guard: LoginGuard, conn: HTTPConnection, account: str) -> None:
        self._guard = guard
        self._conn = conn
        normalized = normalize_account(account)
        self.account = "".join(c for c in normalized[:_MAX_ACCOUNT] if c.isprintable())
        self._account = _account_counter(normalized)
        self._client, self._address = guard._client(conn)
        self._counted: list[str] = []  # counters this attempt was counted in
        self._states: list[ThrottleState] = []
        self._verdict: bool | None = None

    def succeeded(self) -> None:
        """The password was right: on leaving the block the account's counter is cleared
        and the attempt is not held against the address."""
        self._verdict = True

    def failed(self) -> None:
        """The password was wrong (also what an attempt without a verdict counts as)."""
        self._verdict = False

    def _counters(self) -> list[tuple[str, ThrottleRule]]:
        guard = self._guard
        counters = [(self._account, guard._account)]
        if self._address is not None:
            counters.append(("i:" + self._address, guard._address))
        return counters

    async def __aenter__(self) -> LoginAttempt:
        guard = self._guard
        counters = self._counters()
        now = guard._clock()
        try:
            states = await guard._store.throttle_take(counters, now=now)
        except StoreUnavailableError as exc:
            self._store_down(exc)
            if guard._fail_open:
                return self  # let in, counted nowhere
            raise LoginThrottled("unavailable", UNAVAILABLE_RETRY_AFTER) from exc
        guard._outage.ended()
        refused = [state for state in states if not state.allowed]
        if refused:
            # Refused before any password check: not counted anywhere (the counters that
            # let it in take it back, and lose a lock it started).
            taken = [
                (name, False) for (name, _), s in zip(counters, states, strict=True) if s.allowed
            ]
            if taken:
                try:
                    await guard._store.throttle_give(taken, now=now)
                except StoreUnavailableError as exc:
                    self._store_down(exc)
            wait = max(state.locked_until for state in refused) - now
            raise LoginThrottled("locked", wait)
        self._counted = [name for name, _ in counters]
        self._states = states
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._counted:
            return  # let in by fail_open: nothing to give back or report
        if self._verdict:
            give = [(name, name == self._account) for name in self._counted]
            try:
                await self._guard._store.throttle_give(give, now=self._guard._clock())
            except StoreUnavailableError as exc:
                # The sign-in stands; the counter was not cleared, and expires by itself.
                self._store_down(exc)
            return
        self._report_failure()

    def _store_down(self, exc: StoreUnavailableError) -> None:
        self._guard._outage.failed(
            "login guard: store unavailable (%s), sign-in attempts %s",
            exc,
            "let in uncounted" if self._guard._fail_open else "refused with 503",
            exc=None,
        )
        audit = _audit(self._conn)
        for event in audit.built(StoreUnavailable, self._conn.scope, None, operation="login_guard"):
            self._deliver(audit, event)

    def _report_failure(self) -> None:
        audit = _audit(self._conn)
        scope = self._conn.scope
        account_state = self._states[0]
        for failed in audit.built(
            LoginFailed, scope, None, account=self.account, failures=account_state.count
        ):
            self._deliver(audit, failed)
        kinds: tuple[Literal["account", "address"], ...] = ("account", "address")
        for locked, state in zip(kinds, self._states, strict=False):
            if state.locked_now:
                for event in audit.built(
                    LoginLocked,
                    scope,
                    None,
                    account=self.account,
                    locked=locked,
                    failures=state.count,
                    until=state.locked_until,
                ):
                    self._deliver(audit, event)

    def _deliver(self, audit: AuditSink, event: AuthEvent) -> None:
        # The client the guard counted (behind trusted proxies, the forwarded one), not the
        # proxy.
        if self._client is not None and event.ip != self._client:
            event = dataclasses.replace(event, ip=self._client)
        audit.deliver(event)


def _audit(conn: HTTPConnection) -> AuditSink:
    """Where the app's ``create_store`` reports (its ``on_event`` hook), when the middleware
    runs; nowhere otherwise."""
    state = conn.scope.get(SCOPE_KEY)
    return state.store.events if isinstance(state, AuthState) else SILENT


def create_login_guard(
    *,
    backend: SessionStore,
    max_failures: int = 5,
    max_address_failures: int = 50,
    base_delay: float = 1.0,
    max_delay: float = 900.0,
    forget_after: float = 3600.0,
    trusted_proxies: Iterable[str] = (),
    fail_open: bool = False,
    clock: Callable[[], float] = time.time,
) -> LoginGuard:
    """Configure the login guard (docs: Login guard).

    The attempt reaching a limit locks for ``base_delay`` seconds; each attempt let in after
    that doubles the lock, up to ``max_delay``.

    Args:
        backend: Where the counters live: :class:`~fastapi_authkit.stores.MemoryStore` (one
            process) or :class:`~fastapi_authkit.stores.RedisStore` (every worker; it may be
            the issuer's).
        max_failures: Attempts without success on one account name before it locks.
        max_address_failures: The same for one client address (higher: many people may
            share one, behind a NAT).
        base_delay: Seconds of the first lock.
        max_delay: Seconds of the longest lock (at least ``base_delay``).
        forget_after: Seconds after its last lock ends (or its last attempt) that a counter
            is dropped.
        trusted_proxies: Addresses or networks of the reverse proxies whose
            ``X-Forwarded-For`` is believed (empty, the default: the header is ignored and
            the direct peer counts).
        fail_open: When the store cannot be reached, let attempts in uncounted (True)
            instead of answering 503 with ``Retry-After`` (False, the default).
        clock: Seconds since the epoch (tests inject one).

    Raises:
        ConfigurationError: A value that cannot work, named.
    """
    if not isinstance(backend, SessionStore):
        raise ConfigurationError("backend must be a SessionStore (MemoryStore or RedisStore)")
    base = seconds("base_delay", base_delay, positive=True)
    longest = seconds("max_delay", max_delay, positive=True)
    if longest < base:
        raise ConfigurationError("max_delay must be at least base_delay")
    forget = seconds("forget_after", forget_after, positive=True)
    flag("fail_open", fail_open)
    function("clock", clock)
    return LoginGuard(
        backend=backend,
        account_rule=ThrottleRule(limit("max_failures", max_failures), base, longest, forget),
        address_rule=ThrottleRule(
            limit("max_address_failures", max_address_failures), base, longest, forget
        ),
        trusted_proxies=TrustedProxies(trusted_proxies),
        fail_open=fail_open,
        clock=clock,
    )
