"""Real processes for tests: redis-server (alone, as a cluster, as primary + replica +
Sentinel), uvicorn, and free loopback ports.

Nothing here skips: a missing binary is a test failure with a message saying how to get it
(``bash scripts/test`` installs redis-server when it is missing).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
import redis

REPO_ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not installed: run `bash scripts/test`, which installs it "
            "(apt-get install redis-server), or install it yourself",
            pytrace=False,
        )
    return binary


def wait_until(what: str, check: Callable[[], bool], timeout: float = STARTUP_TIMEOUT) -> float:
    """Poll ``check`` until it holds; fail (with ``what``) after ``timeout`` seconds.
    Returns the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}", pytrace=False)
        time.sleep(0.02)
    return time.monotonic() - started


class RedisServer:
    """A redis-server on a loopback port with an append-only file, so that a restart after
    a kill comes back with the same data (as a production Redis with persistence would).
    ``extra`` adds command-line options (cluster mode, replicaof)."""

    def __init__(self, data_dir: Path, *, extra: Sequence[str] = ()) -> None:
        self.binary = _redis_binary()
        self.dir = data_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.extra = list(extra)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def control(self) -> redis.Redis:
        """A plain synchronous client for the test's own commands (INFO, CLUSTER ...)."""
        return redis.Redis(port=self.port, socket_timeout=5, decode_responses=True)

    def start(self) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "always"]
        command += ["--save", "", "--protected-mode", "yes", "--logfile", "redis.log"]
        command += self.extra
        self._spawn(command)

    def _spawn(self, command: list[str]) -> None:
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while not _ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server did not start on port {self.port}", pytrace=False)
            time.sleep(0.02)

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def is_primary(self) -> bool:
        """Whether the server answers and takes writes (role master)."""
        try:
            with self.control() as control:
                return bool(control.info("replication")["role"] == "master")
        except redis.RedisError:
            return False

    def signal(self, sig: int) -> None:
        assert self.process is not None, "the server is not running"
        self.process.send_signal(sig)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None


class RedisClusterServers:
    """A Redis Cluster of ``size`` primaries (no replicas) on loopback ports, the 16384
    slots split evenly, formed with CLUSTER ADDSLOTSRANGE and CLUSTER MEET."""

    def __init__(self, base_dir: Path, size: int = 3) -> None:
        self.base_dir = base_dir
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
                "5000",
                "--appendonly",
                "no",
                # A replica's first sync starts at once (Redis waits 5 s for more by default).
                "--repl-diskless-sync-delay",
                "0",
            ],
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
        count = len(self.nodes)

        def known() -> bool:
            return all(int(fields["cluster_known_nodes"]) == count for fields, _ in self.tables())

        wait_until("every node to know the new one", known)
        self.wait_settled()
        return node

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


SENTINEL_SERVICE = "authkit"


