"""What each call costs in Redis commands and round trips, counted on both ends.

The client side counts what a real connection sends (tests/counting.py); the server side reads
INFO commandstats. Both must agree with the promise in the docs. On a Redis Cluster a "round
trip" is one message to one node: a phase that pipelines to three primaries counts three, sent
at once (docs/cluster.md gives the cluster's costs, asserted here too).
"""

from __future__ import annotations

import time
from typing import cast

import pytest
import redis

from django_tagcache import TagCache, cached
from django_tagcache.backends import is_cluster
from django_tagcache.caching.api import get_store
from django_tagcache.core.cluster_store import TOMBSTONE
from django_tagcache.core.scripts import server_major_version
from tests import keyspace
from tests.cluster import cluster_server_calls, primaries_of
from tests.counting import count, server_calls


@pytest.fixture
def warm(tc: TagCache) -> TagCache:
    """Open the connection and load the scripts, so that counts see only the call under test."""
    keyspace.skip_in_process(tc._alias or "")
    tc.set("warmup", 1, tags=["warmup"])
    tc.get_or_set("warmup2", 1, tags=["warmup"])
    tc.invalidate_tags("warmup")
    tc.store.scripts.load()  # EVALSHA would otherwise pay a NOSCRIPT round trip on first use
    return tc


def _server_calls(raw: redis.Redis) -> dict[str, int]:
    return cluster_server_calls(raw) if is_cluster(raw) else server_calls(raw)


def _script_command(raw: redis.Redis) -> str:
    return "fcall" if server_major_version(raw) >= 7 else "evalsha"


def test_get_hit_is_one_get(warm: TagCache, raw: redis.Redis) -> None:
    warm.set("k", "v", tags=["a", "b", "c"])
    before = _server_calls(raw)
    with count() as tally:
        assert warm.get("k") == "v"
    after = _server_calls(raw)
    assert tally.round_trips == 1
    assert tally.commands == ["GET"]
    assert after["get"] - before["get"] == 1


def test_get_miss_is_one_get(warm: TagCache) -> None:
    with count() as tally:
        assert warm.get("absent") is None
    assert (tally.round_trips, tally.commands) == (1, ["GET"])


def test_set_with_three_tags_is_one_round_trip(warm: TagCache, raw: redis.Redis) -> None:
    script = _script_command(raw)
    before = _server_calls(raw)
    with count() as tally:
        warm.set("k", "v", tags=["a", "b", "c"])
    after = _server_calls(raw)
    if is_cluster(raw):
        # Index the entry in each tag's slot, store it, reread the generations: three phases,
        # the first and last one message per primary involved (a, b and c: all three).
        nodes = primaries_of(raw, [warm.store.keys.tag(tag) for tag in "abc"])
        assert len(nodes) == 3
        assert tally.round_trips == 7
        assert sorted(tally.commands) == sorted([script.upper()] * 4 + ["GET"] * 3)
        assert after[script] - before[script] == 4
        # The entry (cluster_set.lua) and the tags' generations, created where missing (a plain
        # set reads them too: tombstones name them).
        assert after["set"] - before["set"] == 4
        return
    assert tally.round_trips == 1
    assert tally.commands == [script.upper()]
    assert after[script] - before[script] == 1
    assert after["set"] - before["set"] == 1  # the entry, written inside the script


def test_set_without_tags_is_one_set(warm: TagCache) -> None:
    with count() as tally:
        warm.set("k", "v")
    assert (tally.round_trips, tally.commands) == (1, ["SET"])


@pytest.mark.parametrize("k", [1, 5, 50])
def test_invalidating_k_tags_is_one_round_trip(warm: TagCache, raw: redis.Redis, k: int) -> None:
    for i in range(k):
        warm.set(f"e{i}", i, tags=[f"tag{i}", "shared"])
    script = _script_command(raw)
    with count() as tally:
        removed = warm.invalidate_tags(*[f"tag{i}" for i in range(k)])
    assert removed == k
    if is_cluster(raw):
        # Set the indexes aside (a call per tag slot), tombstone the entries (a call per entry
        # slot and tag), acknowledge each set-aside index: each phase one message per primary.
        store = warm.store
        tag_keys = [store.keys.tag(f"tag{i}") for i in range(k)]
        entry_keys = [store.keys.entry(f"e{i}") for i in range(k)]
        tag_slots = {store.runner.slot(key) for key in tag_keys}  # type: ignore[attr-defined]
        assert tally.round_trips == 2 * len(primaries_of(raw, tag_keys)) + len(primaries_of(raw, entry_keys))
        assert tally.commands == [script.upper()] * (len(tag_slots) + 2 * k)
        return
    assert tally.round_trips == 1
    assert tally.commands == [script.upper()]


