"""Guarantee 5: tag indexes track live entries, not history."""

from __future__ import annotations

import time

import redis

from django_tagcache import TagCache


def test_index_tracks_live_entries_across_expiry_cycles(tc: TagCache, raw: redis.Redis) -> None:
    """Ten cycles of 200 short-lived entries under one tag: the index never keeps the dead ones."""
    index = tc.store.keys.index("churn")
    for cycle in range(10):
        for i in range(200):
            tc.set(f"c{cycle}:{i}", i, timeout=0.05, tags=["churn"])
        live = sum(raw.exists(tc.store.keys.entry(f"c{cycle}:{i}")) for i in range(200))
        assert raw.zcard(index) <= 1.1 * max(live, 200)
        time.sleep(0.08)  # this cycle's entries expire; the next cycle's writes prune them
    tc.set("last", 1, timeout=60, tags=["churn"])
    # After the last cycle expired, four writes (64 members each) pruned all 200 dead members.
    for i in range(4):
        tc.set(f"after{i}", i, timeout=60, tags=["churn"])
    assert raw.zcard(index) == 5


def test_the_index_expires_with_its_last_member(tc: TagCache, raw: redis.Redis) -> None:
    tc.set("k", 1, timeout=0.05, tags=["short"])
    assert 0 < raw.pttl(tc.store.keys.index("short")) <= 50 + 1000  # member expiry + slack
