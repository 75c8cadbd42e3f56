"""What each call costs in Redis commands and round trips, counted on both ends.

The client side counts what a real connection sends (tests/counting.py); the server side reads
INFO commandstats. Both must agree with the promise in the docs.
"""

from __future__ import annotations

import pytest
import redis

from django_tagcache import TagCache, cached
from django_tagcache.api import get_store
from tests.counting import count, server_calls


@pytest.fixture
def warm(tc: TagCache) -> TagCache:
    """Open the connection and load the scripts, so that counts see only the call under test."""
    tc.set("warmup", 1, tags=["warmup"])
    tc.get_or_set("warmup2", 1, tags=["warmup"])
    tc.invalidate_tags("warmup")
    tc.store.scripts.load()  # EVALSHA would otherwise pay a NOSCRIPT round trip on first use
    return tc


def _script_command(raw: redis.Redis) -> str:
    return "fcall" if get_store_mode(raw) == "function" else "evalsha"


def get_store_mode(raw: redis.Redis) -> str:
    return "function" if int(str(raw.info("server")["redis_version"]).split(".")[0]) >= 7 else "eval"


def test_get_hit_is_one_get(warm: TagCache, raw: redis.Redis) -> None:
    warm.set("k", "v", tags=["a", "b", "c"])
    before = server_calls(raw)
    with count() as tally:
        assert warm.get("k") == "v"
    after = server_calls(raw)
    assert tally.round_trips == 1
    assert tally.commands == ["GET"]
    assert after["get"] - before["get"] == 1


def test_get_miss_is_one_get(warm: TagCache) -> None:
    with count() as tally:
        assert warm.get("absent") is None
    assert (tally.round_trips, tally.commands) == (1, ["GET"])


def test_set_with_three_tags_is_one_round_trip(warm: TagCache, raw: redis.Redis) -> None:
    script = _script_command(raw)
    before = server_calls(raw)
    with count() as tally:
        warm.set("k", "v", tags=["a", "b", "c"])
    after = server_calls(raw)
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
    assert tally.round_trips == 1
    assert tally.commands == [script.upper()]


def test_get_or_set_hit_is_one_get(warm: TagCache) -> None:
    warm.get_or_set("k", lambda: "v", tags=["a", "b", "c"])
    with count() as tally:
        assert warm.get_or_set("k", lambda: "other", tags=["a", "b", "c"]) == "v"
    assert (tally.round_trips, tally.commands) == (1, ["GET"])


def test_get_or_set_miss_is_three_round_trips(warm: TagCache, raw: redis.Redis) -> None:
    script = _script_command(raw).upper()
    with count() as tally:
        warm.get_or_set("k", lambda: "v", tags=["a", "b", "c"])
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
    with count() as tally:
        assert tc.invalidate_tags("big") == 1050
    # One call renames the index aside, then 11 drain calls of at most 100 entries each.
    assert tally.round_trips == 12
    assert not list(raw.scan_iter(match="*tagcache:e:*", count=1000))
    assert list(raw.scan_iter(match="*:{big}:p", count=1000)) == []
