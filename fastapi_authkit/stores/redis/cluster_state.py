"""What a cluster's nodes say of it, parsed: its shape and its primaries.

Pure parsing of two replies: ``CLUSTER INFO`` (the shape) and ``CLUSTER NODES`` (the
primaries and their slots).

The shape is the part of ``CLUSTER INFO`` that changes when the set of nodes that may
execute writes does (or is about to); the cluster's subscription compares it on every
heartbeat (:mod:`~fastapi_authkit.stores.redis.cluster_subscription`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["NodeTable", "Primary", "describe_change", "parse_info", "parse_nodes"]

# The CLUSTER INFO fields that change when the set of nodes that may execute writes does
# (or is about to): the rest are counters that change all the time.
_SHAPE: Final = (
    b"cluster_state",
    b"cluster_current_epoch",
    b"cluster_my_epoch",
    b"cluster_known_nodes",
    b"cluster_size",
    b"cluster_slots_fail",
)
# Flags of a node that cannot execute anything: a primary with none of its own slots and
# one of these is left out (a failed primary whose slots a replica took over stays listed
# as a failed primary with no slots until it comes back as that replica's replica).
_GONE: Final = (b"fail", b"handshake", b"noaddr")


@dataclass(frozen=True, slots=True)
class Primary:
    """A primary as ``CLUSTER NODES`` lists it."""

    node_id: bytes
    host: str
    port: int
    slots: tuple[tuple[int, int], ...] = ()  # the slot ranges it owns (inclusive)


def parse_info(reply: bytes) -> tuple[bytes, ...]:
    """The shape of the cluster as one node's ``CLUSTER INFO`` describes it."""
    fields = dict(line.partition(b":")[::2] for line in reply.split(b"\r\n") if line)
    return tuple(fields.get(name, b"") for name in _SHAPE)


@dataclass(frozen=True, slots=True)
class NodeTable:
    """What one node's ``CLUSTER NODES`` says: the primaries by node id (every node flagged
    ``master``, except those that hold no slots and are failed or not yet known), the
    highest config epoch of any node, and whether a node is in its handshake (met, not
    yet answered: listed under an id of the meeting node's making, with no role yet)."""

    primaries: dict[bytes, Primary]
    top_epoch: int
    handshake: bool


def parse_nodes(reply: bytes, asked_host: str) -> NodeTable:
    """The node table of one node's ``CLUSTER NODES`` reply (``asked_host``, the address it
    was asked at, for a node that lists itself without a host)."""
    found = {}
    top = 0
    handshake = False
    for line in reply.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        node_id, address, flags = parts[0], parts[1], parts[2].split(b",")
        if parts[6].isdigit():
            top = max(top, int(parts[6]))
        handshake = handshake or b"handshake" in flags
        if b"master" not in flags:
            continue
        # Slot ranges; "[slot->-id]" entries are migrations in progress, not owned slots.
        slots = tuple(_range(part) for part in parts[8:] if not part.startswith(b"["))
        if not slots and any(flag in flags for flag in _GONE):
            continue
        endpoint = address.split(b"@", 1)[0]
        host, _, port = endpoint.rpartition(b":")
        found[node_id] = Primary(
            node_id, host.decode() or asked_host, int(port) if port.isdigit() else 0, slots
        )
    return NodeTable(found, top, handshake)


def _range(part: bytes) -> tuple[int, int]:
    low, _, high = part.partition(b"-")
    return int(low), int(high or low)


def describe_change(before: tuple[bytes, ...], after: tuple[bytes, ...]) -> str:
    """What changed between two shapes (:func:`parse_info`), for a log line."""
    changed = [
        f"{name.decode()} {old.decode()} -> {new.decode()}"
        for name, old, new in zip(_SHAPE, before, after, strict=True)
        if old != new
    ]
    return ", ".join(changed)
