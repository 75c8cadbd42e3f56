"""Stampede protection: single flight on a cold key, TTL jitter, early recomputation (XFetch)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from django_tagcache import TagCache
from django_tagcache.core import metrics
from tests.keyspace import Keys


def stampede(tc: TagCache, callers: int, compute_seconds: float) -> int:
    """``callers`` threads ask for one cold key at once; returns how often the value was computed."""
    computed = []
    barrier = threading.Barrier(callers)
    results: list[Any] = []

    def compute() -> str:
        computed.append(1)
        time.sleep(compute_seconds)
        return "value"

    def caller() -> None:
        barrier.wait()
        results.append(tc.get_or_set("hot", compute, timeout=60, tags=["hot"]))

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["value"] * callers
    return len(computed)


def test_fifty_callers_on_a_cold_key_compute_once(tc: TagCache, settings: Any) -> None:
    settings.TAGCACHE = {"STAMPEDE": {"WAIT": 10.0}}
    assert stampede(TagCache(tc._alias), callers=50, compute_seconds=0.2) == 1
    assert metrics.snapshot()["stampede_waits"] >= 1


def test_without_the_lock_every_caller_computes(tc: TagCache, settings: Any) -> None:
    """Control: with single flight off, the same stampede computes many times."""
    settings.TAGCACHE = {"STAMPEDE": {"LOCK_TTL": 0}}
    assert stampede(TagCache(tc._alias), callers=20, compute_seconds=0.2) > 1


def test_waiters_compute_themselves_after_the_bound(tc: TagCache, settings: Any) -> None:
    settings.TAGCACHE = {"STAMPEDE": {"WAIT": 0.05, "POLL": 0.01}}
    tc = TagCache(tc._alias)
    assert stampede(tc, callers=4, compute_seconds=0.5) > 1
    assert metrics.snapshot()["stampede_timeouts"] >= 1


def test_a_failed_compute_releases_the_lock(tc: TagCache, keys: Keys) -> None:
    def boom() -> str:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        tc.get_or_set("k", boom, tags=["t"])
    assert not keys.locks()
    started = time.monotonic()
    assert tc.get_or_set("k", lambda: "v", tags=["t"]) == "v"
    assert time.monotonic() - started < 60  # sanity: it did not wait for a lock left behind


def test_the_lock_is_released_by_the_write(tc: TagCache, keys: Keys) -> None:
    tc.get_or_set("k", lambda: "v", tags=["t"])
    tc.get_or_set("untagged", lambda: "v")
    assert not keys.locks()


def test_a_miss_that_finds_the_entry_stored_meanwhile_releases_its_lock(
    tc: TagCache, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GET missed, another caller stored the entry, then the miss script took the lock and
    found the entry: the value is served, and the lock must go with it, not block the next
    misses for LOCK_TTL."""
    tc.set("k", "stored meanwhile", tags=["t"])
    store = tc.store
    reads: list[str] = []
    real_get = store.get

    def get(entry: str) -> bytes | None:
        reads.append(entry)
        return None if len(reads) == 1 else real_get(entry)  # the first read misses

    monkeypatch.setattr(store, "get", get)
    assert tc.get_or_set("k", lambda: "computed", tags=["t"]) == "stored meanwhile"
    assert keys.locks() == []


def test_ttl_jitter_shortens_computed_entries_only(tc: TagCache, keys: Keys, settings: Any) -> None:
    settings.TAGCACHE = {"TTL_JITTER": 0.5}
    tc = TagCache(tc._alias)
    ttls = set()
    for i in range(20):
        tc.get_or_set(f"k{i}", i, timeout=100, tags=["t"])
        ttl = keys.pttl(tc.store.keys.entry(f"k{i}"))
        assert 50_000 <= ttl <= 100_000
        ttls.add(ttl // 1000)
    assert len(ttls) > 1
    tc.set("plain", 1, timeout=100, tags=["t"])
    assert keys.pttl(tc.store.keys.entry("plain")) > 99_000


def test_xfetch_recomputes_before_expiry(tc: TagCache, settings: Any) -> None:
    settings.TAGCACHE = {"XFETCH_BETA": 1.0}
    tc = TagCache(tc._alias)
    versions = iter(range(100))

    def compute() -> int:
        time.sleep(0.01)
        return next(versions)

    assert tc.get_or_set("k", compute, timeout=3600, tags=["t"]) == 0
    assert tc.get_or_set("k", compute, timeout=3600, tags=["t"]) == 0  # far from expiry: a hit
    assert tc.get("k") == 0  # plain reads understand the timed payload
    settings.TAGCACHE = {"XFETCH_BETA": 1e9}  # now every reader volunteers
    assert TagCache(tc._alias).get_or_set("k", compute, timeout=3600, tags=["t"]) == 1
    assert metrics.snapshot()["early_recomputes"] == 1
    assert tc.get("k") == 1


def fragment_stampede(alias: str, callers: int, render_seconds: float) -> int:
    """``callers`` threads render one cold fragment at once; returns how often its body ran."""
    from django_tagcache.web.fragments import render_fragment

    rendered = []
    barrier = threading.Barrier(callers)
    results: list[str] = []

    def body() -> str:
        rendered.append(1)
        time.sleep(render_seconds)
        return "<p>sidebar</p>"

    def caller() -> None:
        barrier.wait()
        results.append(
            render_fragment(alias=alias, key="frag", timeout=60, tags=lambda: ("menu",), render=body)
        )

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["<p>sidebar</p>"] * callers
    return len(rendered)


def test_a_cold_fragment_is_rendered_once(alias: str, settings: Any) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "STAMPEDE": {"WAIT": 10.0}}
    assert fragment_stampede(alias, callers=20, render_seconds=0.2) == 1


def test_without_the_lock_every_caller_renders_the_fragment(alias: str, settings: Any) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "STAMPEDE": {"LOCK_TTL": 0}}
    assert fragment_stampede(alias, callers=10, render_seconds=0.2) > 1


def test_a_soft_purged_fragment_is_served_stale_while_one_caller_renders(tc: TagCache, settings: Any) -> None:
    from django_tagcache.web.fragments import render_fragment

    if not tc.store.standalone:
        pytest.skip("soft purges need a single server")
    settings.TAGCACHE = {**settings.TAGCACHE, "STALENESS": {"TAGS": {"promo": "best_effort"}}}
    alias = tc._alias or "default"

    def fragment(text: str, started: threading.Event | None = None) -> str:
        def body() -> str:
            if started is not None:
                started.set()
                time.sleep(0.3)
            return text

        return render_fragment(alias=alias, key="banner", timeout=60, tags=lambda: ("promo:1",), render=body)

    assert fragment("old") == "old"
    TagCache(alias).invalidate_tags("promo:1")
    rendering = threading.Event()
    first = threading.Thread(target=fragment, args=("new", rendering))
    first.start()
    rendering.wait(5)
    # While the first caller renders the new text, another request gets the stale copy at once.
    assert fragment("never rendered") == "old"
    first.join()
    assert metrics.snapshot()["stale_served"] == 1
    assert fragment("again") == "new"
