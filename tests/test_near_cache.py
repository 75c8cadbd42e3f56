"""The near cache (L1): its ordering rules, deterministically, and its use by the API on a real Redis.

The rules are those of django_tagcache/core/nearcache.py: nothing is served while the channel
is not confirmed live, and a value read before tracking covered it (or raced by a push) is
never kept. Cross-process behaviour is in test_near_cache_processes.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
import redis
from redis.cluster import RedisCluster

from django_tagcache import TagCache, cached, invalidate_tags, tagcache
from django_tagcache.caching import near, requestcache
from django_tagcache.caching.api import get_store
from django_tagcache.caching.namespaces import in_namespace
from django_tagcache.core import metrics
from django_tagcache.core.nearcache import NearCache
from django_tagcache.core.protections import switched_off
from django_tagcache.core.tracking import TrackingChannel
from tests.counting import count


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def live_cache(clock: Clock, **kwargs: Any) -> NearCache:
    options: dict[str, Any] = {"max_entries": 100, "max_bytes": 1 << 20, "max_ttl": 60, "max_lag": 0.5}
    options.update(kwargs)
    cache = NearCache(clock=clock, **options)
    cache.tracking_on(0)
    cache.confirm(0, clock.now)
    return cache


class TestOrdering:
    """Deterministic interleavings of reads, pushes, flushes and heartbeats."""

    def test_a_read_then_a_put_is_served(self) -> None:
        clock = Clock()
        cache = live_cache(clock)
        ticket = cache.begin("k")
        assert cache.put(ticket, b"v", 10)
        assert cache.get("k") == b"v"

    def test_a_push_between_the_read_and_the_put_voids_it(self) -> None:
        clock = Clock()
        cache = live_cache(clock)
        ticket = cache.begin("k")  # the GET is sent now; Redis answers the old value ...
        cache.invalidate(["k"])  # ... and the push of a write after it is read first
        assert not cache.put(ticket, b"old", 10)
        assert cache.get("k") is None

    def test_a_push_for_another_key_does_not_void_it(self) -> None:
        clock = Clock()
        cache = live_cache(clock)
        ticket = cache.begin("k")
        cache.invalidate(["other"])
        assert cache.put(ticket, b"v", 10)

    def test_a_read_begun_before_tracking_was_on_is_not_kept(self) -> None:
        clock = Clock()
        cache = NearCache(clock=clock, max_entries=10, max_bytes=1 << 20, max_ttl=60, max_lag=0.5)
        ticket = cache.begin("k")  # no channel yet: a write now would not be pushed
        cache.tracking_on(0)
        cache.confirm(0, clock.now)
        assert not cache.put(ticket, b"v", 10)
        later = cache.begin("k")
        assert cache.put(later, b"v", 10)

    def test_a_read_begun_before_a_reconnect_is_not_kept(self) -> None:
        clock = Clock()
        cache = live_cache(clock)
        ticket = cache.begin("k")
        cache.flush(0)  # the connection broke: pushes may be lost
        cache.tracking_on(0)  # and came back
        cache.confirm(0, clock.now)
        assert not cache.put(ticket, b"v", 10)

    def test_a_flush_empties_and_stops_serving_until_confirmed(self) -> None:
        clock = Clock()
        cache = live_cache(clock)
        assert cache.put(cache.begin("k"), b"v", 10)
        cache.flush(0)
        assert cache.get("k") is None
        cache.tracking_on(0)
        assert cache.put(cache.begin("k"), b"v", 10)
        assert cache.get("k") is None  # subscribed, but no heartbeat came back yet
        cache.confirm(0, clock.now)
        assert cache.get("k") == b"v"

    def test_nothing_is_served_once_the_last_confirmed_heartbeat_is_older_than_max_lag(self) -> None:
        clock = Clock()
        cache = live_cache(clock, max_lag=0.5)
        assert cache.put(cache.begin("k"), b"v", 10)
        clock.now += 0.49
        assert cache.get("k") == b"v"
        clock.now += 0.02
        assert cache.get("k") is None  # pushes may be late: not served ...
        cache.confirm(0, clock.now - 0.1)  # ... until a heartbeat sent since comes back
        assert cache.get("k") == b"v"

    def test_a_late_reply_to_an_old_heartbeat_does_not_move_the_bound_back(self) -> None:
        clock = Clock()
        cache = live_cache(clock)
        cache.confirm(0, clock.now + 1)
        cache.confirm(0, clock.now)  # an older one
        clock.now += 1.4
        assert cache.serving()

    def test_every_channel_must_be_confirmed(self) -> None:
        clock = Clock()
        cache = NearCache(clock=clock, max_entries=10, max_bytes=1 << 20, max_ttl=60, max_lag=0.5, channels=2)
        cache.tracking_on(0)
        cache.confirm(0, clock.now)
        assert not cache.put(cache.begin("k"), b"v", 10)  # channel 1 is not subscribed
        cache.tracking_on(1)
        assert cache.put(cache.begin("k"), b"v", 10)
        assert cache.get("k") is None
        cache.confirm(1, clock.now)
        assert cache.get("k") == b"v"

    def test_a_flushdb_push_empties_everything(self) -> None:
        clock = Clock()
        cache = live_cache(clock)
        assert cache.put(cache.begin("k"), b"v", 10)
        pending = cache.begin("j")
        cache.invalidate(None)
        assert cache.get("k") is None
        assert not cache.put(pending, b"v", 10)

    def test_the_ttl_counts_from_the_read_and_never_exceeds_max_ttl(self) -> None:
        clock = Clock()
        cache = live_cache(clock, max_ttl=5, max_lag=100)
        ticket = cache.begin("k")
        clock.now += 1  # the read took a second
        assert cache.put(ticket, b"v", 2)  # Redis said: 2 s left, at the read
        clock.now += 0.99
        assert cache.get("k") == b"v"
        clock.now += 0.02
        assert cache.get("k") is None
        assert cache.put(cache.begin("n"), b"v", None)  # no expiry in Redis: max_ttl
        clock.now += 5.01
        assert cache.get("n") is None

    def test_bounds_evict_the_least_recently_used(self) -> None:
        clock = Clock()
        cache = live_cache(clock, max_entries=3)
        for key in "abc":
            assert cache.put(cache.begin(key), b"v", 10)
        assert cache.get("a") == b"v"  # a is now the most recent
        assert cache.put(cache.begin("d"), b"v", 10)
        assert cache.get("b") is None
        assert [cache.get(k) for k in "acd"] == [b"v"] * 3

    def test_the_byte_bound_counts_keys_payloads_and_overhead(self) -> None:
        clock = Clock()
        cache = live_cache(clock, max_bytes=1000)
        for i in range(20):
            cache.put(cache.begin(f"k{i}"), b"x" * 200, 10)
            _entries, size = cache.size()
            assert size <= 1000
        assert cache.size()[0] == 3  # (2 + 200 + 120) bytes each
        assert not cache.put(cache.begin("big"), b"x" * 1000, 10)

    def test_without_the_ticket_check_the_racing_push_leaves_a_stale_value(self) -> None:
        clock = Clock()
        cache = live_cache(clock)
        with switched_off("near_ticket"):
            ticket = cache.begin("k")
            cache.invalidate(["k"])
            assert cache.put(ticket, b"old", 10)
        assert cache.get("k") == b"old"  # stale, with no push left to remove it

    def test_without_the_flush_a_reconnect_keeps_what_the_gap_may_have_changed(self) -> None:
        clock = Clock()
        cache = live_cache(clock)
        assert cache.put(cache.begin("k"), b"old", 10)
        with switched_off("near_flush"):
            cache.flush(0)
            cache.tracking_on(0)
            cache.confirm(0, clock.now)
        assert cache.get("k") == b"old"

    def test_a_discard_voids_a_read_in_flight(self) -> None:
        clock = Clock()
        cache = live_cache(clock)
        ticket = cache.begin("k")
        cache.discard("k")  # this process overwrote it meanwhile
        assert not cache.put(ticket, b"old", 10)


NEAR = {"ALIASES": ["default"], "HEARTBEAT": 0.02, "MAX_LAG": 0.5}
# Tags of the class "important" (30 s) may use L1; the default class is critical.
STALENESS = {"TAGS": {"warm:": "important", "hot": "important"}, "DEFAULT": "critical"}


@pytest.fixture
def l1(settings: Any) -> Iterator[near.Near]:
    settings.TAGCACHE = {**settings.TAGCACHE, "NEAR_CACHE": NEAR, "STALENESS": STALENESS}
    found = near.near_for("default", get_store("default"))
    assert found is not None
    assert found.channels[0].connected.wait(5)
    wait_serving(found)
    yield found
    near.reset()


def wait_serving(found: near.Near) -> None:
    ok = threading.Event()
    for _ in range(200):
        if found.cache.serving():
            ok.set()
            break
        found.channels[0].connected.wait(0.01)
        found.barrier()
    assert ok.is_set()


def warm(found: near.Near, key: str, read: Callable[[], object], alias: str = "default") -> None:
    """Read until L1 holds the entry: a read is voided (not kept) when the push of this process's
    own earlier write arrives while it is in flight."""
    entry = get_store(alias).keys.entry(key)
    for _ in range(50):
        read()
        if found.cache.get(entry) is not None:
            return
        found.barrier()
    raise AssertionError(f"{key!r} never reached L1")


def wait_gone(found: near.Near, entry: str) -> None:
    """The push for ``entry`` is applied: a barrier returns after every push queued before it."""
    found.barrier()
    assert found.cache.get(entry) is None


class TestOnRedis:
    def test_a_second_read_is_served_without_a_round_trip(self, l1: near.Near) -> None:
        warm(l1, "k", lambda: tagcache.get_or_set("k", lambda: "v", tags=["warm:1"]))
        with count() as tally:
            assert tagcache.get_or_set("k", lambda: "x", tags=["warm:1"]) == "v"
        assert tally.round_trips == 0
        assert metrics.snapshot()["near_hits"] >= 1

    def test_critical_data_bypasses_it(self, l1: near.Near) -> None:
        tagcache.get_or_set("k", lambda: "v", tags=["cold:1"])
        for _ in range(2):
            with count() as tally:
                assert tagcache.get_or_set("k", lambda: "x", tags=["cold:1"]) == "v"
            assert tally.round_trips == 1
        assert metrics.snapshot()["near_hits"] == 0

    def test_one_critical_tag_among_others_bypasses_it(self, l1: near.Near) -> None:
        tagcache.get_or_set("k", lambda: "v", tags=["warm:1", "cold:1"])
        tagcache.get_or_set("k", lambda: "x", tags=["warm:1", "cold:1"])
        with count() as tally:
            tagcache.get_or_set("k", lambda: "x", tags=["warm:1", "cold:1"])
        assert tally.round_trips == 1

    def test_a_plain_get_follows_the_default_class(self, l1: near.Near, settings: Any) -> None:
        tagcache.set("k", "v")
        tagcache.get("k")
        with count() as tally:
            tagcache.get("k")
        assert tally.round_trips == 1  # DEFAULT is critical
        settings.TAGCACHE = {**settings.TAGCACHE, "STALENESS": {**STALENESS, "DEFAULT": "important"}}
        found = near.near_for("default", get_store("default"))
        assert found is not None
        wait_serving(found)
        warm(found, "k", lambda: tagcache.get("k"))
        with count() as tally:
            assert tagcache.get("k") == "v"
        assert tally.round_trips == 0

    def test_near_false_per_call_and_per_function(self, l1: near.Near) -> None:
        calls: list[int] = []

        @cached(tags=lambda n: [f"warm:{n}"], near=False)
        def compute(n: int) -> int:
            calls.append(n)
            return n

        tagcache.get_or_set("plain", lambda: 1, tags=["warm:1"])
        for _ in range(2):
            compute(1)
            tagcache.get_or_set("plain", lambda: 1, tags=["warm:1"], near=False)
        with count() as tally:
            compute(1)
            tagcache.get_or_set("plain", lambda: 1, tags=["warm:1"], near=False)
        assert tally.round_trips == 2  # one GET each: neither was kept in L1
        assert calls == [1]

    def test_invalidate_drops_this_processes_copy_before_it_returns(self, l1: near.Near) -> None:
        warm(l1, "k", lambda: tagcache.get_or_set("k", lambda: "v1", tags=["warm:1"]))
        entry = get_store().keys.entry("k")
        invalidate_tags("warm:1")
        assert l1.cache.get(entry) is None
        assert tagcache.get_or_set("k", lambda: "v2", tags=["warm:1"]) == "v2"

    def test_an_overwrite_by_another_client_leaves_l1(self, l1: near.Near) -> None:
        warm(l1, "k", lambda: tagcache.get_or_set("k", lambda: "v1", tags=["warm:1"]))
        entry = get_store().keys.entry("k")
        with redis.Redis.from_url(_url()) as other:
            other.set(entry, b"junk")
        wait_gone(l1, entry)

    def test_an_expiry_in_redis_leaves_l1(self, l1: near.Near) -> None:
        warm(l1, "k", lambda: tagcache.get_or_set("k", lambda: "v", timeout=0.3, tags=["warm:1"]))
        entry = get_store().keys.entry("k")
        ttl = get_store().client.pttl(entry)
        assert 0 < ttl <= 300
        # The L1 deadline is at most Redis' own: once Redis no longer has it, L1 has not either.
        while get_store().client.exists(entry):
            l1.channels[0].connected.wait(0.01)
        assert l1.cache.get(entry) is None

    def test_a_set_in_this_process_is_read_back_at_once(self, l1: near.Near, settings: Any) -> None:
        settings.TAGCACHE = {**settings.TAGCACHE, "STALENESS": {**STALENESS, "DEFAULT": "important"}}
        found = near.near_for("default", get_store("default"))
        assert found is not None
        wait_serving(found)
        tagcache.set("k", "v1")
        tagcache.get("k")
        tagcache.get("k")
        tagcache.set("k", "v2")
        assert tagcache.get("k") == "v2"
        tagcache.delete("k")
        assert tagcache.get("k") is None

    def test_client_kill_flushes_and_reconnects(self, l1: near.Near) -> None:
        warm(l1, "k", lambda: tagcache.get_or_set("k", lambda: "v", tags=["warm:1"]))
        entry = get_store().keys.entry("k")
        channel = l1.channels[0]
        old_id = channel.client_id
        get_store().client.client_kill_filter(_id=str(old_id))
        # Written while the channel is down: no push will ever say so.
        get_store().client.set(entry, b"junk")
        # The reader thread learns of the kill a moment later (within MAX_LAG, rule 1 allows
        # serving until then): once it has, L1 holds nothing.
        for _ in range(500):
            if channel.client_id != old_id or not l1.cache.serving():
                break
            time.sleep(0.01)  # a poll of the condition above, bounded
        assert l1.cache.get(entry) is None
        for _ in range(500):
            if channel.client_id != old_id and l1.cache.serving():
                break
            channel.connected.wait(0.01)
        assert l1.cache.get(entry) is None
        assert metrics.snapshot()["near_flushes"] >= 1


def test_a_push_is_applied_as_it_arrives_not_at_the_next_heartbeat(settings: Any) -> None:
    """What sits between a push reaching the process and the entry leaving L1: the tracking
    thread blocks reading its connection and applies each push as it is read. With heartbeats
    10 s apart, a change made by another client leaves L1 with no heartbeat or barrier between."""
    settings.TAGCACHE = {
        **settings.TAGCACHE,
        "NEAR_CACHE": {**NEAR, "HEARTBEAT": 10, "MAX_LAG": 30, "REPLY_TIMEOUT": 30},
        "STALENESS": {**STALENESS, "DEFAULT": "important"},
    }
    found = near.near_for("default", get_store("default"))
    assert found is not None
    try:
        assert found.channels[0].connected.wait(5)
        for _ in range(500):  # the first heartbeat is sent at once; 30 s of serving from its reply
            if found.cache.serving():
                break
            time.sleep(0.01)
        entry = get_store().keys.entry("k")
        tagcache.set("k", "v")
        for _ in range(50):  # read until kept: this process's own write may void the first read
            tagcache.get("k")
            if found.cache.get(entry) is not None:
                break
            time.sleep(0.01)
        assert found.cache.get(entry) is not None
        confirmed = dict(found.cache._confirmed)
        with redis.Redis.from_url(_url()) as other:
            other.set(entry, b"written by another program")
        for _ in range(1000):  # a bounded poll of the condition
            if found.cache.get(entry) is None:
                break
            time.sleep(0.001)
        assert found.cache.get(entry) is None
        assert found.cache.serving()
        assert found.cache._confirmed == confirmed  # no heartbeat came back in between
    finally:
        near.reset()


class _Waits(threading.Event):
    """A stop event that records how long its owner waits on it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is not None:
            self.asked.append(timeout)
        return super().wait(timeout)


