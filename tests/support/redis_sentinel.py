"""A real primary, its replicas and the Sentinels watching them on loopback ports, for
tests and benchmarks."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import redis

from tests.support.processes import (
    LaunchError,
    Service,
    free_port,
    start_ready,
    stop_process,
    wait_until,
)
from tests.support.redis_servers import RedisServer, answers, ping, redis_binary

SENTINEL_SERVICE = "authkit"


def is_sentinel(port: int) -> bool:
    """Whether a Sentinel answers on ``port`` (a data server refuses ``SENTINEL MYID``)."""
    return answers(port, b"SENTINEL MYID", b"$")  # its id, a bulk string


class SentinelSet(Service):
    """A primary, ``replicas`` replicas of it and ``sentinels`` Sentinels watching them
    (quorum: a majority of the Sentinels; a primary is taken for down after
    ``down_after_ms``), as redis-server processes on loopback ports. Ready once every
    replica is caught up and every Sentinel sees each replica healthy and knows the other
    Sentinels. ``sentinel_debug`` sets Redis 7's ``SENTINEL DEBUG`` periods (e.g.
    ``{"info-period": 1000}``) on every Sentinel; ``own_session`` as in
    :func:`~tests.support.processes.start_process`."""

    def __init__(
        self,
        base_dir: Path,
        *,
        replicas: int = 1,
        sentinels: int = 1,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 1000,
        sentinel_debug: Mapping[str, int] | None = None,
        own_session: bool = False,
    ) -> None:
        # A full sync starts at once (Redis waits 5 s for more replicas by default), and no
        # fsync per write: on a busy disk it can stall a replica's acknowledgement (WAIT)
        # for longer than the test's wait_timeout. A killed server rejoins from its peer.
        fast_sync = ["--repl-diskless-sync-delay", "0", "--appendonly", "no"]
        first = RedisServer(base_dir / "a", extra=fast_sync, own_session=own_session)
        self.servers = [first]
        for i in range(replicas):
            replica_of = ["--replicaof", "127.0.0.1", str(first.port)]
            self.servers.append(
                RedisServer(
                    base_dir / f"r{i}", extra=fast_sync + replica_of, own_session=own_session
                )
            )
        self.base_dir = base_dir
        self.own_session = own_session
        self.sentinel_ports = tuple(free_port() for _ in range(sentinels))
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.sentinel_debug = dict(sentinel_debug or {})
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SENTINEL_SERVICE}"

    @property
    def data_ports(self) -> tuple[int, ...]:
        """The data nodes' ports, the first primary first."""
        return tuple(server.port for server in self.servers)

    @property
    def sentinel(self) -> subprocess.Popen[bytes] | None:
        """The first Sentinel's process (the only one, by default)."""
        return self.sentinels[0] if self.sentinels else None

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        for server in self.servers:
            server.start()
        for replica in self.servers[1:]:
            self.wait_replicated(self.servers[0], replica)
        quorum = len(self.sentinel_ports) // 2 + 1
        ports = list(self.sentinel_ports)
        for i in range(len(ports)):
            for attempt in range(3):
                try:
                    self.sentinels.append(self._start_sentinel(i, ports[i], quorum))
                    break
                except LaunchError:
                    # Another server took the port between its pick and this start (the
                    # Sentinel could not bind it and exited): pick another.
                    if attempt == 2 or not ping(ports[i]):
                        raise
                    ports[i] = free_port()
                    self.sentinel_ports = tuple(ports)
            if self.sentinel_debug:
                with self._sentinel(ports[i]) as sentinel:
                    args = [x for pair in self.sentinel_debug.items() for x in pair]
                    sentinel.execute_command("SENTINEL", "DEBUG", *args)
        for replica in self.servers[1:]:
            self.wait_watched(replica)

    def _start_sentinel(self, i: int, port: int, quorum: int) -> subprocess.Popen[bytes]:
        directory = self.base_dir / f"sentinel{i}"
        directory.mkdir(parents=True, exist_ok=True)
        conf = directory / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
            f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {self.servers[0].port} {quorum}\n"
            f"sentinel down-after-milliseconds {SENTINEL_SERVICE} {self.down_after_ms}\n"
            # Also the pause between two failovers of the same primary (twice this).
            f"sentinel failover-timeout {SENTINEL_SERVICE} {self.failover_timeout_ms}\n"
        )
        return start_ready(
            [redis_binary(), str(conf), "--sentinel"],
            what=f"Sentinel on port {port}",
            log=directory / "sentinel.log",
            # A Sentinel, not whatever else answers PING there.
            ready=partial(is_sentinel, port),
            timeout=10,
            own_session=self.own_session,
        )

    def _sentinel(self, port: int | None = None) -> redis.Redis:
        """A client of the Sentinel on ``port`` (the first one by default)."""
        port = self.sentinel_ports[0] if port is None else port
        return redis.Redis(port=port, socket_timeout=5, decode_responses=True)

    def fail_over(self) -> None:
        """A failover now (``SENTINEL FAILOVER``): the replica is promoted and the old
        primary, still up, is made its replica at once."""
        with self._sentinel() as sentinel:
            sentinel.execute_command("SENTINEL", "FAILOVER", SENTINEL_SERVICE)

    def promoted(self, old: RedisServer) -> bool:
        """Whether Sentinel names another primary than ``old`` and that one takes writes."""
        current = self.primary()
        return current is not old and current.is_primary()

    def primary(self) -> RedisServer:
        """The server Sentinel names as the primary now."""
        with self._sentinel() as sentinel:
            _, port = sentinel.sentinel_get_master_addr_by_name(SENTINEL_SERVICE)
        return next(s for s in self.servers if s.port == int(port))

    def replica(self) -> RedisServer:
        primary = self.primary()
        return next(s for s in self.servers if s is not primary)

    @staticmethod
    def replicated(primary: RedisServer, replica: RedisServer) -> bool:
        """Whether ``replica`` has everything ``primary`` has, ``primary`` counts it as an
        online replica (the only kind WAIT counts) and a write is confirmed promptly (right
        after a full sync a replica may leave WAIT unanswered for up to a second, until its
        first own acknowledgement)."""
        try:
            with replica.control() as control:
                info = control.info("replication")
            with primary.control() as control:
                own = control.info("replication")
                offset = own["master_repl_offset"]
                online = [
                    v for k, v in own.items() if k.startswith("slave") and isinstance(v, dict)
                ]
                if not (
                    info.get("role") == "slave"
                    and info.get("master_port") == primary.port
                    and info.get("master_link_status") == "up"
                    and info.get("slave_repl_offset", -1) >= offset
                    and any(
                        r.get("port") == replica.port
                        and r.get("state") == "online"
                        and r.get("offset", -1) >= offset
                        for r in online
                    )
                ):
                    return False
                pipe = control.pipeline(transaction=False)
                pipe.set("fixture:probe", time.monotonic())
                pipe.execute_command("WAIT", 1, 50)
                return bool(pipe.execute()[1] == 1)
        except redis.RedisError:  # not up yet, or (a spurious failover) no longer primary
            return False

    def wait_replicated(self, primary: RedisServer, replica: RedisServer) -> None:
        wait_until(
            f"port {replica.port} to replicate port {primary.port}",
            lambda: self.replicated(primary, replica),
        )

    def wait_watched(self, replica: RedisServer) -> None:
        """Until every Sentinel sees ``replica`` as a healthy replica it could promote, and
        knows the other Sentinels."""

        def watched() -> bool:
            for port in self.sentinel_ports:
                with self._sentinel(port) as sentinel:
                    replicas = sentinel.sentinel_slaves(SENTINEL_SERVICE)
                    others = sentinel.sentinel_sentinels(SENTINEL_SERVICE)
                # (Its replication state Sentinel reads by INFO, every second once a
                # primary is down: fresh enough when it has to choose.)
                healthy = any(
                    r["port"] == replica.port and not r["is_sdown"] and not r["is_disconnected"]
                    for r in replicas
                )
                if not healthy or len(others) != len(self.sentinel_ports) - 1:
                    return False
            return True

        wait_until(f"the Sentinels to watch the replica on port {replica.port}", watched)

    def rejoin(self, server: RedisServer) -> None:
        """Restart a killed server as a replica of the new primary (what Sentinel would
        make of it too, but only at its next INFO round, up to 10 s later)."""
        primary = self.primary()
        extra = server.extra
        if "--replicaof" in extra:
            at = extra.index("--replicaof")
            del extra[at : at + 3]
        extra += ["--replicaof", "127.0.0.1", str(primary.port)]
        server.start()

        def settled() -> bool:
            # Whichever Sentinel names now: on a loaded machine it may have failed over
            # once more (a late PING reply), and then the pair settles the other way round.
            current = self.primary()
            other = next(s for s in self.servers if s is not current)
            return current.is_primary() and self.replicated(current, other)

        wait_until("the primary and its replica to settle", settled)
        self.wait_watched(self.replica())

    def stop(self) -> None:
        for process in self.sentinels:
            stop_process(process)
        self.sentinels.clear()
        for server in self.servers:
            server.stop()
