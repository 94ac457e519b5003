"""Refresh tokens of the earlier key layout: read, never written.

Earlier versions kept a refresh token's record under ``<prefix>rt:<id>`` (no family in the
token, no tag: :mod:`~fastapi_authkit.stores.redis.keys`); the family, subject and flight
keys are the same, so a session signed in then and not refreshed since keeps working. Such
records exist only where that layout could be written: one server, or a cluster whose
prefix pins one slot.
"""

from __future__ import annotations

from .gateway import Gateway, text
from .keys import KeyLayout

__all__ = ["LegacyTokens"]


class LegacyTokens:
    """Finds the records of the earlier layout; ``enabled`` where there can be any."""

    __slots__ = ("_gateway", "_keys", "enabled")

    def __init__(self, gateway: Gateway, keys: KeyLayout, *, enabled: bool) -> None:
        self._gateway = gateway
        self._keys = keys
        self.enabled = enabled

    def key(self, token_id: str) -> str:
        return self._keys.legacy_token(token_id)

    async def family(self, token_id: str) -> str | None:
        """The family of a refresh token written by the earlier layout, if there is one."""
        if not self.enabled:
            return None
        g = self._gateway
        return text(await g.call(g.redis.hget(self._keys.legacy_token(token_id), "fam")))
