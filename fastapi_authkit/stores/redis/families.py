"""A session family's life in Redis: created, rotated, asked whether it is live.

Every rotation is one script (:mod:`~fastapi_authkit.stores.redis.scripts.families`). What
each script learns of a family is handed to this process's
:class:`~fastapi_authkit.stores.view.RevocationView`, so the session's next requests need no
round trip.
"""

from __future__ import annotations

import logging
from typing import Any, Final, cast

from ...clientinfo import ClientInfo
from ...errors import StoreUnavailableError
from ..base import RotateOutcome, RotateStatus
from ..view import RevocationView
from .gateway import Gateway, eval_command, text
from .keys import KeyLayout
from .legacy import LegacyTokens
from .scripts import BACKSTOP_MS, backstop_ms
from .scripts.families import ADD_TO_SUBJECT, CREATE, RECORD_REFRESH, ROTATE, UNROTATE
from .subscriber import RevocationSubscriber
from .topology import Command

__all__ = ["Families"]

logger = logging.getLogger("fastapi_authkit")

# The outcomes that hand out or take away a session: with wait_replicas, confirmed.
_CONFIRMED: Final = frozenset({"rotated", "replay", "expired", "reuse"})


def _client_fields(client: ClientInfo | None) -> tuple[str, str]:
    # "" for unknown: a hash field holds a string.
    if client is None:
        return "", ""
    return client.user_agent or "", client.ip or ""