def test_each_lost_connection_is_retried_after_the_shortest_backoff() -> None:
    """The backoff between reconnections grows while connecting fails, and starts again from the
    shortest once a connection was subscribed: a channel lost now and then (a killed client, a
    failover) must not wait a second longer each time, during which L1 serves nothing."""
    cache = NearCache(max_entries=10, max_bytes=1 << 20, max_ttl=60, max_lag=0.5)
    pool = get_store().client.connection_pool
    channel = TrackingChannel(cache, near._connector(pool), prefixes=["t1:1:x:"], heartbeat=0.02)
    waits = _Waits()
    channel._stop = waits
    channel.start()
    try:
        with redis.Redis.from_url(_url()) as other:
            for killed in range(1, 9):
                for _ in range(500):  # a bounded poll: subscribed again
                    if channel.sessions == killed and channel.client_id is not None:
                        break
                    time.sleep(0.01)
                assert channel.sessions == killed
                other.client_kill_filter(_id=str(channel.client_id))
            for _ in range(500):
                if channel.sessions == 9:
                    break
                time.sleep(0.01)
        backoffs = [asked for asked in waits.asked if asked >= 0.01]
        assert len(backoffs) >= 8
        assert set(backoffs) == {0.01}, backoffs
    finally:
        channel.stop()


