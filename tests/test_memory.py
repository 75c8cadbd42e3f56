"""The in-process store behind LocMemCache: what the shared behaviour tests cannot see.

The behaviour tests (tests/test_api.py, test_race.py, test_views.py, ...) run against it through
the ``locmem`` backend of the ``alias`` fixture; these cover its own promises: per-alias data kept
across store rebuilds, reset, memory that follows live entries, the clock, and the checks.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from django_tagcache import TagCache
from django_tagcache.caching.api import get_store, reset_stores
from django_tagcache.core import memory
from django_tagcache.core.memory import MemoryStore, NeedsRedis
from django_tagcache.core.memory_state import MemoryState
from django_tagcache.core.protocol import StoreOptions


class Clock:
    """A clock the test moves by hand: expiry without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_store(clock: Clock, **options: Any) -> MemoryStore:
    return MemoryStore(
        MemoryState(), make_key=lambda key, version: f":1:{key}", options=StoreOptions(**options), clock=clock
    )


def test_locmem_selects_the_in_process_store_and_other_aliases_are_apart() -> None:
    store = get_store("locmem")
    assert isinstance(store, MemoryStore)
    TagCache("locmem").set("k", 1, tags=["t"])
    assert TagCache("default").get("k") is None
    reset_stores()  # settings changed: the store is rebuilt, its data stays (as Redis' would)
    assert TagCache("locmem").get("k") == 1
    memory.reset("locmem")
    assert TagCache("locmem").get("k") is None


def test_redis_only_operations_say_so() -> None:
    with pytest.raises(NeedsRedis, match="in-process store"):
        get_store("locmem").client.ping()


def test_entries_generations_and_locks_expire_on_the_clock() -> None:
    clock = Clock()
    store = make_store(clock, generation_ttl_ms=5000)
    store.write("e", b"v", 2000, ["t"])
    miss = store.prepare_miss("other", ["t"], lock_ttl_ms=100)
    assert miss.owner
    assert (store.pttl("e"), store.pttl("other:lock")) == (2000, 100)
    clock.now += 1.5
    assert (store.get("e"), store.pttl("other:lock")) == (b"v", -2)
    clock.now += 1
    assert store.get("e") is None
    # The generation read at the miss expired: the write cannot prove it is fresh, so it is refused.
    clock.now += 5
    assert not store.write("other", b"v", 0, ["t"], expected=miss.tokens)
    assert store.write("other", b"v", 0, ["t"], expected=store.generations(["t"]))
    assert store.pttl("other") == -1


def test_memory_follows_live_entries_after_many_expiry_cycles() -> None:
    clock = Clock()
    store = make_store(clock)
    for cycle in range(10):
        for n in range(500):
            store.write(f"e{cycle}:{n}", b"v", 1000, [f"t{n % 7}", "all"])
        clock.now += 2  # every entry of this cycle expires
    store.write("live", b"v", 60_000, ["all"])
    members = sum(len(index) for index in store.state.indexes.values())
    # At most 500 entries live at once (one cycle): what is held stays within one sweep period of that.
    assert len(store.state.values) <= 1024 + 500 + 1
    assert members <= 2 * (1024 + 500) + 1


def test_concurrent_writers_and_invalidations_leave_no_stale_value() -> None:
    """Many threads race get_or_set against invalidations; every stored value is the newest source."""
    tc, source, stop = TagCache("locmem"), {"n": 0}, threading.Event()
    lock = threading.Lock()

    def writer() -> None:
        for _ in range(300):
            with lock:
                source["n"] += 1
            tc.invalidate_tags("t")
        stop.set()

    def reader() -> None:
        while not stop.is_set():
            tc.get_or_set("k", lambda: source["n"], tags=["t"])

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tc.get("k") in (None, source["n"])