class Families:
    """Creates and rotates session families, and asks whether one is live."""

    __slots__ = (
        "_add_to_subject",
        "_channel",
        "_create",
        "_gateway",
        "_keys",
        "_legacy",
        "_record_refresh",
        "_rotate",
        "_subscriber",
        "_unrotate",
        "_view",
    )

    def __init__(
        self,
        gateway: Gateway,
        keys: KeyLayout,
        legacy: LegacyTokens,
        view: RevocationView,
        subscriber: RevocationSubscriber | None,
        *,
        channel: str,
    ) -> None:
        self._gateway = gateway
        self._keys = keys
        self._legacy = legacy
        self._view = view
        self._subscriber = subscriber
        self._channel = channel
        client = gateway.redis
        self._create = client.register_script(CREATE)
        self._add_to_subject = client.register_script(ADD_TO_SUBJECT)
        self._rotate = client.register_script(ROTATE)
        self._unrotate = client.register_script(UNROTATE)
        self._record_refresh = client.register_script(RECORD_REFRESH)

    def _listen(self) -> None:
        """Keep the view's subscription running (started on the first call that asks Redis,
        on the running event loop; restarted if its task died)."""
        if self._subscriber is not None:
            self._subscriber.ensure_running()

    async def create(
        self,
        *,
        family_id: str,
        subject: str,
        token_id: str,
        now: float,
        idle_ttl: float,
        absolute_ttl: float,
        client: ClientInfo | None = None,
    ) -> None:
        """A new family and its first refresh token (``SessionStore.create_family``)."""
        k, g = self._keys, self._gateway
        # Two slots, one pipeline per node. Listed under the subject first: a family that
        # "sign out everywhere" could miss must never get a token (an error in either
        # write fails the sign-in, so no token is handed out).
        args: list[Any] = [
            token_id,
            subject,
            repr(now),
            repr(idle_ttl),
            repr(absolute_ttl),
            BACKSTOP_MS,
            family_id,
        ]
        user_agent, ip = _client_fields(client)
        record = k.session(family_id)
        commands = [
            eval_command(
                self._add_to_subject, [k.subject(subject)], [family_id, backstop_ms(absolute_ttl)]
            ),
            eval_command(self._create, [k.family(family_id), k.token(family_id, token_id)], args),
            # The session record, in the family's slot: for the subject's list of sessions.
            Command(("HSET", record, "c", repr(now), "ua0", user_agent, "ip0", ip), record),
            Command(("PEXPIRE", record, backstop_ms(absolute_ttl)), record),
        ]
        self._listen()
        ticket = self._view.ticket()
        _, acked = await g.run(commands, confirm=True)
        if acked < g.replicas:
            raise g.unconfirmed("sign-in", acked)
        # Live until its absolute expiry, unless a revocation says otherwise: the session's
        # first requests need no round trip either.
        self._view.learn(family_id, now + absolute_ttl, ticket)

    async def rotate(
        self,
        token_id: str,
        *,
        family_id: str | None,
        now: float,
        grace: float,
        idle_ttl: float,
        successor_id: str | None,
        sealed: bytes | None,
        subject_hint: str | None = None,
        client: ClientInfo | None = None,
        late_replay: float = 0.0,
    ) -> RotateOutcome:
        """Rotate a refresh token (``SessionStore.rotate``)."""
        k, g = self._keys, self._gateway
        if family_id is None:
            family_id = await self._legacy.family(token_id)
            if family_id is None:
                return RotateOutcome("unknown")
            token_key = self._legacy.key(token_id)
        else:
            token_key = k.token(family_id, token_id)
        keys = [token_key, k.family(family_id)]
        if successor_id:
            keys.append(k.token(family_id, successor_id))
        args: list[Any] = [
            repr(now),
            repr(grace),
            repr(idle_ttl),
            successor_id or "",
            sealed or b"",
            BACKSTOP_MS,
            g.rewrite_flag,
            self._channel,
            subject_hint or "",
            token_id,
            repr(late_replay),
        ]
        self._listen()
        ticket = self._view.ticket()
        if successor_id and client is not None:
            # The refresh recorded right behind the rotation, in one round trip. If the
            # server did not hold the rotation's script, the recording behind it found no
            # successor of its own to record, so the two are simply sent again.
            user_agent, ip = _client_fields(client)
            recording = eval_command(
                self._record_refresh,
                [k.family(family_id), k.session(family_id)],
                [successor_id, repr(now), user_agent, ip, BACKSTOP_MS],
            )
            (reply, _), acked = await g.script_before(self._rotate, keys, args, [recording])
        else:
            reply, acked = await g.script(self._rotate, keys, args)
        status = cast(RotateStatus, text(reply[0]))
        if status in _CONFIRMED and acked < g.replicas:
            error = g.unconfirmed(f"refresh ({status})", acked)
            if status == "rotated" and successor_id:
                await self._undo_rotation(keys, token_id, successor_id, error)
            raise error
        family = text(reply[1]) if len(reply) > 1 else None
        subject = text(reply[2]) if len(reply) > 2 else None
        blob = (reply[3] or None) if len(reply) > 3 else None
        absolute = float(reply[4]) if len(reply) > 4 else None
        if family is not None:
            # The script just saw the family: live (with its absolute expiry) or not.
            self._view.learn(family, absolute, ticket)
        return RotateOutcome(status, family, subject, blob, absolute)

    async def _undo_rotation(
        self, keys: list[str], token_id: str, successor_id: str, error: Exception
    ) -> None:
        # The successor was never handed out (this request gets a 503, and concurrent
        # requests with the same token wait on this one's refresh flight), so the presented
        # token becomes current again and a retry rotates it anew. Without the undo the
        # retry would find the token rotated out, and after the grace window take it for
        # theft. If the primary is gone, whatever reached the replica stands.
        try:
            await self._gateway.call(self._unrotate(keys=keys, args=[token_id, successor_id]))
        except StoreUnavailableError as exc:
            logger.error("unconfirmed rotation could not be undone (%s): %s", error, exc)

    async def active(self, family_id: str, now: float) -> bool:
        """Whether the family is live, asked of Redis (``SessionStore.family_active``)."""
        g = self._gateway
        self._listen()
        ticket = self._view.ticket()
        rev, absolute = await g.call(g.redis.hmget(self._keys.family(family_id), "rev", "abs"))
        until = float(absolute) if rev == b"0" and absolute is not None else None
        if until is not None and now >= until:
            until = None
        self._view.learn(family_id, until, ticket)
        return until is not None