def _url() -> str:
    from django.conf import settings

    return str(settings.REDIS_URL)


class TestRequestCache:
    def test_a_key_is_read_once_per_request_and_dropped_on_invalidation(self, settings: Any) -> None:
        settings.TAGCACHE = {**settings.TAGCACHE, "REQUEST_CACHE": True}
        tagcache.get_or_set("k", lambda: "v1", tags=["a"])
        requestcache.request_started()
        try:
            with count() as tally:
                for _ in range(5):
                    assert tagcache.get_or_set("k", lambda: "x", tags=["a"]) == "v1"
            assert tally.round_trips == 1
            invalidate_tags("a")
            assert tagcache.get_or_set("k", lambda: "v2", tags=["a"]) == "v2"
            with count() as tally:
                assert tagcache.get("k") == "v2"  # its own write is remembered
            assert tally.round_trips == 0
        finally:
            requestcache.request_finished()
        with count() as tally:
            tagcache.get("k")
        assert tally.round_trips == 1

    def test_off_by_default(self) -> None:
        tagcache.set("k", "v")
        requestcache.request_started()
        try:
            with count() as tally:
                tagcache.get("k")
                tagcache.get("k")
            assert tally.round_trips == 2
        finally:
            requestcache.request_finished()

    def test_another_alias_has_its_own_entries(self, settings: Any) -> None:
        settings.TAGCACHE = {**settings.TAGCACHE, "REQUEST_CACHE": True}
        TagCache("default").set("k", "a")
        TagCache("builtin").set("k", "b")
        requestcache.request_started()
        try:
            assert TagCache("default").get("k") == "a"
            assert TagCache("builtin").get("k") == "b"
            assert TagCache("default").get("k") == "a"
        finally:
            requestcache.request_finished()


