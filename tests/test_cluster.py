"""Redis Cluster: the django-redis client class, the cluster store's protocol, and real faults.

The core suites run against the cluster too (the "cluster" alias); this module covers what only
a cluster has: steps of a write or an invalidation interleaved by hand, a caller dying half way,
a primary without the scripts, a failover and a killed primary under load.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, cast

import pytest
from django.core.cache import caches
from django.core.exceptions import ImproperlyConfigured
from django_redis import get_redis_connection
from django_redis.cache import RedisCache
from redis.cluster import LoadBalancingStrategy, RedisCluster

from django_tagcache import TagCache, TagCacheUnavailable
from django_tagcache.caching.api import get_store
from django_tagcache.cluster import RedisClusterClient
from django_tagcache.core.cluster_store import TOMBSTONE, ClusterTagStore
from django_tagcache.core.scripts import server_major_version
from django_tagcache.core.serialization import dumps
from tests.cluster import ExternalCluster, LocalCluster
from tests.counting import count

pytestmark = pytest.mark.cluster


@pytest.fixture
def tc(redis_cluster: LocalCluster | ExternalCluster) -> TagCache:
    return TagCache("cluster")


@pytest.fixture
def store(tc: TagCache) -> ClusterTagStore:
    store = tc.store
    assert isinstance(store, ClusterTagStore)
    return store


@pytest.fixture
def local(redis_cluster: LocalCluster | ExternalCluster) -> LocalCluster:
    if not isinstance(redis_cluster, LocalCluster):
        pytest.skip("needs the cluster this test run started (REDIS_CLUSTER_URL names another one)")
    return redis_cluster


# --- the django-redis client class ---------------------------------------------------------------------


def test_get_redis_connection_is_the_one_cluster_of_the_process(tc: TagCache) -> None:
    client: object = get_redis_connection("cluster")  # typed as redis.Redis by django-redis
    store_client: object = get_store("cluster").client
    assert isinstance(client, RedisCluster)
    assert store_client is client
    seen: list[object] = []
    # Django builds a cache backend per thread; they must share the RedisCluster (its pools).
    thread = threading.Thread(target=lambda: seen.append(get_redis_connection("cluster")))
    thread.start()
    thread.join()
    assert seen == [client]
    assert caches["cluster"].client.get_client(write=False) is client  # type: ignore[attr-defined]


def test_the_django_redis_cache_api_works_across_slots(tc: TagCache) -> None:
    cache: Any = caches["cluster"]
    data = {f"key{i}": {"n": i} for i in range(40)}  # spread over every primary
    cache.set_many(data, timeout=60)
    assert cache.get_many([*data, "absent"]) == data
    assert cache.get("key3") == {"n": 3}
    assert cache.add("key3", "other") is False
    assert cache.add("new", 1) is True
    assert cache.incr("new", 5) == 6
    assert cache.decr("new") == 5
    assert cache.has_key("new")
    assert 0 < cache.ttl("key1") <= 60
    assert cache.expire("key1", 1000)
    assert 990 < cache.ttl("key1") <= 1000
    assert cache.persist("key1")
    assert cache.ttl("key1") is None
    assert cache.touch("key2", 30)
    assert sorted(cache.keys("key1*")) == ["key1", *[f"key1{i}" for i in range(10)]]
    assert sorted(cache.iter_keys("key2*")) == ["key2", *[f"key2{i}" for i in range(10)]]
    assert cache.delete("key0") is True
    assert cache.delete_many(["key1", "key2", "absent"]) == 2
    assert cache.delete_pattern("key3*") == 11
    assert cache.get("key30") is None
    assert cache.get("key4") == {"n": 4}
    with cache.lock("a-lock", timeout=5):
        assert cache.get("key5") == {"n": 5}
    cache.clear()
    assert cache.get_many(list(data)) == {}


def test_location_may_be_a_list_and_is_checked(redis_cluster: LocalCluster | ExternalCluster) -> None:
    location = caches["cluster"]._server  # type: ignore[attr-defined]
    urls = location if isinstance(location, list) else location.split(",")
    options = {"CLIENT_CLASS": "django_tagcache.cluster.RedisClusterClient"}
    cache: Any = RedisCache(urls[:2], {"OPTIONS": options})  # two nodes are enough to find the rest
    assert isinstance(cache.client.get_client(), RedisCluster)
    cache.set("listed", 1)
    assert cache.get("listed") == 1
    for bad in ("127.0.0.1:7000", "unix:///tmp/redis.sock", "redis://"):
        with pytest.raises(ImproperlyConfigured, match="redis:// or rediss://"):
            RedisClusterClient(bad, {"OPTIONS": options}, cache)


def test_read_from_replicas_is_an_option(redis_cluster: LocalCluster | ExternalCluster) -> None:
    location = caches["cluster"]._server  # type: ignore[attr-defined]
    options = {"CLIENT_CLASS": "django_tagcache.cluster.RedisClusterClient", "READ_FROM_REPLICAS": True}
    cache: Any = RedisCache(location, {"OPTIONS": options})
    client = cache.client.get_client()
    assert client is not get_redis_connection("cluster")  # another configuration, another client
    assert client.load_balancing_strategy == LoadBalancingStrategy.ROUND_ROBIN
    with pytest.raises(ImproperlyConfigured, match="READ_FROM_REPLICAS"):
        RedisCache(location, {"OPTIONS": {**options, "READ_FROM_REPLICAS": "yes"}}).client  # noqa: B018


# --- layout and scripts ----------------------------------------------------------------------------------


def test_every_cluster_script_spells_the_tombstone_like_the_store() -> None:
    lua = resources.files("django_tagcache.core").joinpath("lua")
    marks = {
        path.name: re.findall(r"local mark = '(.*)'", path.read_text("utf-8"))
        for path in lua.iterdir()
        if path.name.startswith("cluster_")
    }
    spelled = {name: found for name, found in marks.items() if found}
    assert set(spelled) == {"cluster_set.lua", "cluster_tombstone.lua"}
    for found in spelled.values():
        assert found == [TOMBSTONE.decode().replace("\x00", "\\0")]


@pytest.mark.parametrize("tag", ["}", "}}", "}a{b}", "{}", "a}", "a", "{a}"])
def test_every_key_of_a_tag_shares_a_slot(store: ClusterTagStore, tag: str) -> None:
    keys = store.keys
    names = [keys.index(tag), keys.generation(tag), keys.tag(tag) + ":d", keys.tag(tag) + ":i:token"]
    assert len({store.runner.slot(name) for name in names}) == 1
    others = {keys.tag(other) for other in ["}", "}}", "}a{b}", "{}", "a}", "a", "{a}"] if other != tag}
    assert keys.tag(tag) not in others


@pytest.mark.parametrize("mode", ["eval", "function"])
def test_a_primary_without_the_scripts_gets_them_again(local: LocalCluster, settings: Any, mode: str) -> None:
    forgetful = local.node(local.primaries()[0])
    functions = server_major_version(forgetful) >= 7
    if mode == "function" and not functions:
        pytest.skip("Redis Functions need Redis 7")
    settings.TAGCACHE = {"SCRIPT_MODE": mode}
    tc = TagCache("cluster")
    store = tc.store
    assert isinstance(store, ClusterTagStore)
    tags = [f"t{i}" for i in range(12)]  # on every primary
    tc.set("a", 1, tags=tags)
    assert store.runner.loaded() == dict.fromkeys(store.runner.loaded(), True)
    # One primary forgets them, as a new primary or a restarted one without persistence would.
    forgetful.script_flush()
    if functions:
        forgetful.function_flush()
    assert not all(store.runner.loaded().values())
    assert tc.get_or_set("b", lambda: 2, tags=tags) == 2
    assert tc.invalidate_tags(*tags) == 2
    assert all(store.runner.loaded().values())


# --- the write protocol, step by step ---------------------------------------------------------------------


def test_an_invalidation_between_index_and_store_leaves_a_tombstone_that_refuses(
    tc: TagCache, store: ClusterTagStore
) -> None:
    entry = store.keys.entry("k")
    tokens = store.generations(["t", "u"])
    indexed = store.write_index(entry, 60_000, ["t", "u"], tokens)
    assert indexed is not None
    # The invalidation finds the entry in the index before the writer stored it.
    assert tc.invalidate_tags("u") == 0
    assert cast("bytes", store.client.get(entry)).startswith(TOMBSTONE)
    assert tc.get("k") is None
    assert store.write_entry(entry, dumps("stale"), indexed) is False
    assert tc.get("k") is None
    # A writer that read the generations after the invalidation passes the tombstone.
    assert tc.get_or_set("k", "fresh", tags=["t", "u"]) == "fresh"
    assert tc.get("k") == "fresh"


def test_a_plain_set_racing_an_invalidation_is_refused_too(tc: TagCache, store: ClusterTagStore) -> None:
    entry = store.keys.entry("k")
    indexed = store.write_index(entry, 60_000, ["t"])  # no expected tokens: a plain set
    assert indexed is not None
    tc.invalidate_tags("t")
    assert store.write_entry(entry, dumps("v"), indexed) is False
    assert tc.get("k") is None


def test_the_last_step_takes_back_an_entry_whose_tombstone_is_gone(
    tc: TagCache, store: ClusterTagStore
) -> None:
    entry = store.keys.entry("k")
    indexed = store.write_index(entry, 60_000, ["t"], store.generations(["t"]))
    assert indexed is not None
    tc.invalidate_tags("t")
    store.client.delete(entry)  # the tombstone expired (a writer stalled longer than TOMBSTONE_TTL)
    assert store.write_entry(entry, dumps("stale"), indexed) is True  # stored, for one round trip
    assert store.write_confirm(entry, indexed) is False
    assert tc.get("k") is None


def test_two_writers_straddling_an_invalidation_never_leave_the_old_value(
    tc: TagCache, store: ClusterTagStore
) -> None:
    entry = store.keys.entry("k")
    old = store.write_index(entry, 60_000, ["t"], store.generations(["t"]))
    assert old is not None
    tc.invalidate_tags("t")
    assert tc.get_or_set("k", "new", tags=["t"]) == "new"  # replaces the tombstone
    # The older writer arrives last: its store passes (no tombstone left), its check does not.
    assert store.write_entry(entry, dumps("old"), old) is True
    assert store.write_confirm(entry, old) is False
    assert tc.get("k") is None  # a miss, never the old value


def test_a_refusing_slot_stores_nothing(tc: TagCache, store: ClusterTagStore) -> None:
    tags = [f"t{i}" for i in range(12)]
    tokens = store.generations(tags)
    tc.invalidate_tags("t5")  # one of the tags moves between the miss and the write
    assert store.write(store.keys.entry("k"), dumps("v"), 60_000, tags, tokens) is False
    assert tc.get("k") is None
    # Index members left in the slots that accepted are harmless: nothing to remove.
    assert tc.invalidate_tags(*tags) == 0


def test_an_entry_expires_with_its_index_members(tc: TagCache, store: ClusterTagStore) -> None:
    if int(str(store.client.info("server")["redis_version"]).split(".")[0]) < 7:
        pytest.skip("PEXPIRETIME needs Redis 7")
    tc.set("k", 1, timeout=100, tags=["a", "b"])
    entry = store.keys.entry("k")
    expire_at = store.client.pexpiretime(entry)
    scores = [store.client.zscore(store.keys.index(tag), entry) for tag in ("a", "b")]
    assert expire_at == min(int(score or 0) for score in scores)


def test_tombstones_live_tombstone_ttl(tc: TagCache, store: ClusterTagStore, settings: Any) -> None:
    settings.TAGCACHE = {"TOMBSTONE_TTL": 3}
    tc = TagCache("cluster")
    tc.set("k", 1, tags=["t"])
    assert tc.invalidate_tags("t") == 1
    entry = tc.store.keys.entry("k")
    assert 0 < tc.store.client.pttl(entry) <= 3000
    assert tc.get("k") is None


# --- invalidation: a caller that dies half way --------------------------------------------------------


def test_an_invalidation_stopped_after_its_first_step_is_finished_by_the_next(
    tc: TagCache, store: ClusterTagStore
) -> None:
    tags = [f"t{i}" for i in range(8)]
    for i in range(40):
        tc.set(f"old{i}", i, tags=[tags[i % 8]])
    drains = store.begin_invalidate(tags)  # and the caller dies
    assert len(drains) == 8
    assert [tc.get(f"old{i}") for i in range(40)] == list(range(40))  # not drained: recorded
    for i in range(8):
        tc.set(f"new{i}", i, tags=[tags[i]])  # new writes start fresh indexes
    assert tc.invalidate_tags(*tags) == 48
    assert all(tc.get(f"old{i}") is None for i in range(40))
    assert all(tc.get(f"new{i}") is None for i in range(8))
    assert not any(store.client.exists(d.drains) for d in drains)


def test_an_invalidation_stopped_mid_drain_is_finished_by_the_next(
    tc: TagCache, store: ClusterTagStore, settings: Any
) -> None:
    settings.TAGCACHE = {"CHUNK_SIZE": 5}
    tc = TagCache("cluster")
    store = tc.store  # type: ignore[assignment]
    for i in range(23):
        tc.set(f"e{i}", i, tags=["big"])
    [drain] = store.begin_invalidate(["big"])
    members = [bytes(m).decode() for m in drain.members or ()]
    assert len(members) == 5
    # Tombstone the first chunk and die before acknowledging it.
    removed = sum(
        store.runner.run(
            [("cluster_tombstone", [m], [store.options.tombstone_ttl_ms, drain.replaced]) for m in members]
        )
    )
    assert removed == 5
    assert tc.invalidate_tags("big") == 18  # the rest; the first five were already gone
    assert all(tc.get(f"e{i}") is None for i in range(23))
    assert not store.client.exists(drain.drains)
    assert not store.client.exists(drain.aside)


def test_drain_finishes_one_index_set_aside(tc: TagCache, store: ClusterTagStore) -> None:
    for i in range(7):
        tc.set(f"e{i}", i, tags=["t"])
    [drain] = store.begin_invalidate(["t"])
    assert store.drain(drain.aside, drain.drains) == 7
    assert not store.client.exists(drain.aside)


# --- faults under load ---------------------------------------------------------------------------------


@dataclass
class Load:
    """Writers that tag entries and invalidate, recording when each call finished (logical time)."""

    tc: TagCache
    tags: list[str]
    _clock: Iterator[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    writes: list[tuple[str, str, int]] = field(default_factory=list)  # key, tag, finished
    invalidations: list[tuple[str, int, int]] = field(default_factory=list)  # tag, started, finished
    unavailable: int = 0
    done: int = 0
    errors: list[BaseException] = field(default_factory=list)

    def tick(self) -> int:
        with self._lock:
            return next(self._clock)

    def invalidate(self, tag: str) -> None:
        started = self.tick()
        for _attempt in range(1000):
            try:
                self.tc.invalidate_tags(tag)
                break
            except TagCacheUnavailable:
                # Not lost: this caller retries it later, as the outbox would (pacing only; the
                # attempt limit just keeps a broken cluster from hanging the run).
                with self._lock:
                    self.unavailable += 1
                threading.Event().wait(0.05)
        else:
            raise AssertionError(f"invalidating {tag} never succeeded")
        self.invalidations.append((tag, started, self.tick()))

    def writer(self, n: int, stop: threading.Event) -> None:
        try:
            for i in itertools.count():
                if stop.is_set():
                    return
                tag = self.tags[(n + i) % len(self.tags)]
                key = f"w{n}-{i}"
                if i % 4 == 3:
                    self.invalidate(tag)
                elif i % 2:
                    self.tc.set(key, i, tags=[tag])  # fails open (False) while a shard is down
                    self.writes.append((key, tag, self.tick()))
                else:
                    self.tc.get_or_set(key, lambda i=i: i, tags=[tag])
                    self.writes.append((key, tag, self.tick()))
                with self._lock:
                    self.done += 1
        except BaseException as exc:  # pragma: no cover - reported by the test
            self.errors.append(exc)
            stop.set()

    def run_around(self, fault: Callable[[], None], writers: int = 4, ops: int = 150) -> None:
        """Run the writers; apply ``fault`` once they did ``ops`` calls; stop ``ops`` calls later."""
        stop = threading.Event()
        threads = [threading.Thread(target=self.writer, args=(n, stop)) for n in range(writers)]
        for thread in threads:
            thread.start()
        try:
            self._wait_for(ops, stop)
            fault()
            self._wait_for(self.done + ops, stop)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert not self.errors, self.errors

    def _wait_for(self, done: int, stop: threading.Event) -> None:
        while self.done < done and not stop.is_set():
            stop.wait(0.01)

    def stale(self) -> list[str]:
        """Entries still readable although an invalidation of their tag started after they were written."""
        last_start: dict[str, int] = {}
        for tag, started, _finished in self.invalidations:
            last_start[tag] = max(started, last_start.get(tag, -1))
        doomed = [key for key, tag, finished in self.writes if last_start.get(tag, -1) > finished]
        return [key for key in doomed if self.tc.get(key) is not None]


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["failover", "kill"])
def test_no_invalidation_is_lost_and_nothing_stale_survives_a_failover(
    local: LocalCluster, store: ClusterTagStore, settings: Any, fault: str
) -> None:
    # While a shard is down the circuit opens; let it probe again soon after the cluster is back.
    settings.TAGCACHE = {"CIRCUIT_BREAKER": {"RESET_TIMEOUT": 0.5}}
    tc = TagCache("cluster")
    tags = [f"load{i}" for i in range(12)]  # on every primary
    primary = int(store.runner.cluster.nodes_manager.get_node_from_slot(
        store.runner.slot(store.keys.tag(tags[0]))
    ).port)  # fmt: skip
    load = Load(tc, tags)
    killed: list[int] = []

    def failover() -> None:
        local.failover(local.replica_of(primary))

    def kill() -> None:
        local.kill_primary(primary)
        killed.append(primary)

    try:
        load.run_around(failover if fault == "failover" else kill)
        assert killed or local.roles()[primary] == "slave"  # the shard really changed hands
        if killed:
            assert load.unavailable > 0  # invalidations did fail meanwhile, and were retried
        assert len(load.invalidations) > 0
        assert load.stale() == []
        # After the fault every tag invalidates in one go, and everything under it is gone.
        for tag in tags:
            load.invalidate(tag)
        assert all(tc.get(key) is None for key, _tag, _finished in load.writes)
    finally:
        for port in killed:
            local.restart(port)
        local.wait_healthy()
        # Later tests count messages per node: give the shared client the new slot map now.
        get_redis_connection("cluster").nodes_manager.initialize()


def test_one_invalidation_of_many_tags_of_an_entry_lets_a_later_writer_store(tc: TagCache) -> None:
    # One call naming 17 tags of one entry is one invalidation: its tombstone must name only the
    # generations it replaced, not turn into "refuse every write" as 17 separate calls would.
    tags = [f"t{i}" for i in range(17)]
    tc.set("k", "old", tags=tags)
    assert tc.invalidate_tags(*tags) == 1
    assert tc.get_or_set("k", lambda: "new", tags=tags) == "new"
    assert tc.get("k") == "new"


def test_invalidating_twenty_tags_of_one_entry_takes_one_tombstone_call(
    tc: TagCache, store: ClusterTagStore
) -> None:
    # docs/cluster.md: one call per tag slot to set aside, one per entry slot to tombstone, one
    # per set-aside index to acknowledge.
    tags = [f"t{i}" for i in range(20)]
    tc.set("k", "v", tags=tags)
    with count() as tally:
        assert tc.invalidate_tags(*tags) == 1
    tag_slots = {store.runner.slot(store.keys.tag(tag)) for tag in tags}
    scripts = [c for c in tally.commands if c in ("FCALL", "EVALSHA")]
    assert len(scripts) == len(tag_slots) + 1 + len(tags)
