"""The login guard's attempt counters in Redis: one key a counter, one script a decision.

The ``SessionStore.throttle_*`` methods; the scripts are in
:mod:`~fastapi_authkit.stores.redis.scripts.throttles`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..base import ThrottleRule, ThrottleState
from .gateway import Gateway, eval_command
from .keys import KeyLayout
from .scripts import BACKSTOP_MS
from .scripts.throttles import GIVE, TAKE

__all__ = ["Throttles"]


class Throttles:
    """Takes attempts from the login guard's counters and gives them back."""

    __slots__ = ("_gateway", "_give", "_keys", "_take")

    def __init__(self, gateway: Gateway, keys: KeyLayout) -> None:
        self._gateway = gateway
        self._keys = keys
        self._take = gateway.redis.register_script(TAKE)
        self._give = gateway.redis.register_script(GIVE)

    async def take(
        self, counters: Sequence[tuple[str, ThrottleRule]], *, now: float
    ) -> list[ThrottleState]:
        # One script per counter (each its own key, so its own slot), one pipeline per
        # node. The text is sent (EVAL), not the SHA: a pipeline cannot fall back from a
        # NOSCRIPT, and these scripts are small.
        commands = [
            eval_command(
                self._take,
                [self._keys.throttle(name)],
                [
                    repr(now),
                    rule.limit,
                    repr(rule.base_delay),
                    repr(rule.max_delay),
                    repr(rule.forget_after),
                    BACKSTOP_MS,
                ],
            )
            for name, rule in counters
        ]
        replies, _ = await self._gateway.run(commands, confirm=False)
        return [
            ThrottleState(bool(allowed), int(count), float(until), bool(locked))
            for allowed, count, until, locked in replies
        ]

    async def give(self, counters: Sequence[tuple[str, bool]], *, now: float) -> None:
        commands = [
            eval_command(
                self._give, [self._keys.throttle(name)], ["1" if reset else "0", repr(now)]
            )
            for name, reset in counters
        ]
        await self._gateway.run(commands, confirm=False)