@pytest.mark.parametrize(
    "value",
    [
        {"ALIASES": "default"},
        {"ALIASES": [""]},
        {"MAX_ENTRIES": 0},
        {"MAX_BYTES": True},
        {"MAX_LAG": float("inf")},
        {"HEARTBEAT": 0.5, "MAX_LAG": 0.5},
        {"DEFAULT": "yes"},
        {"NOPE": 1},
    ],
)
def test_bad_near_cache_settings_are_a_system_check_error(settings: Any, value: dict[str, Any]) -> None:
    from django_tagcache.checks import check_settings

    settings.TAGCACHE = {"NEAR_CACHE": value}
    errors = check_settings()
    assert [error.id for error in errors] == ["django_tagcache.E001"]
    assert "NEAR_CACHE" in errors[0].msg


def test_the_metrics_show_the_size_of_l1(l1: near.Near) -> None:
    warm(l1, "k", lambda: tagcache.get_or_set("k", lambda: "v", tags=["warm:1"]))
    gauges = metrics.gauges()
    assert gauges["near_entries"] == 1
    assert gauges["near_bytes"] > 120
    from django_tagcache.ops.prometheus import TagCacheCollector

    names = {family.name for family in TagCacheCollector().collect()}
    assert {"tagcache_near_entries", "tagcache_near_hits"} <= names


