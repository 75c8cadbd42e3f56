"""The faults of the fault suite, each against real servers of its own (see tests/faultload.py).

Each gives the cache configuration to use, ``inject()``, ``heal()``, ``leftover()`` and
``close()``. This module has the faults of one server; tests/faultkinds_ha.py those of Sentinel
and Redis Cluster.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import redis

from tests.proxy import Proxy
from tests.servers import RedisServer

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


def quick() -> dict[str, Callable[[], Any]]:
    """The faults of one server (and Sentinel), by id: seconds each (the fault suite's default)."""
    from tests.faultkinds_ha import SentinelFailover

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
    from tests.faultkinds_ha import ClusterFault

    return {
        **quick(),
        "cluster-primary-killed": partial(ClusterFault, "kill"),
        "cluster-resharding": partial(ClusterFault, "reshard"),
    }
