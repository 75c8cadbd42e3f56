"""L1 after real failovers: a Redis Cluster ``CLUSTER FAILOVER`` and a ``SENTINEL FAILOVER``.

On Redis Cluster the old primary, demoted, keeps the tracking connection.

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
from tests.servers import RedisServer
from tests.test_near_cache import near_on_cluster, wait_serving, warm
from tests.test_sentinel import _fail_over
from tests.test_sentinel import failover_set as failover_set  # a fixture, used by name


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


@pytest.mark.cluster
def test_after_a_slot_migration_l1_does_not_serve_what_the_new_owner_changed(
    local: LocalCluster, cl1: near.Near
) -> None:
    """The slot of an entry held in L1 moves to another primary (as a reshard moves it) while L1
    holds it; the entry is then overwritten, and later invalidated, on its new owner. Tracking is
    per node: the new owner's channel must report both, or L1 must stop serving."""
    tc = TagCache("cluster")
    store = get_store("cluster")
    client: Any = store.client
    entry = store.keys.entry("k")
    warm(cl1, "k", lambda: tc.get_or_set("k", lambda: "old", tags=["warm:k"]), "cluster")
    slot = int(client.keyslot(entry))
    source = local.owner(slot)
    target = next(port for port in local.primaries() if port != source)
    try:
        local.migrate_slot(slot, target)
        new_owner = local.node(target)
        assert new_owner.get(entry) is not None  # the entry moved with its slot
        new_owner.set(entry, b"written by another program on the new owner")
        written_at = time.monotonic()
        _confirmed_after(cl1, written_at)
        # Expected: L1 holds nothing for the entry, or no longer serves at all.
        assert not (cl1.cache.serving() and cl1.cache.get(entry) is not None)
        assert tc.get("k") is None  # not a value of ours any more: a miss, read from the new owner

        # Read into L1 again, now from the new owner, and invalidated there through the API.
        current = near.existing("cluster") or near.near_for("cluster", store)
        assert current is not None
        wait_serving(current)
        warm(current, "k", lambda: tc.get_or_set("k", lambda: "new", tags=["warm:k"]), "cluster")
        assert new_owner.exists(entry)
        tc.invalidate_tags("warm:k")
        assert current.cache.get(entry) is None  # before invalidate_tags() returned (rule 2)
        new_owner.set(entry, b"written again")
        _confirmed_after(current, time.monotonic())
        assert not (current.cache.serving() and current.cache.get(entry) is not None)
    finally:
        local.migrate_slot(slot, source)  # the session's cluster goes back to its first map
        client.nodes_manager.initialize()


def _warm_behind_sentinel(settings: Any, keys: tuple[str, ...]) -> tuple[TagCache, Any, near.Near]:
    """L1 on the "lossy" alias (behind the rig's Sentinel), serving, with ``keys`` warm in it."""
    settings.TAGCACHE = {
        **settings.TAGCACHE,
        "CACHE": "lossy",
        "NEAR_CACHE": {"ALIASES": ["lossy"], "HEARTBEAT": 0.02, "MAX_LAG": 0.5},
        "STALENESS": {"TAGS": {"warm:": "important"}, "DEFAULT": "critical"},
    }
    tc = TagCache("lossy")
    store = get_store("lossy")
    found = near.near_for("lossy", store)
    assert found is not None
    try:
        assert found.channels[0].connected.wait(10)
        wait_serving(found)
        for key in keys:

            def read(key: str = key) -> object:
                return tc.get_or_set(key, lambda: f"old {key}", tags=[f"warm:{key}"])

            warm(found, key, read, "lossy")
    except BaseException:
        near.reset()
        raise
    return tc, store, found


def test_after_a_sentinel_failover_l1_does_not_serve_what_the_new_master_changed(
    settings: Any, failover_set: tuple[RedisServer, RedisServer, RedisServer]
) -> None:
    """A real ``SENTINEL FAILOVER``: the replica is promoted, then Sentinel reconfigures the old
    master as its replica (and closes its clients). Another process overwrites and deletes
    entries on the new master right after the promotion. Once the old master is demoted and L1
    confirms a heartbeat sent after that, it holds neither old value.

    Between the promotion and the demotion the old master still answers as a master: what L1
    does in that window is the next test's.
    """
    old_master, replica, watcher = failover_set
    tc, store, found = _warm_behind_sentinel(settings, ("kept", "overwritten", "deleted"))
    try:
        _fail_over(watcher, replica)
        new_master = redis.Redis(port=replica.port)
        new_master.set(store.keys.entry("overwritten"), b"written by another program")
        new_master.delete(store.keys.entry("deleted"))
        # Sentinel demotes the old master once it has seen it report as a master for a while
        # (after its next INFO, 10 s apart, and 8 s more): a bounded poll of that condition.
        for _ in range(1200):
            if old_master.client().info("replication")["role"] == "slave":
                break
            time.sleep(0.05)
        else:
            raise AssertionError("Sentinel never reconfigured the old master")
        demoted_at = time.monotonic()
        for _ in range(1000):  # a heartbeat sent after the demotion is confirmed
            if found.cache._confirmed.get(0, 0.0) > demoted_at and found.cache.serving():
                break
            found.channels[0].connected.wait(0.01)
            found.barrier()
        else:
            raise AssertionError("L1 never served again after the failover")
        assert found.channels[0].sessions >= 2  # its connection to the old master was closed
        for key in ("overwritten", "deleted"):
            assert found.cache.get(store.keys.entry(key)) is None
        assert tc.get_or_set("deleted", lambda: "new", tags=["warm:deleted"]) == "new"
    finally:
        near.reset()


