"""The cross-process refresh flight in Redis: one worker refreshes, the others wait.

The ``SessionStore.flight_*`` methods.

A flight key holds the claim (``P:<owner>``) while its refresh runs, then the result until
it expires; an alias key, in another slot, names the flight a successor's result is under,
so that a sign-out can drop that result (:meth:`Flights.forget`).
"""

from __future__ import annotations

from typing import Any

from ..base import FlightState
from .gateway import Gateway, eval_command, text
from .keys import KeyLayout
from .scripts import backstop_ms
from .scripts.flights import CLAIM, DROP, FINISH, RELEASE
from .topology import Command

__all__ = ["Flights"]


class Flights:
    """Claims, finishes, releases and forgets refresh flights."""

    __slots__ = ("_claim", "_drop", "_finish", "_gateway", "_keys", "_release")

    def __init__(self, gateway: Gateway, keys: KeyLayout) -> None:
        self._gateway = gateway
        self._keys = keys
        client = gateway.redis
        self._claim = client.register_script(CLAIM)
        self._finish = client.register_script(FINISH)
        self._release = client.register_script(RELEASE)
        self._drop = client.register_script(DROP)

    async def claim(self, key: str, owner: str, *, now: float, lease: float) -> FlightState:
        reply = await self._gateway.call(
            self._claim(
                keys=[self._keys.flight(key)],
                args=[owner, repr(now), repr(lease), backstop_ms(lease)],
            )
        )
        if reply is None:
            return FlightState("claimed")
        if reply.startswith(b"P:"):
            return FlightState("pending")
        return FlightState("done", reply)

    async def finish(
        self, key: str, owner: str, value: bytes, *, now: float, ttl: float, alias: str | None
    ) -> None:
        g = self._gateway
        flight_key = self._keys.flight(key)
        args: list[Any] = [owner, value, repr(now + ttl), backstop_ms(ttl)]
        if alias is None:
            await g.call(self._finish(keys=[flight_key], args=args))
            return
        # The alias is in another slot, so it is its own command, sent first: a sign-out
        # that finds it drops the result whenever that is published (see forget).
        alias_key = self._keys.alias(alias)
        link = Command(("SET", alias_key, flight_key, "PX", backstop_ms(ttl)), alias_key)
        await g.run([link, eval_command(self._finish, [flight_key], args)], confirm=False)

    async def release(self, key: str, owner: str) -> None:
        await self._gateway.call(self._release(keys=[self._keys.flight(key)], args=[owner]))

    async def forget(self, alias: str) -> None:
        g = self._gateway
        alias_key = self._keys.alias(alias)
        found = text(await g.call(g.redis.get(alias_key)))
        if found is None:
            return
        commands = [Command(("DEL", alias_key), alias_key)]
        # Only a flight key of this store's (the value is data read back from Redis).
        if found.startswith(self._keys.flight("")):
            commands.append(eval_command(self._drop, [found], []))
        await g.run(commands, confirm=False)