class SentinelSet:
    """A primary, its replica and one Sentinel watching them (quorum 1, a primary is taken
    for down after ``down_after_ms``), as redis-server processes on loopback ports."""

    def __init__(self, base_dir: Path, *, down_after_ms: int = 1000) -> None:
        # A full sync starts at once (Redis waits 5 s for more replicas by default), and no
        # fsync per write: on a busy disk it can stall a replica's acknowledgement (WAIT)
        # for longer than the test's wait_timeout. A killed server rejoins from its peer.
        fast_sync = ["--repl-diskless-sync-delay", "0", "--appendonly", "no"]
        first = RedisServer(base_dir / "a", extra=fast_sync)
        second = RedisServer(
            base_dir / "b", extra=[*fast_sync, "--replicaof", "127.0.0.1", str(first.port)]
        )
        self.servers = [first, second]
        self.sentinel_dir = base_dir / "sentinel"
        self.sentinel_dir.mkdir(parents=True, exist_ok=True)
        self.sentinel_port = free_port()
        self.down_after_ms = down_after_ms
        self.sentinel: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{SENTINEL_SERVICE}"

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        for server in self.servers:
            server.start()
        self.wait_replicated(self.servers[0], self.servers[1])
        conf = self.sentinel_dir / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.sentinel_dir}\n"
            "logfile sentinel.log\n"
            f"sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {self.servers[0].port} 1\n"
            f"sentinel down-after-milliseconds {SENTINEL_SERVICE} {self.down_after_ms}\n"
            # Also the pause between two failovers of the same primary (twice this).
            f"sentinel failover-timeout {SENTINEL_SERVICE} 1000\n"
        )
        self.sentinel = subprocess.Popen(
            [_redis_binary(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until("Sentinel to answer", lambda: _ping(self.sentinel_port), 10)
        self.wait_watched(self.servers[1])

    def _sentinel(self) -> redis.Redis:
        return redis.Redis(port=self.sentinel_port, socket_timeout=5, decode_responses=True)

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
        """Until Sentinel sees ``replica`` as a healthy replica it could promote."""

        def watched() -> bool:
            with self._sentinel() as sentinel:
                replicas = sentinel.sentinel_slaves(SENTINEL_SERVICE)
            # (Its replication state Sentinel reads by INFO, every second once a primary
            # is down: fresh enough when it has to choose.)
            return any(
                r["port"] == replica.port and not r["is_sdown"] and not r["is_disconnected"]
                for r in replicas
            )

        wait_until(f"Sentinel to watch the replica on port {replica.port}", watched)

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
        if self.sentinel is not None:
            self.sentinel.terminate()
            self.sentinel.wait(timeout=10)
            self.sentinel = None
        for server in self.servers:
            server.stop()


@contextmanager
def run_example_app(
    tmp_path: Path,
    env: dict[str, str],
    *,
    workers: int = 1,
    app: str = "example_app.main:app",
    ready_path: str = "/login",
    app_dir: str = ".",
) -> Iterator[str]:
    """Run ``uvicorn example_app.main:app`` (or ``app``; ``--workers N``) on a free loopback
    port and yield its base URL once ``ready_path`` answers 200; the server's output is in
    the failure message if it does not come up, and the process group is always stopped."""
    if importlib.util.find_spec("uvicorn") is None:
        pytest.fail("uvicorn is not installed: pip install -e '.[example]'", pytrace=False)
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHKIT_")}
    full_env.update(env)
    log_path = tmp_path / f"uvicorn-{port}.log"
    base_url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "uvicorn", app, "--app-dir", app_dir]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while True:
                if process.poll() is not None:
                    pytest.fail(
                        f"uvicorn exited with code {process.returncode} before answering:\n"
                        + log_path.read_text(errors="replace"),
                        pytrace=False,
                    )
                try:
                    if httpx2.get(f"{base_url}{ready_path}", timeout=1.0).status_code == 200:
                        break
                except httpx2.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"uvicorn did not answer on {base_url} within {STARTUP_TIMEOUT:.0f}s:\n"
                        + log_path.read_text(errors="replace"),
                        pytrace=False,
                    )
                time.sleep(0.1)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


def until_unavailable(request: Callable[[], Any], within: float = 2.0) -> Any:
    """After Redis went away (killed or paused): send ``request()`` until it answers 503
    and return that response.

    A process notices at once (its revocation subscription breaks) or, at the latest, when
    its view of revocations can no longer prove itself current (``max_lag``, 0.1 s by
    default); until then it may still answer 200 from that view, which was current when
    Redis went away. No answer in the meantime sets or clears a cookie.
    """
    deadline = time.monotonic() + within
    while True:
        response = request()
        assert response.status_code in (200, 503), response.text
        assert response.headers.get_list("set-cookie") == []
        if response.status_code == 503:
            return response
        assert time.monotonic() < deadline, f"still answered 200 {within} s after Redis went"
        time.sleep(0.01)


class CookieKeeper:
    """A browser's cookie store for one site, by hand: name -> (value, expiry)."""

    def __init__(self) -> None:
        self._cookies: dict[str, tuple[str, float]] = {}

    def update(self, response: httpx2.Response) -> dict[str, dict[str, str]]:
        """Apply the response's Set-Cookie headers; return name -> attributes as set."""
        seen: dict[str, dict[str, str]] = {}
        for header in response.headers.get_list("set-cookie"):
            pair, *attributes = header.split(";")
            name, _, value = pair.strip().partition("=")
            attrs = {"value": value}
            for attribute in attributes:
                key, _, attr_value = attribute.strip().partition("=")
                attrs[key.lower()] = attr_value
            seen[name] = attrs
            max_age = int(attrs.get("max-age", "86400"))
            if max_age <= 0:
                self._cookies.pop(name, None)
            else:
                self._cookies[name] = (value, time.monotonic() + max_age)
        return seen

    def values(self) -> dict[str, str]:
        now = time.monotonic()
        return {name: value for name, (value, until) in self._cookies.items() if until > now}

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        values = self.values()
        if values:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in values.items())
        return headers
