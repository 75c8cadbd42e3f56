"""The faults of the fault suite, each against real servers of its own (see tests/faultload.py).

Each gives the cache configuration to use, ``inject()`` and ``heal()``, and ``close()``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import redis

from tests.proxy import Proxy
from tests.servers import RedisServer, find_redis_server, free_port

TIMEOUTS = {"SOCKET_TIMEOUT": 0.25, "SOCKET_CONNECT_TIMEOUT": 0.25}


def write_big(members: int) -> None:
    """Index ``members`` entries under the tag "big" (raw writes: quicker than a set() each)."""
    from django_tagcache import tagcache

    keys = tagcache.store.keys
    pipe = tagcache.store.client.pipeline(transaction=False)
    for i in range(members):
        pipe.set(keys.entry(f"big{i}"), b"x")
        pipe.zadd(keys.index("big"), {keys.entry(f"big{i}"): "+inf"})
    pipe.execute()


def invalidate_big(retry_for: float) -> threading.Thread:
    """Invalidate "big" in a thread, retrying (as the outbox would) for up to ``retry_for`` seconds."""
    from django_tagcache import TagCacheUnavailable, tagcache

    def invalidate() -> None:
        deadline = time.monotonic() + retry_for
        while True:
            try:
                tagcache.invalidate_tags("big")
                return
            except TagCacheUnavailable:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.1)

    worker = threading.Thread(target=invalidate)
    worker.start()
    return worker


def big_left(members: int) -> int:
    """Entries of "big" still readable: stale, once the invalidation was retried to its end."""
    from django_tagcache import tagcache

    return sum(tagcache.get(f"big{i}") is not None for i in range(0, members, max(1, members // 200)))


class Standalone:
    """One redis-server behind the TCP proxy; the cache goes through the proxy."""

    automatic = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.server = RedisServer.start()
        self.proxy = Proxy(self.server.port)

    def cache(self) -> dict[str, Any]:
        location = f"redis://127.0.0.1:{self.proxy.port}/0"
        return {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": location, "OPTIONS": TIMEOUTS}

    def admin(self) -> redis.Redis:
        return self.server.client()

    def inject(self) -> None:
        raise NotImplementedError

    def heal(self) -> None:
        raise NotImplementedError

    def leftover(self) -> int:
        """Entries a retried invalidation should have removed and did not."""
        return 0

    def close(self) -> None:
        self.proxy.close()
        self.server.stop()


class KillNine(Standalone):
    """SIGKILL of the server while a big invalidation runs; restarted (empty) on the same port."""

    def __init__(self) -> None:
        super().__init__("kill -9 mid-invalidation")

    def inject(self) -> None:
        write_big(20_000)
        worker = invalidate_big(retry_for=0)  # the server dies under it: it says so, once
        time.sleep(0.01)
        self.server.process.send_signal(signal.SIGKILL)
        self.server.process.wait()
        worker.join()

    def heal(self) -> None:
        self.server = RedisServer.start(binary=self.server.binary, port=self.server.port)


class ProxyFault(Standalone):
    """The network between the app and Redis: packets dropped, delayed 500 ms, or connections reset."""

    def __init__(self, mode: str) -> None:
        super().__init__(
            {
                "drop": "proxy drops packets",
                "delay": "proxy delays 500 ms",
                "reset": "proxy resets connections",
            }[mode]
        )
        self.mode = mode

    def inject(self) -> None:
        if self.mode == "drop":
            self.proxy.blackhole = True
        elif self.mode == "delay":
            self.proxy.delay = 0.5
        else:
            self.proxy.cut(refuse=True)

    def heal(self) -> None:
        self.proxy.blackhole = False
        self.proxy.delay = 0.0
        self.proxy.heal()


class OutOfMemory(Standalone):
    """maxmemory below what the server holds, with noeviction: every write is refused (OOM)."""

    def __init__(self) -> None:
        super().__init__("out of memory (noeviction)")

    def inject(self) -> None:
        with self.admin() as admin:
            used = int(admin.info("memory")["used_memory"])
            admin.config_set("maxmemory-policy", "noeviction")
            admin.config_set("maxmemory", max(1, used - 256 * 1024))

    def heal(self) -> None:
        with self.admin() as admin:
            admin.config_set("maxmemory", 0)


class PauseWrite(Standalone):
    """``CLIENT PAUSE ... WRITE``: reads are served, writes wait."""

    def __init__(self) -> None:
        super().__init__("CLIENT PAUSE WRITE")

    def inject(self) -> None:
        with self.admin() as admin:
            admin.execute_command("CLIENT", "PAUSE", "60000", "WRITE")

    def heal(self) -> None:
        with self.admin() as admin:
            admin.execute_command("CLIENT", "UNPAUSE")


class Eviction(Standalone):
    """maxmemory pressure under an evicting policy: filler keys with TTLs push the server over."""

    def __init__(self, policy: str) -> None:
        super().__init__(f"eviction under {policy}")
        self.policy = policy
        self.stop = threading.Event()
        self.filler: threading.Thread | None = None

    def inject(self) -> None:
        admin = self.admin()
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory-policy", self.policy)
        admin.config_set("maxmemory", used + 512 * 1024)

        def fill() -> None:
            i = 0
            while not self.stop.is_set():
                pipe = admin.pipeline(transaction=False)
                for _ in range(4):
                    i += 1
                    # Big values: few filler keys, so that eviction's samples find the cache's keys.
                    pipe.set(f"filler:{i}", b"x" * 32768, ex=3600)
                pipe.execute()
                time.sleep(0.002)

        self.stop.clear()
        self.filler = threading.Thread(target=fill)
        self.filler.start()

    def heal(self) -> None:
        self.stop.set()
        if self.filler is not None:
            self.filler.join()
        with self.admin() as admin:
            admin.config_set("maxmemory", 0)


class SentinelFailover:
    """A master, its replica and a sentinel; the master is killed and the sentinel promotes the replica."""

    automatic = True
    name = "Sentinel failover"

    def __init__(self) -> None:
        binary = find_redis_server()
        self.master = RedisServer.start(binary=binary)
        self.replica = RedisServer.start(
            binary=binary, extra_args=("--replicaof", "127.0.0.1", str(self.master.port))
        )
        self.config = Path(tempfile.mkdtemp(prefix="tagcache-sentinel-"), "sentinel.conf")
        port = free_port()
        # A service name of its own: django-redis keeps one pool per LOCATION for the process.
        self.service = f"faults{port}"
        self.config.write_text(
            f"port {port}\nbind 127.0.0.1\nsentinel monitor {self.service} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {self.service} 500\n"
            f"sentinel failover-timeout {self.service} 2000\n"
        )
        self.sentinel = RedisServer.start(
            binary=binary, port=port, config_file=str(self.config), extra_args=("--sentinel",)
        )
        deadline = time.monotonic() + 10
        while self.replica.client().info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not sync")
            time.sleep(0.05)

    def cache(self) -> dict[str, Any]:
        return {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://{self.service}/0",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.SentinelClient",
                "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
                "SENTINELS": [("127.0.0.1", self.sentinel.port)],
                **TIMEOUTS,
            },
        }

    def inject(self) -> None:
        write_big(20_000)
        self.worker = invalidate_big(retry_for=30)  # chunked; the caller retries after the failover
        time.sleep(0.01)
        self.master.process.send_signal(signal.SIGKILL)
        self.master.process.wait()

    def heal(self) -> None:
        """Nothing: the sentinel promotes the replica by itself."""
        self.worker.join()

    def leftover(self) -> int:
        return big_left(20_000)

    def close(self) -> None:
        for server in (self.sentinel, self.replica, self.master):
            server.stop()
        self.config.unlink(missing_ok=True)
        os.rmdir(self.config.parent)


class ClusterFault:
    """A 3-primary cluster with replicas: a primary killed during a big invalidation, or a live resharding."""

    def __init__(self, mode: str) -> None:
        from tests.cluster import start_cluster

        self.mode = mode
        self.name = "cluster primary killed mid-invalidation" if mode == "kill" else "live resharding"
        self.automatic = mode == "kill"
        self.cluster = start_cluster(shards=3)

    def cache(self) -> dict[str, Any]:
        from django_tagcache.cluster import _reset_clusters

        _reset_clusters()
        options = {"CLIENT_CLASS": "django_tagcache.cluster.RedisClusterClient", **TIMEOUTS}
        return {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": self.cluster.location,
            "OPTIONS": options,
        }

    def inject(self) -> None:
        if self.mode == "kill":
            self._kill_during_invalidation()
        else:
            self._reshard()

    def _kill_during_invalidation(self) -> None:
        from django_tagcache import tagcache

        for i in range(2000):
            tagcache.set(f"big{i}", i, tags=["big"])

        worker = invalidate_big(retry_for=30)  # the caller retries until the cluster takes it
        time.sleep(0.02)
        self.cluster.kill_primary(self.cluster.primaries()[0])
        worker.join()

    def _reshard(self) -> None:
        source, target = self.cluster.primaries()[:2]
        ids = {port: self.cluster.node(port).cluster("myid") for port in (source, target)}
        cli = str(Path(find_redis_server()).with_name("redis-cli"))
        subprocess.run(
            [cli, "--cluster", "reshard", f"127.0.0.1:{source}", "--cluster-from", _text(ids[source]),
             "--cluster-to", _text(ids[target]), "--cluster-slots", "1000", "--cluster-yes"],
            capture_output=True, timeout=120, check=True,
        )  # fmt: skip

    def heal(self) -> None:
        """Nothing: the replica took over (kill), or the slots moved (resharding)."""

    def leftover(self) -> int:
        return big_left(2000) if self.mode == "kill" else 0

    def close(self) -> None:
        from django_tagcache.cluster import _reset_clusters

        _reset_clusters()
        self.cluster.stop()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def quick() -> dict[str, Callable[[], Any]]:
    """The faults of one server (and Sentinel), by id: seconds each (the fault suite's default)."""
    return {
        "kill-9": KillNine,
        "drop": partial(ProxyFault, "drop"),
        "delay": partial(ProxyFault, "delay"),
        "reset": partial(ProxyFault, "reset"),
        "oom": OutOfMemory,
        "pause-write": PauseWrite,
        "volatile-lru": partial(Eviction, "volatile-lru"),
        "allkeys-lru": partial(Eviction, "allkeys-lru"),
        "sentinel-failover": SentinelFailover,
    }


def everything() -> dict[str, Callable[[], Any]]:
    """Every fault, by id, Redis Cluster included (a cluster of six nodes each)."""
    return {
        **quick(),
        "cluster-primary-killed": partial(ClusterFault, "kill"),
        "cluster-resharding": partial(ClusterFault, "reshard"),
    }
