"""The caching API against a real Redis, once per supported backend."""

from __future__ import annotations

import time

import pytest
import redis

from django_tagcache import TagCache
from django_tagcache.caching.api import get_store
from django_tagcache.core import metrics


@pytest.fixture(params=["sync", "async"])
def api(request: pytest.FixtureRequest) -> str:
    """Every test here runs on the blocking API and on its asyncio twins (tests/aio.py)."""
    return str(request.param)


def test_set_get_round_trip(tc: TagCache) -> None:
    assert tc.set("k", {"a": [1, 2.5, "x"]}, timeout=60, tags=["t1"])
    assert tc.get("k") == {"a": [1, 2.5, "x"]}


def test_get_missing_returns_default(tc: TagCache) -> None:
    sentinel = object()
    assert tc.get("absent") is None
    assert tc.get("absent", sentinel) is sentinel


def test_none_value_is_a_hit(tc: TagCache) -> None:
    tc.set("k", None, tags=["t"])
    assert tc.get("k", "default") is None


def test_invalidate_removes_every_entry_of_the_tag(tc: TagCache) -> None:
    tc.set("a", 1, tags=["red", "round"])
    tc.set("b", 2, tags=["red"])
    tc.set("c", 3, tags=["blue"])
    assert tc.invalidate_tags("red") == 2
    assert tc.get("a") is None
    assert tc.get("b") is None
    assert tc.get("c") == 3


def test_invalidate_counts_only_entries_that_existed(tc: TagCache) -> None:
    tc.set("a", 1, tags=["red"])
    tc.set("b", 2, tags=["red"])
    tc.delete("b")
    assert tc.invalidate_tags("red") == 1
    assert tc.invalidate_tags("red") == 0
    assert tc.invalidate_tags("never-used") == 0


def test_invalidate_several_tags_at_once(tc: TagCache) -> None:
    for i in range(10):
        tc.set(f"k{i}", i, tags=[f"t{i % 3}", "all"])
    assert tc.invalidate_tags("t0", "t1") == 7
    assert [tc.get(f"k{i}") for i in range(10)] == [None, None, 2, None, None, 5, None, None, 8, None]


def test_invalidate_without_tags_touches_nothing(tc: TagCache) -> None:
    assert tc.invalidate_tags() == 0


def test_timeout_none_never_expires(tc: TagCache, raw: redis.Redis) -> None:
    store = get_store(tc._alias)
    tc.set("forever", 1, timeout=None, tags=["t"])
    assert raw.pttl(store.keys.entry("forever")) == -1
    assert raw.pttl(store.keys.index("t")) == -1


def test_timeout_zero_deletes_and_does_not_store(tc: TagCache) -> None:
    tc.set("k", 1, tags=["t"])
    assert tc.set("k", 2, timeout=0, tags=["t"]) is False
    assert tc.get("k") is None


def test_entry_expires(tc: TagCache) -> None:
    tc.set("k", 1, timeout=0.05, tags=["t"])
    time.sleep(0.12)
    assert tc.get("k") is None


def test_index_ttl_follows_longest_lived_member(tc: TagCache, raw: redis.Redis) -> None:
    store = get_store(tc._alias)
    tc.set("short", 1, timeout=10, tags=["t"])
    tc.set("long", 1, timeout=1000, tags=["t"])
    tc.set("short2", 1, timeout=20, tags=["t"])
    ttl = raw.pttl(store.keys.index("t"))
    assert 1000_000 < ttl <= 1001_000
    tc.set("forever", 1, timeout=None, tags=["t"])
    assert raw.pttl(store.keys.index("t")) == -1


def test_generation_key_expires(tc: TagCache, raw: redis.Redis, settings: object) -> None:
    store = get_store(tc._alias)
    tc.invalidate_tags("t")
    assert 0 < raw.pttl(store.keys.generation("t")) <= 86_400_000


def test_expired_members_are_pruned_on_write(tc: TagCache, raw: redis.Redis) -> None:
    store = get_store(tc._alias)
    for i in range(20):
        tc.set(f"old{i}", i, timeout=0.01, tags=["t"])
    time.sleep(0.05)
    tc.set("fresh", 1, timeout=60, tags=["t"])
    assert raw.zrange(store.keys.index("t"), 0, -1) == [store.keys.entry("fresh").encode()]


