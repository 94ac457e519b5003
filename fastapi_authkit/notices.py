"""What the kit tells the operator about its own use: said once, not on every request.

A mistake that makes every request fail the same way (a Secure cookie set over plain http,
a refresh interval longer than the token's life, an auth server that is down) would
otherwise either stay silent or flood the log. :class:`Notices` belongs to one
configuration (an :class:`~fastapi_authkit.config.AuthStore`, in practice one per process): each
advice is logged the first time its situation arises, and a streak of transient refresh
failures logs one line (its traceback at DEBUG) and counts the rest, as does a streak of
refreshes refused because of the app's own client (at ERROR: the operator must act).

Everything goes to ``logging.getLogger("fastapi_authkit")``. :func:`show_debug_output`
makes ``debug=True`` visible when nothing else would print it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

__all__ = ["DEBUG_FORMAT", "Notices", "Streak", "show_debug_output"]

logger = logging.getLogger("fastapi_authkit")

DEBUG_FORMAT: Final = "%(asctime)s %(levelname)s fastapi_authkit: %(message)s"
# While something keeps failing, a one-line reminder with the count this often.
_STREAK_REMINDER_SECONDS: Final = 60.0


def show_debug_output() -> None:
    """For ``debug=True``: let the kit's DEBUG records through and, when no handler would
    show them (no handler on the ``fastapi_authkit`` logger or above it, which is the case
    under uvicorn: it configures its own loggers, not the root), attach one that prints to
    stderr. The root logger is never touched, and a logger the app configured itself (a
    level, a handler of its own or on the root) is left as it is."""
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.DEBUG)
    if not logger.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(DEBUG_FORMAT))
        logger.addHandler(handler)


class Streak:
    """A run of failures of one thing (the refresh callback, the ``on_event`` hook): the
    first is logged with its traceback, the others are counted, with a one-line reminder at
    most once a minute, and the end of the run says how long it was.

    ``still`` opens the reminder ("refresh still failing transiently"), ``again`` is the
    line logged when it works again, with ``%d`` for the count.
    """

    __slots__ = (
        "_again",
        "_clock",
        "_count",
        "_debug_traceback",
        "_level",
        "_logged_at",
        "_still",
    )

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        still: str,
        again: str,
        debug_traceback: bool = False,
        level: int = logging.WARNING,
    ) -> None:
        self._clock = clock
        self._still = still
        self._again = again
        # The level of the run's first line; reminders and the end are WARNINGs.
        self._level = level
        # One line per failure at WARNING, its traceback at DEBUG: for failures whose message
        # says it all (an auth server that is down), where a traceback is noise.
        self._debug_traceback = debug_traceback
        self._count = 0
        self._logged_at = 0.0

    @property
    def count(self) -> int:
        """Failures in the current run (0 when it is not failing)."""
        return self._count

    def failed(self, message: str, *args: object, exc: BaseException | None) -> None:
        self._count += 1
        now = self._clock()
        if self._count == 1:
            self._logged_at = now
            if self._debug_traceback:
                logger.log(self._level, message, *args)
                if exc is not None:
                    logger.debug("the traceback of that failure:", exc_info=exc)
            else:
                logger.log(self._level, message, *args, exc_info=exc)
        elif now - self._logged_at >= _STREAK_REMINDER_SECONDS:
            self._logged_at = now
            where = "at DEBUG" if self._debug_traceback else "logged at the first"
            logger.warning(
                "%s (%d failures in a row, traceback %s); latest: " + message,
                self._still,
                self._count,
                where,
                *args,
            )

    def ended(self) -> None:
        """It works again: end the run, saying how long it was (at WARNING, like its start,
        so that whoever saw one sees the other)."""
        if self._count:
            logger.warning(self._again, self._count)
            self._count = 0


class Notices:
    """Once-only advice and the refresh failure streak of one configuration.

    ``clock`` is the configuration's, so the streak's reminders follow injected time.
    """

    __slots__ = ("_given", "_refresh", "_refused")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._given: set[str] = set()
        self._refresh = Streak(
            clock,
            still="refresh still failing transiently",
            again="refresh callback answers again after %d transient failure(s) in a row",
            debug_traceback=True,
        )
        # Every session's refresh is refused the same way until the operator fixes the
        # client: one ERROR line for the run, not one per request.
        self._refused = Streak(
            clock,
            still="refresh still refused: the auth server refuses this app's client",
            again="the auth server accepts this app's client again after %d refused refresh(es)",
            debug_traceback=True,
            level=logging.ERROR,
        )

    def once(self, key: str, level: int, message: str, *args: object) -> bool:
        """Log ``message`` the first time ``key`` comes up; True when it was logged now."""
        if key in self._given:
            return False
        self._given.add(key)
        logger.log(level, message, *args)
        return True

    def given(self, key: str) -> bool:
        """Whether the advice ``key`` was logged already (to skip checking again)."""
        return key in self._given

    def interval_beyond_lifetime(self, interval: float, lifetime: float) -> None:
        """``create_refresh(interval=...)`` at or beyond the access token's whole lifetime:
        the token is due as soon as it is issued, so every request refreshes it."""
        if interval >= lifetime:
            self.once(
                "refresh-interval-beyond-lifetime",
                logging.WARNING,
                "create_refresh(interval=%g) is at or beyond the access token's whole lifetime "
                "(%g s): every token is due for refresh as soon as it is issued, so every "
                "request refreshes it (and rotates the refresh token). Choose an interval well "
                "below the lifetime, such as a fifth of it (%g s)",
                interval,
                lifetime,
                max(lifetime / 5, 0),
            )

    def session_without_refresh_token(self, expires_in: float) -> None:
        """``sign_in`` without ``refresh=`` while refresh is configured: nothing will ever
        refresh this session, which ends when its access token expires."""
        self.once(
            "sign-in-without-refresh-token",
            logging.WARNING,
            "sign_in(...) was given no refresh= although refresh is configured "
            "(create_refresh): this session has no refresh token, so it ends when its access "
            "token expires (in %d s) instead of being refreshed. Pass the auth server's "
            "refresh token and its lifetime: sign_in(request, auth=..., refresh=<refresh "
            "token>, refresh_expires_in=<seconds>). Behind an OpenID Connect provider that "
            "issued none, ask for the offline_access scope",
            expires_in,
        )

    def refresh_failed(self, message: str, *args: object, exc: BaseException | None) -> None:
        """A transient refresh failure: one :class:`Streak` per configuration."""
        self._refresh.failed(message, *args, exc=exc)

    def client_refused(self, message: str, *args: object, exc: BaseException | None) -> None:
        """A refresh the auth server refused because of this app's client (its
        configuration): one ERROR line per run of them."""
        self._refused.failed(message, *args, exc=exc)

    def refresh_answered(self) -> None:
        """The refresh callback answered again: end the failure streaks."""
        self._refresh.ended()
        self._refused.ended()
