"""A subject's set of session families, read by "sign out everywhere" and the sessions list.

A family is added to its subject's set when it is created, before it gets a token
(:meth:`~fastapi_authkit.stores.redis.families.Families.create`), and stays there until a
reader finds it revoked or gone.
"""

from __future__ import annotations

from .gateway import Gateway
from .keys import KeyLayout

__all__ = ["SubjectSets"]


class SubjectSets:
    """Reads and prunes subjects' sets of families."""

    __slots__ = ("_gateway", "_keys")

    def __init__(self, gateway: Gateway, keys: KeyLayout) -> None:
        self._gateway = gateway
        self._keys = keys

    async def families(self, subject: str) -> list[str]:
        """The ids in ``subject``'s set, sorted."""
        g = self._gateway
        members = await g.call(g.redis.smembers(self._keys.subject(subject)))
        return sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members)

    async def forget(self, subject: str, families: list[str]) -> None:
        """Drop ``families`` from ``subject``'s set: no reader needs them again."""
        g = self._gateway
        await g.call(g.redis.srem(self._keys.subject(subject), *families))