# Python 3.12+ warns that fork() in a process with threads may deadlock: the child here only
# reads a dict and exits.
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_forked_child_does_not_serve_the_parents_copies(l1: near.Near) -> None:
    import os

    warm(l1, "k", lambda: tagcache.get_or_set("k", lambda: "v", tags=["warm:1"]))
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a fresh near cache, built at first use, holding nothing
        found = near.existing("default")
        os.write(writer, b"fresh" if found is None else b"inherited")
        os._exit(0)
    os.close(writer)
    assert os.read(reader, 20) == b"fresh"
    os.close(reader)
    os.waitpid(pid, 0)


def near_on_cluster(settings: Any) -> Iterator[near.Near]:
    """For a fixture: L1 on the "cluster" alias, every channel subscribed and serving."""
    settings.TAGCACHE = {
        **settings.TAGCACHE,
        "CACHE": "cluster",
        "NEAR_CACHE": {**NEAR, "ALIASES": ["cluster"]},
        "STALENESS": STALENESS,
    }
    found = near.near_for("cluster", get_store("cluster"))
    assert found is not None
    for channel in found.channels:
        assert channel.connected.wait(10)
    wait_serving(found)
    yield found
    near.reset()


@pytest.mark.cluster
class TestOnRedisCluster:
    @pytest.fixture
    def cl1(self, redis_cluster: Any, settings: Any) -> Iterator[near.Near]:
        yield from near_on_cluster(settings)

    def test_a_tracking_connection_per_primary(self, cl1: near.Near) -> None:
        primaries = near._primaries(cast("RedisCluster", get_store("cluster").client))
        assert len(cl1.channels) == len(primaries) >= 3
        assert all(channel.sessions == 1 for channel in cl1.channels)

    def test_hits_invalidations_and_overwrites_on_every_node(self, cl1: near.Near) -> None:
        tc = TagCache("cluster")
        keys = [f"k{i}" for i in range(12)]  # spread over the three primaries
        for key in keys:

            def read(key: str = key) -> object:
                return tc.get_or_set(key, lambda: key, tags=[f"warm:{key}"])

            warm(cl1, key, read, "cluster")
        with count() as tally:
            assert [tc.get_or_set(key, lambda: "x", tags=[f"warm:{key}"]) for key in keys] == keys
        assert tally.round_trips == 0
        tc.invalidate_tags("warm:k0", "warm:k1", "warm:k2")
        store = get_store("cluster")
        for key in ("k0", "k1", "k2"):
            assert cl1.cache.get(store.keys.entry(key)) is None  # before invalidate_tags() returned
        store.client.set(store.keys.entry("k5"), b"written by another program")
        store.client.delete(store.keys.entry("k6"))
        cl1.barrier()
        assert cl1.cache.get(store.keys.entry("k5")) is None
        assert cl1.cache.get(store.keys.entry("k6")) is None
        assert cl1.cache.get(store.keys.entry("k7")) is not None

    def test_a_change_of_primaries_retires_the_near_cache(self, cl1: near.Near) -> None:
        client = cast("RedisCluster", get_store("cluster").client)
        real = near._topology(client)
        assert not near.check_topology("cluster", cl1, client, real)
        assert near.check_topology("cluster", cl1, client, real - {next(iter(real))})
        assert not cl1.cache.serving()
        assert near.existing("cluster") is None
        rebuilt = near.near_for("cluster", get_store("cluster"))
        assert rebuilt is not None
        assert rebuilt is not cl1
        wait_serving(rebuilt)


