"""L1 on Redis Cluster after a failover: the old primary, demoted, keeps the tracking connection.

CLUSTER FAILOVER turns the old primary into a replica without closing its clients, and a process
whose reads are L1 hits sends nothing that would teach its cluster client the new map, so the
topology check sees no change. The heartbeats of that shard are then answered by a replica: they
prove nothing about writes on the new primary that the replica has not received. Cut the replica
off its new primary's stream (as a partition would) and a change made there is never pushed,
while every heartbeat keeps L1 serving the old value.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django_redis import get_redis_connection

from django_tagcache import TagCache
from django_tagcache.caching import near
from django_tagcache.caching.api import get_store
from tests.cluster import LocalCluster
from tests.test_near_cache import near_on_cluster, warm


@pytest.fixture
def local(redis_cluster: Any) -> LocalCluster:
    if not isinstance(redis_cluster, LocalCluster):
        pytest.skip("needs the cluster this test run starts")
    return redis_cluster


@pytest.fixture
def cl1(local: LocalCluster, settings: Any) -> Iterator[near.Near]:
    yield from near_on_cluster(settings)


def _confirmed_after(found: near.Near, moment: float) -> None:
    """Wait (by condition, not by time) until every channel confirmed a heartbeat sent after ``moment``."""
    for _ in range(1000):
        if near.existing("cluster") is not found:
            return  # retired: it serves nothing any more
        confirmed = found.cache._confirmed
        if len(confirmed) == len(found.channels) and min(confirmed.values()) > moment:
            return
        found.barrier()  # one round trip on every tracking connection, then look again
    raise AssertionError(
        f"no heartbeat confirmed after the write: existing={near.existing('cluster') is found} "
        f"confirmed={found.cache._confirmed} on={found.cache._on} moment={moment} "
        f"sessions={[c.sessions for c in found.channels]} serving={found.cache.serving()}"
    )


@pytest.mark.cluster
def test_after_a_failover_l1_does_not_serve_what_the_new_primary_deleted(
    local: LocalCluster, cl1: near.Near
) -> None:
    tc = TagCache("cluster")
    store = get_store("cluster")
    entry = store.keys.entry("k")
    warm(cl1, "k", lambda: tc.get_or_set("k", lambda: "old", tags=["warm:k"]), "cluster")
    client: Any = store.client
    primary = int(client.get_node_from_key(entry).port)
    replica = local.replica_of(primary)
    new_primary = local.node(replica)
    local.failover(replica)  # no data loss; the old primary now replicates `replica`
    try:
        # The old primary loses its replication link (a partition between the two nodes), while
        # this process still reaches it: the new primary refuses its unauthenticated handshake.
        new_primary.acl_setuser("writer", enabled=True, nopass=True, commands=["+@all"], keys=["*"])
        new_primary.acl_setuser("default", enabled=False)
        new_primary.client_kill_filter(_type="replica")
        for _ in range(500):
            if local.node(primary).info("replication")["master_link_status"] == "down":
                break
            cl1.barrier()
        writer = redis.Redis(port=replica, username="writer", password="x")
        assert writer.delete(entry) == 1  # another process deletes the entry on its shard's primary
        deleted_at = time.monotonic()
        _confirmed_after(cl1, deleted_at)  # L1's proof that every push up to the delete is in
        if near.existing("cluster") is cl1:
            for channel in cl1.channels:
                assert channel.barrier()  # and the on-demand one agrees
        held = cl1.cache.get(entry)
        serving = cl1.cache.serving()
    finally:
        new_primary.acl_setuser(
            "default", enabled=True, nopass=True, commands=["+@all"], keys=["*"], channels=["*"]
        )
        new_primary.acl_deluser("writer")
        local.wait_healthy()
        get_redis_connection("cluster").nodes_manager.initialize()
    # Expected: L1 does not serve the deleted entry: either it was retired when its node answered
    # that it is a replica, or it holds nothing (the delete is older than a confirmed heartbeat).
    # Without the ROLE check: the deleted entry's payload, served while the replica answers.
    assert not (serving and held is not None)
    assert tc.get("k") is None
