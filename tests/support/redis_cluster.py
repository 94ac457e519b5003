"""A real Redis Cluster of several primaries on loopback ports, for tests and benchmarks."""

from __future__ import annotations

import signal
from collections.abc import Sequence
from pathlib import Path

from tests.support.processes import STARTUP_TIMEOUT, Service, free_port, wait_until
from tests.support.redis_servers import RedisServer

# How long (ms) a node goes unanswered before it is flagged failing; also how long a node
# being met may take to answer before the handshake is given up.
NODE_TIMEOUT_MS = 5000


class RedisClusterServers(Service):
    """A Redis Cluster of ``size`` primaries (no replicas) on loopback ports, the 16384
    slots split evenly, formed with CLUSTER ADDSLOTSRANGE and CLUSTER MEET; ready once
    every node reports the cluster ok and agrees on the others' config epochs."""

    def __init__(self, base_dir: Path, size: int = 3, *, own_session: bool = False) -> None:
        self.base_dir = base_dir
        self.own_session = own_session
        self.bus_ports: dict[int, int] = {}  # a node's port -> its cluster bus port
        self.nodes = [self._node() for _ in range(size)]

    def _node(self) -> RedisServer:
        bus_port = free_port()
        node = RedisServer(
            self.base_dir / f"node{bus_port}",
            extra=[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-port",
                str(bus_port),
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--appendonly",
                "no",
                # A replica's first sync starts at once (Redis waits 5 s for more by default).
                "--repl-diskless-sync-delay",
                "0",
            ],
            own_session=self.own_session,
        )
        self.bus_ports[node.port] = bus_port
        return node

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> None:
        try:
            self._form()
        except BaseException:
            self.stop()
            raise

    def _form(self) -> None:
        for node in self.nodes:
            node.start()
        size = len(self.nodes)
        for i, node in enumerate(self.nodes):
            first, last = 16384 * i // size, 16384 * (i + 1) // size - 1
            with node.control() as control:
                control.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        for node in self.nodes[1:]:
            self._meet(node)

        def formed() -> bool:
            for node in self.nodes:
                with node.control() as control:
                    info = control.execute_command("CLUSTER", "INFO")
                if "cluster_state:ok" not in info or f"cluster_known_nodes:{size}" not in info:
                    return False
            return True

        wait_until("the cluster to form", formed)
        self.wait_settled()

    def tables(self) -> list[tuple[dict[str, str], list[list[str]]]]:
        """Each running node's CLUSTER INFO fields and CLUSTER NODES lines (split)."""
        found = []
        for node in self.nodes:
            if node.process is None:
                continue
            with node.control() as control:
                info = control.execute_command("CLUSTER", "INFO")
                nodes = control.execute_command("CLUSTER", "NODES")
            fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
            found.append((fields, [line.split() for line in nodes.splitlines() if line]))
        return found

    def settled(self) -> bool:
        """Whether every node is up, agrees with the others on the nodes, their roles and
        config epochs, and the primaries' config epochs are distinct (no collision left
        to resolve, each of which moves the epochs once more)."""
        seen = set()
        for fields, lines in self.tables():
            if fields.get("cluster_state") != "ok":
                return False
            # (A replica shows its primary's config epoch; primaries have distinct ones.)
            masters = [int(parts[6]) for parts in lines if "master" in parts[2]]
            if len(set(masters)) != len(masters):
                return False
            roles = frozenset(
                (parts[0], "master" in parts[2], "fail" in parts[2], parts[6]) for parts in lines
            )
            seen.add(roles)
        return len(seen) == 1

    def wait_settled(self, timeout: float = STARTUP_TIMEOUT) -> None:
        wait_until("the cluster's epochs to settle", self.settled, timeout)

    def _meet(self, node: RedisServer, *, by: Sequence[RedisServer] | None = None) -> None:
        for known in by or self.nodes[:1]:
            with known.control() as control:
                # The bus port is not port + 10000 here, so MEET is told it.
                bus_port = self.bus_ports[node.port]
                control.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, bus_port)

    @staticmethod
    def node_id(node: RedisServer) -> str:
        with node.control() as control:
            return str(control.execute_command("CLUSTER", "MYID"))

    def add_node(self) -> RedisServer:
        """Start one more node and join it to the cluster: a primary with no slots."""
        node = self._node()
        node.start()
        # Met by every node: known everywhere at once, not after rounds of gossip.
        self._meet(node, by=[n for n in self.nodes if n.process is not None])
        self.nodes.append(node)
        with node.control() as control:
            # An epoch of its own at once, not after a collision with another's 0.
            control.execute_command("CLUSTER", "BUMPEPOCH")
        self._wait_known()
        self.wait_settled()
        return node

    def clear_epoch_zero(self) -> None:
        """Give the primary at config epoch 0, if there is one, an epoch of its own: a node
        that joins at 0 (:meth:`add_node_paused`) then collides with nobody (a collision is
        resolved by raising every node's current epoch)."""
        for node in self.nodes:
            if node.process is not None and node.is_primary():
                with node.control() as control:
                    if "cluster_my_epoch:0" in control.execute_command("CLUSTER", "INFO").split():
                        control.execute_command("CLUSTER", "BUMPEPOCH")
        self.wait_settled()

    def add_node_paused(self) -> RedisServer:
        """One more node, met by every node while it is paused (SIGSTOP): until
        :meth:`resume` every node lists it flagged ``handshake``, and counts it in
        ``cluster_known_nodes`` already."""
        running = [n for n in self.nodes if n.process is not None]
        # The handshake is not given up while the node is paused, however long that takes.
        self._node_timeout(running, 10 * STARTUP_TIMEOUT)
        node = self._node()
        node.start()
        node.signal(signal.SIGSTOP)
        self.nodes.append(node)
        self._meet(node, by=running)
        return node

    def resume(self, node: RedisServer) -> None:
        """Let the node of :meth:`add_node_paused` answer: it joins as a primary with no
        slots, at config epoch 0 (no bump, which would raise every node's current epoch),
        and every node settles. After :meth:`clear_epoch_zero`, nothing in any node's
        ``CLUSTER INFO`` then tells that the handshake has ended."""
        node.signal(signal.SIGCONT)
        self._wait_known()
        self.wait_settled()
        self._node_timeout(self.nodes, NODE_TIMEOUT_MS / 1000)

    def _wait_known(self) -> None:
        count = len(self.nodes)

        def known() -> bool:
            return all(int(fields["cluster_known_nodes"]) == count for fields, _ in self.tables())

        wait_until("every node to know the new one", known)

    @staticmethod
    def _node_timeout(nodes: Sequence[RedisServer], seconds: float) -> None:
        for node in nodes:
            with node.control() as control:
                control.config_set("cluster-node-timeout", int(seconds * 1000))

    def add_replica(self, primary: RedisServer) -> RedisServer:
        """One more node, made a replica of ``primary`` and caught up with it."""
        replica = self.add_node()
        with replica.control() as control:
            control.execute_command("CLUSTER", "REPLICATE", self.node_id(primary))

        def replicating() -> bool:
            with replica.control() as control:
                info = control.info("replication")
            return info.get("role") == "slave" and info.get("master_link_status") == "up"

        wait_until("the replica to sync", replicating)
        self.wait_settled()
        return replica

    def failover(self, replica: RedisServer) -> None:
        """``CLUSTER FAILOVER`` on ``replica`` (a manual failover: its primary, alive,
        hands over), until every node has settled with the replica as a primary."""
        with replica.control() as control:
            control.execute_command("CLUSTER", "FAILOVER")
        wait_until("the replica to take over", replica.is_primary)
        self.wait_settled()

    def owner(self, slot: int) -> RedisServer:
        with self.nodes[0].control() as control:
            ranges = control.execute_command("CLUSTER", "SLOTS")
        for first, last, primary, *_ in ranges:
            if first <= slot <= last:
                return next(n for n in self.nodes if n.port == int(primary[1]))
        raise AssertionError(f"slot {slot} is not served")

    def move_slot(self, slot: int, target: RedisServer) -> None:
        """Migrate ``slot`` with its keys to ``target``, as ``redis-cli --cluster
        reshard`` does (IMPORTING, MIGRATING, MIGRATE, then NODE everywhere)."""
        source = self.owner(slot)
        source_id, target_id = self.node_id(source), self.node_id(target)
        with target.control() as control:
            control.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        with source.control() as control:
            control.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            while keys := control.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                control.execute_command(
                    "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys
                )
        for node in (target, source, *self.nodes):
            # Replicas refuse SETSLOT; they learn the owner from their primaries.
            if node.process is not None and node.is_primary():
                with node.control() as control:
                    control.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        self.wait_settled()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
