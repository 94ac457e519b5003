"""Revoking session families in Redis: one family, one by its token, or all of a subject's.

Every revocation is the one script of
:mod:`~fastapi_authkit.stores.redis.scripts.revocations`, which PUBLISHes the family's id on
the revocation channel as it revokes, so that every process's view hears of it (see
:mod:`~fastapi_authkit.stores.redis.subscriber`); this process's own view refuses the family
at once, not on the echo.
"""

from __future__ import annotations

from ..view import RevocationView
from .gateway import Gateway, eval_command, text
from .keys import KeyLayout
from .legacy import LegacyTokens
from .scripts.revocations import REVOKE
from .subjects import SubjectSets

__all__ = ["Revocations"]


class Revocations:
    """Revokes session families and tells the view."""

    __slots__ = ("_channel", "_gateway", "_keys", "_legacy", "_revoke", "_subjects", "_view")

    def __init__(
        self,
        gateway: Gateway,
        keys: KeyLayout,
        legacy: LegacyTokens,
        subjects: SubjectSets,
        view: RevocationView,
        *,
        channel: str,
    ) -> None:
        self._gateway = gateway
        self._keys = keys
        self._legacy = legacy
        self._subjects = subjects
        self._view = view
        self._channel = channel
        self._revoke = gateway.redis.register_script(REVOKE)

    async def by_token(self, token_id: str, *, family_id: str | None) -> str | None:
        """``SessionStore.revoke_token_family``."""
        k, g = self._keys, self._gateway
        if family_id is None:
            family_id = await self._legacy.family(token_id)
            if family_id is None:
                return None
            token_key = self._legacy.key(token_id)
        else:
            token_key = k.token(family_id, token_id)
        reply, acked = await g.script(
            self._revoke,
            [k.family(family_id), token_key],
            [g.rewrite_flag, family_id, self._channel],
        )
        if reply == -2:
            return None
        # This process refuses it now, not on the echo: also a family the store no longer
        # held (-1), which other processes' views may still hold live (published too).
        self._view.revoked((family_id,))
        if acked < g.replicas:
            raise g.unconfirmed("sign-out", acked)
        return None if reply == -1 else family_id

    async def of_subject(self, subject: str) -> int:
        """``SessionStore.revoke_subject``."""
        k, g = self._keys, self._gateway
        families = await self._subjects.families(subject)
        if not families:
            return 0
        # The families live in many slots: each is revoked in its own (one pipeline per
        # node). A session started meanwhile may or may not be included, as if it had
        # started just before or just after.
        commands = [
            eval_command(self._revoke, [k.family(f)], [g.rewrite_flag, f, self._channel])
            for f in families
        ]
        replies, acked = await g.run(commands, confirm=True)
        self._view.revoked(families)  # every one: also those the store no longer held (-1)
        if acked < g.replicas:
            raise g.unconfirmed("sign-out everywhere", acked)
        gone = [f for f, reply in zip(families, replies, strict=True) if reply == -1]
        if gone:  # expired families: nothing left to revoke, so forget them
            await self._subjects.forget(subject, gone)
        return sum(1 for reply in replies if reply == 1)

    async def family(self, family_id: str, *, subject: str) -> bool:
        """``SessionStore.revoke_family``."""
        k, g = self._keys, self._gateway
        # The subject of a family never changes (its id is random and never reused), so
        # reading it first and revoking after leaves no window that matters.
        owner = text(await g.call(g.redis.hget(k.family(family_id), "sub")))
        if owner is not None and owner != subject:
            return False
        # Also when the store holds no such family: revoked everywhere all the same (the
        # script publishes it), as a view may have learned it live before it vanished.
        reply, acked = await g.script(
            self._revoke, [k.family(family_id)], [g.rewrite_flag, family_id, self._channel]
        )
        self._view.revoked((family_id,))  # this process refuses it now, not on the echo
        if acked < g.replicas:
            raise g.unconfirmed("revoking a session", acked)
        return bool(reply == 1)