_ONE_TWO = str.maketrans("12", "21")


def swap_one_and_two(key: str, key_prefix: str, version: int) -> str:
    """A ``KEY_FUNCTION`` that keeps the prefix in front yet changes the key itself: the final
    key of "k1" is what Django's default function would make of "k2", and the other way round."""
    return f"{key_prefix}:{version}:{key.translate(_ONE_TWO)}"


class TestTheHitPath:
    """An L1 hit of ``tagcache.get`` finds its entry without calling ``make_key`` where that gives
    the same key; wherever it would not, the key is the one the cache builds."""

    @pytest.fixture
    def plain(self, l1: near.Near, settings: Any) -> near.Near:
        settings.TAGCACHE = {**settings.TAGCACHE, "STALENESS": {**STALENESS, "DEFAULT": "important"}}
        found = near.near_for("default", get_store("default"))
        assert found is not None
        wait_serving(found)
        return found

    def test_a_custom_key_function_is_honoured(self, settings: Any) -> None:
        settings.CACHES = {
            **settings.CACHES,
            "default": {**settings.CACHES["default"], "KEY_FUNCTION": swap_one_and_two},
        }
        settings.TAGCACHE = {
            **settings.TAGCACHE,
            "NEAR_CACHE": NEAR,
            "STALENESS": {**STALENESS, "DEFAULT": "important"},
        }
        found = near.near_for("default", get_store("default"))
        assert found is not None
        try:
            wait_serving(found)
            tagcache.set("k1", "one")
            tagcache.set("k2", "two")
            for key in ("k1", "k2"):
                warm(found, key, lambda key=key: tagcache.get(key))  # type: ignore[misc]
            hits = metrics.snapshot()["near_hits"]
            with count() as tally:
                assert (tagcache.get("k1"), tagcache.get("k2")) == ("one", "two")
            assert tally.round_trips == 0
            assert metrics.snapshot()["near_hits"] == hits + 2
        finally:
            near.reset()

    def test_a_namespace_is_honoured(self, plain: near.Near) -> None:
        tagcache.set("k", "plain")
        with in_namespace("tenant7"):
            tagcache.set("k", "tenant")
            warm(plain, "k", lambda: tagcache.get("k"))
        warm(plain, "k", lambda: tagcache.get("k"))
        with count() as tally:
            with in_namespace("tenant7"):
                assert tagcache.get("k") == "tenant"
            assert tagcache.get("k") == "plain"
        assert tally.round_trips == 0

    def test_a_version_is_honoured(self, plain: near.Near) -> None:
        tagcache.set("k", "default version")
        tagcache.set("k", "version 7", version=7)
        warm(plain, "k", lambda: tagcache.get("k"))
        assert tagcache.get("k", version=7) == "version 7"
        assert tagcache.get("k") == "default version"

    def test_a_read_inside_a_compute_never_uses_l1(self, plain: near.Near) -> None:
        """Rule 7, for the plain ``get`` of a compute."""
        tagcache.set("inner", "i")
        warm(plain, "inner", lambda: tagcache.get("inner"))

        def outer() -> str:
            with count() as tally:
                inner = tagcache.get("inner")
            assert tally.round_trips == 1  # held in L1, and still read from Redis
            return f"outer({inner})"

        assert tagcache.get_or_set("outer", outer, tags=["warm:2"]) == "outer(i)"

    def test_an_alias_without_l1_is_read_from_redis(self, plain: near.Near) -> None:
        other = TagCache("builtin")
        other.set("k", "builtin")
        for _ in range(2):
            with count() as tally:
                assert other.get("k") == "builtin"
            assert tally.round_trips == 1