def test_pruning_per_write_is_bounded(tc: TagCache, raw: redis.Redis, settings: object) -> None:
    settings.TAGCACHE = {"PRUNE_PER_WRITE": 5}  # type: ignore[attr-defined]
    tc = TagCache(tc._alias)
    store = get_store(tc._alias)
    # Members that expired long ago (scores are expiry times in ms), without racing a short TTL.
    raw.zadd(store.keys.index("t"), {store.keys.entry(f"old{i}"): i + 1 for i in range(20)})
    tc.set("fresh", 1, timeout=60, tags=["t"])
    assert raw.zcard(store.keys.index("t")) == 16


def test_get_or_set_computes_once(tc: TagCache) -> None:
    calls = []

    def compute() -> str:
        calls.append(1)
        return "value"

    assert tc.get_or_set("k", compute, tags=["t"]) == "value"
    assert tc.get_or_set("k", compute, tags=["t"]) == "value"
    assert len(calls) == 1


def test_get_or_set_accepts_a_plain_default(tc: TagCache) -> None:
    assert tc.get_or_set("k", 42, tags=["t"]) == 42
    assert tc.get("k") == 42


def test_versions_are_separate_entries(tc: TagCache) -> None:
    tc.set("k", "v1", tags=["t"], version=1)
    tc.set("k", "v2", tags=["t"], version=2)
    assert tc.get("k", version=1) == "v1"
    assert tc.get("k", version=2) == "v2"
    assert tc.invalidate_tags("t") == 2


def test_keys_follow_the_backend_prefix(alias: str, tc: TagCache, raw: redis.Redis) -> None:
    tc.set("k", 1, tags=["t"])
    prefix = {"default": "t1", "builtin": "t2", "cluster": "t3", "redis62": "t62"}[alias]
    keys = sorted(k.decode() for k in raw.scan_iter(count=100))
    expected = [f"{prefix}:1:tagcache:e:k", f"{prefix}:1:tagcache:t:{{t}}:i"]
    if alias == "cluster":
        # A cluster write also creates the tag's generation: tombstones name it (docs/cluster.md).
        expected.insert(1, f"{prefix}:1:tagcache:t:{{t}}:g")
    assert keys == expected


def test_oversized_value_is_refused_before_redis(tc: TagCache, settings: object) -> None:
    settings.TAGCACHE = {"MAX_ENTRY_SIZE": 100}  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="MAX_ENTRY_SIZE"):
        tc.set("big", "x" * 1000, tags=["t"])
    assert tc.get("big") is None


def test_oversized_computed_value_is_returned_not_cached(tc: TagCache, settings: object) -> None:
    settings.TAGCACHE = {"MAX_ENTRY_SIZE": 100}  # type: ignore[attr-defined]
    assert tc.get_or_set("big", lambda: "x" * 1000, tags=["t"]) == "x" * 1000
    assert tc.get("big") is None
    assert metrics.snapshot()["oversized"] == 1


def test_counters(tc: TagCache) -> None:
    tc.get("k")
    tc.set("k", 1, tags=["t"])
    tc.get("k")
    tc.invalidate_tags("t")
    snap = metrics.snapshot()
    assert (snap["misses"], snap["stores"], snap["hits"], snap["invalidations"], snap["entries_removed"]) == (
        1, 1, 1, 1, 1,
    )  # fmt: skip


def test_signal_reports_tags_removed_and_source(tc: TagCache) -> None:
    from django_tagcache.signals import tags_invalidated

    seen: list[dict[str, object]] = []

    def receiver(**kwargs: object) -> None:
        seen.append(kwargs)

    tags_invalidated.connect(receiver)
    try:
        tc.set("k", 1, tags=["b", "a"])
        tc.invalidate_tags("b", "a", source="admin:alice")
    finally:
        tags_invalidated.disconnect(receiver)
    assert seen[0]["tags"] == ("a", "b")
    assert seen[0]["removed"] == 1
    assert seen[0]["source"] == "admin:alice"
