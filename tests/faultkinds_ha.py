"""The faults of replicated setups: a Sentinel failover, a cluster primary killed, a resharding.

See tests/faultkinds.py for the interface; these start a master, a replica and a sentinel, or a
six-node Redis Cluster, of their own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.faultkinds import TIMEOUTS, big_left, invalidate_big, write_big
from tests.servers import RedisServer, find_redis_server, free_port, start_replica


class SentinelFailover:
    """A master, its replica and a sentinel; the master is killed and the sentinel promotes the replica."""

    automatic = True
    name = "Sentinel failover"

    def __init__(self) -> None:
        binary = find_redis_server()
        self.master = RedisServer.start(binary=binary)
        self.replica = start_replica(self.master, binary)
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
        from django_tagcache.backends.cluster import _reset_clusters

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
        from django_tagcache.backends.cluster import _reset_clusters

        _reset_clusters()
        self.cluster.stop()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