def calls_of(func: Callable[[], object]) -> list[str]:
    """Every Python and builtin function ``func()`` calls, in order (``sys.setprofile``): the
    work of a call counted, not timed."""
    import sys

    seen: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            seen.append(f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_code.co_name}")
        elif event == "c_call":
            seen.append(f"builtin:{getattr(arg, '__qualname__', arg)}")

    sys.setprofile(profile)
    try:
        func()
    finally:
        sys.setprofile(None)
    return seen[1:-1]  # not func itself, nor the setprofile(None) that ends the count


def test_an_l1_hit_of_get_is_a_few_dozen_calls(l1: near.Near, settings: Any) -> None:
    """The hot path of ``tagcache.get(key, near=True)`` on an L1 hit, counted: the decision,
    one locked lookup, the unpickle, the counters. 55 calls before it was first trimmed (the
    blocking face and its extra coroutine, ``Counter.update``'s ABC check, ``typing.cast`` in
    each settings read); 45 after; 18 since the hit is tried before any coroutine, store or key
    is built, the key is the head of the alias' entries plus the caller's key, and no setting is
    read on the way (they are read once per settings change)."""
    settings.TAGCACHE = {**settings.TAGCACHE, "STALENESS": {**STALENESS, "DEFAULT": "important"}}
    found = near.near_for("default", get_store("default"))
    assert found is not None
    wait_serving(found)
    tagcache.set("k", {"a": 1}, tags=["warm:1"])
    warm(found, "k", lambda: tagcache.get("k", near=True))
    tagcache.get("k", near=True)  # every lazy thing on the path is built
    calls = calls_of(lambda: tagcache.get("k", near=True))
    assert metrics.snapshot()["near_hits"] >= 2
    assert "nearcache.py:get" in calls
    assert not [call for call in calls if "redis" in call or "connection" in call.lower()]
    assert not [call for call in calls if call.startswith(("conf.py", "base.py", "functional.py"))]
    assert len(calls) <= 18, "\n".join(calls)
