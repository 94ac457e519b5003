"""The Redis key layout: which keys a session family uses, and why they share one slot.

Redis Cluster stores a key in the slot of its *hash tag* (the text between the first ``{``
and the next ``}``, when not empty) or, without one, of the whole key; a script may only
touch keys of one slot, all of them passed in KEYS. So every key of one session family is
placed in the slot of its family key: the family key has no tag (it hashes as a whole) and
each refresh-token key, like the family's session record (what a "your sessions" page
shows), carries the family key as its tag. The family id itself travels inside the refresh
token (``<family id>.<secret>``), so the presented token alone names every key of its
family, and different families spread over every slot of the cluster::

    <prefix>fam:<family>                      hash  sub, abs (absolute expiry), cur, rev
    <prefix>rt:{<prefix>fam:<family>}:<id>    hash  fam, exp, rat (rotated at), succ, sealed
    <prefix>ses:{<prefix>fam:<family>}        hash  c, ua0, ip0 (signed in: when, user agent,
                                                    address), t, ua, ip (the last refresh)
    <prefix>sub:<subject>                     set   family ids, for "sign out everywhere"
    <prefix>fl:<flight>                       hash  v (P:<owner> or the result), x (expiry)
    <prefix>fla:<alias>                       str   the flight key a successor's result is under
    <prefix>lg:<counter>                      hash  n (attempts not succeeded), u (locked
                                                    until), l (the limit), x (forgotten at):
                                                    the login guard's
    <prefix>epoch                             str   the data's identity, for the views (on a
                                                    cluster one per primary, <prefix>epoch:{<n>}
                                                    in a slot it owns: redis.epoch)

A login-guard counter (one per account, one per client address) is a key of its own, with
no tag: an account's and an address's counters spread over the cluster, each decided by a
script on its one key, and every one expires.

A subject's families live in many slots, so "sign out everywhere" reads the subject's set
and then revokes each family in its own slot; a flight and its alias are two slots, written
by two commands. Both are single-key steps that need no cross-slot atomicity (see
``RedisStore``).

The layout of earlier versions differs only in the token key, ``<prefix>rt:<id>`` (no tag,
no family in the token): the family, subject and flight keys are the same, so sessions
written by it keep working; its token records are read (never written) by ``RedisStore``.

A prefix that carries a hash tag of its own (``{authkit}:``) puts every key in that one
slot: correct, but nothing shards.
"""

from __future__ import annotations

from typing import Final

from ...errors import ConfigurationError

__all__ = ["KeyLayout"]

_BRACES: Final = frozenset("{}")


def _has_hash_tag(text: str) -> bool:
    start = text.find("{")
    return start >= 0 and text.find("}", start + 1) > start + 1


class KeyLayout:
    """Key names under one prefix (see the module docstring)."""

    __slots__ = ("one_slot", "prefix")

    def __init__(self, prefix: str) -> None:
        if not isinstance(prefix, str) or not prefix:
            raise ConfigurationError("RedisStore prefix must be a non-empty string")
        # A complete tag decides the slot of every key under the prefix. A stray brace
        # would instead combine with the family tag of token keys into a tag of its own,
        # sending a family's keys to different slots.
        self.one_slot = _has_hash_tag(prefix)
        if not self.one_slot and _BRACES & set(prefix):
            raise ConfigurationError(
                f"RedisStore prefix {prefix!r} has a '{{' or '}}' that is not a complete "
                "hash tag; use a prefix without braces (keys then spread over the cluster)"
            )
        self.prefix = prefix

    def family(self, family_id: str) -> str:
        return f"{self.prefix}fam:{family_id}"

    def token(self, family_id: str, token_id: str) -> str:
        return f"{self.prefix}rt:{{{self.prefix}fam:{family_id}}}:{token_id}"

    def session(self, family_id: str) -> str:
        """The family's session record: when and by whom it was signed in and refreshed."""
        return f"{self.prefix}ses:{{{self.prefix}fam:{family_id}}}"

    def legacy_token(self, token_id: str) -> str:
        """Where earlier versions kept a refresh token's record."""
        return f"{self.prefix}rt:{token_id}"

    def subject(self, subject: str) -> str:
        return f"{self.prefix}sub:{subject}"

    def flight(self, key: str) -> str:
        return f"{self.prefix}fl:{key}"

    def alias(self, alias: str) -> str:
        return f"{self.prefix}fla:{alias}"

    def throttle(self, name: str) -> str:
        """A login-guard attempt counter (``name`` is the guard's: a hash or an address)."""
        return f"{self.prefix}lg:{name}"

    def epoch(self) -> str:
        """The epoch key (on a cluster, the base of each primary's own)."""
        return f"{self.prefix}epoch"