def test_before_sentinel_demotes_the_old_master_l1_does_not_serve_what_the_new_master_changed(
    settings: Any, failover_set: tuple[RedisServer, RedisServer, RedisServer]
) -> None:
    """The window of a ``SENTINEL FAILOVER``: the replica is promoted, and the old master goes on
    answering as a master until Sentinel demotes it, which here it never does (it refuses
    ``REPLICAOF``, as a master cut off from Sentinel is never told). Another process overwrites
    and deletes entries on the new master. Once a heartbeat sent after those writes is
    confirmed, L1 holds neither old value, and the process's own reads reach the new master."""
    old_master, replica, watcher = failover_set
    tc, store, found = _warm_behind_sentinel(settings, ("overwritten", "deleted"))
    try:
        # Sentinel can promote the replica but never demote the old master.
        old_master.client().acl_setuser(
            "default", enabled=True, nopass=True, commands=["-replicaof", "-slaveof"]
        )
        _fail_over(watcher, replica)
        new_master = redis.Redis(port=replica.port)
        new_master.set(store.keys.entry("overwritten"), b"written by another program")
        new_master.delete(store.keys.entry("deleted"))
        written_at = time.monotonic()
        for _ in range(1000):  # a heartbeat sent after the writes is confirmed (or L1 is gone)
            if near.existing("lossy") is not found or found.cache._confirmed.get(0, 0.0) > written_at:
                break
            time.sleep(0.01)  # a bounded poll of the condition above
        else:
            raise AssertionError("no heartbeat confirmed after the writes")
        assert old_master.client().info("replication")["role"] == "master"  # still in the window
        for key in ("overwritten", "deleted"):
            assert not (found.cache.serving() and found.cache.get(store.keys.entry(key)) is not None), key
        assert tc.get("overwritten") is None  # not a payload of ours: read from the new master
        assert tc.get_or_set("deleted", lambda: "new", tags=["warm:deleted"]) == "new"
    finally:
        near.reset()


def test_while_sentinel_does_not_answer_l1_serves_nothing(
    settings: Any, failover_set: tuple[RedisServer, RedisServer, RedisServer]
) -> None:
    """Without Sentinel's word that the master is still the node the channel reads, a heartbeat
    proves nothing (a failover may have happened meanwhile): L1 stops serving within MAX_LAG,
    and serves again once Sentinel answers."""
    _old_master, _replica, watcher = failover_set
    settings.TAGCACHE = {
        **settings.TAGCACHE,
        "CACHE": "lossy",
        "NEAR_CACHE": {"ALIASES": ["lossy"], "HEARTBEAT": 0.02, "MAX_LAG": 0.5},
        "STALENESS": {"TAGS": {"warm:": "important"}, "DEFAULT": "critical"},
    }
    tc = TagCache("lossy")
    store = get_store("lossy")
    found = near.near_for("lossy", store)
    assert found is not None
    try:
        assert found.channels[0].connected.wait(10)
        wait_serving(found)
        warm(found, "k", lambda: tc.get_or_set("k", lambda: "v", tags=["warm:k"]), "lossy")
        sentinel: Any = redis.Redis(port=watcher.port)  # execute_command is untyped
        # Sentinel refuses the question at once (neither slow nor gone: the heartbeats go on).
        sentinel.execute_command("ACL", "SETUSER", "default", "-sentinel|get-master-addr-by-name")
        try:
            for _ in range(1000):  # a bounded poll: MAX_LAG after the last vouched heartbeat
                if not found.cache.serving():
                    break
                time.sleep(0.01)
            assert not found.cache.serving()
            assert found.channels[0].sessions == 1  # the channel itself stayed up
        finally:
            sentinel.execute_command("ACL", "SETUSER", "default", "+@all")
        for _ in range(1000):  # the next heartbeat Sentinel vouches for
            if found.cache.serving():
                break
            time.sleep(0.01)
        wait_serving(found)
        warm(found, "k", lambda: tc.get_or_set("k", lambda: "v", tags=["warm:k"]), "lossy")
    finally:
        near.reset()