@pytest.mark.parametrize("k", [1, 4, 50])
def test_invalidation_script_runs_two_commands_per_idle_tag(warm: TagCache, raw: redis.Redis, k: int) -> None:
    """Inside the script, a tag with nothing cached costs its index size and its generation
    (which records the completion too); one check for unfinished drains covers every tag of the
    call (plus the clock)."""
    if is_cluster(raw):
        pytest.skip("the cluster's invalidation takes other steps (asserted above)")
    tags = [f"idle{i}" for i in range(k)]
    script = _script_command(raw)
    before = _server_calls(raw)
    assert warm.invalidate_tags(*tags) == 0
    after = _server_calls(raw)
    inside = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
    inside.pop("info", None)  # the first reading of the counts
    assert inside.pop(script) == 1
    assert sum(inside.values()) <= 2 * k + 2, inside


def test_a_fenced_checked_write_reads_one_key_per_tag(warm: TagCache, raw: redis.Redis) -> None:
    """The generation check and the read fence of a write read the same key of each tag."""
    if is_cluster(raw):
        pytest.skip("the cluster keeps completion times apart (docs/cluster.md)")
    store = warm.store
    tags = ["a", "b", "c"]
    warm.invalidate_tags(*tags)  # each tag now has a completion time to check the fence against
    tokens = store.generations(tags)
    fence_us = int(time.time() * 1_000_000) + 1_000_000  # after the completions, margin included
    before = _server_calls(raw)
    assert store.write(store.keys.entry("k"), b"v", 60_000, tags, tokens, fence_us=fence_us)
    after = _server_calls(raw)
    assert after["get"] - before.get("get", 0) == len(tags)


def test_get_or_set_hit_is_one_get(warm: TagCache) -> None:
    warm.get_or_set("k", lambda: "v", tags=["a", "b", "c"])
    with count() as tally:
        assert warm.get_or_set("k", lambda: "other", tags=["a", "b", "c"]) == "v"
    assert (tally.round_trips, tally.commands) == (1, ["GET"])


def test_get_or_set_miss_is_three_round_trips(warm: TagCache, raw: redis.Redis) -> None:
    script = _script_command(raw).upper()
    with count() as tally:
        warm.get_or_set("k", lambda: "v", tags=["a", "b", "c"])
    if is_cluster(raw):
        # GET (miss); at once: the generations (a call per slot), the entry again and the
        # recompute lock; then the write's three phases, the lock released with the store.
        store = warm.store
        tags = [store.keys.tag(tag) for tag in "abc"]
        entry = store.keys.entry("k")
        lock = store.lock_key(entry)  # type: ignore[attr-defined]
        assert sorted(tally.commands) == sorted(
            ["GET", *[script] * 3, "GET", "SET", *[script] * 5, *["GET"] * 3]
        )
        assert tally.round_trips == (
            1 + len(primaries_of(raw, [*tags, entry, lock])) + 2 * 3 + len(primaries_of(raw, [entry, lock]))
        )
        return
    # GET (miss), read the generations, then the checked write.
    assert tally.commands == ["GET", script, script]
    assert tally.round_trips == 3


def test_cached_hit_is_one_get_and_skips_the_tags_callable(alias: str, warm: TagCache) -> None:
    tag_calls: list[int] = []

    def tags(n: int) -> list[str]:
        tag_calls.append(n)
        return [f"n:{n}"]

    @cached(timeout=60, tags=tags, cache=alias)
    def square(n: int) -> int:
        return n * n

    assert square(4) == 16
    with count() as tally:
        assert square(4) == 16
    assert (tally.round_trips, tally.commands) == (1, ["GET"])
    assert tag_calls == [4]


def test_big_tag_is_drained_in_bounded_chunks(warm: TagCache, raw: redis.Redis, settings: object) -> None:
    settings.TAGCACHE = {"CHUNK_SIZE": 100}  # type: ignore[attr-defined]
    tc = TagCache(warm._alias)
    pipe = raw.pipeline(transaction=False)
    store = get_store(tc._alias)
    for i in range(1050):
        tc.set(f"e{i}", i, tags=["big"]) if i < 3 else None
        pipe.set(store.keys.entry(f"e{i}"), b"x")
        pipe.zadd(store.keys.index("big"), {store.keys.entry(f"e{i}"): "+inf"})
    pipe.execute()
    members = [bytes(m).decode() for m in cast("list[bytes]", raw.zrange(store.keys.index("big"), 0, -1))]
    with count() as tally:
        assert tc.invalidate_tags("big") == 1050
    if is_cluster(raw):
        # One call sets the index aside and returns its first 100 members; then per chunk one
        # tombstone message per primary holding some of its entries, and one call to acknowledge
        # the chunk (and read the next). What is left are tombstones, gone after TOMBSTONE_TTL.
        chunks = [members[i : i + 100] for i in range(0, len(members), 100)]
        assert len(chunks) == 11
        assert tally.round_trips == 1 + sum(len(primaries_of(raw, chunk)) + 1 for chunk in chunks)
        left = list(raw.scan_iter(match="*tagcache:e:*", count=1000))
        assert all(cast("bytes", raw.get(key)).startswith(TOMBSTONE) for key in left)
        assert list(raw.scan_iter(match="*:{big}:d", count=1000)) == []
        return
    # One call renames the index aside, then 11 drain calls of at most 100 entries each.
    assert tally.round_trips == 12
    assert not list(raw.scan_iter(match="*tagcache:e:*", count=1000))
    assert list(raw.scan_iter(match="*:{big}:p", count=1000)) == []
