"""Invalidate one tag with N members and report entries/s and the longest Redis command.

    python -m benchmarks.big_tag [--members 100000] [--repeat 3]

Bars: >= 300,000 entries/s, and no single command over 20 ms (read from SLOWLOG, which the
script sets to log every command slower than 1 ms for the run).
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks._setup import configure_django, redis_url, result


def fill(store: object, members: int) -> None:
    """Write N entries under one tag: the same keys and index the API writes, in bulk."""
    from django_tagcache.core.store import TagStore

    assert isinstance(store, TagStore)
    client = store.client
    index = store.keys.index("big")
    expiry = int(time.time() * 1000) + 3_600_000
    for start in range(0, members, 10_000):
        pipe = client.pipeline(transaction=False)
        batch = {store.keys.entry(f"item:{i}"): expiry for i in range(start, min(start + 10_000, members))}
        for key in batch:
            pipe.set(key, b"x" * 64, px=3_600_000)
        pipe.zadd(index, batch)
        pipe.execute()
    pipe = client.pipeline(transaction=False)
    pipe.pexpireat(index, expiry + 1000)
    pipe.execute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with redis_url() as url:
        configure_django(url)
        from django_tagcache import invalidate_tags, tagcache
        from django_tagcache.caching.api import get_store

        store = get_store()
        client = store.client
        client.config_set("slowlog-log-slower-than", 1000)
        rates, longest = [], []
        for _ in range(args.repeat):
            fill(store, args.members)
            tagcache.set("item:0", "through the API", tags=["big"])  # loads the scripts
            client.slowlog_reset()
            started = time.perf_counter()
            removed = invalidate_tags("big")
            elapsed = time.perf_counter() - started
            assert removed == args.members, removed
            assert client.exists(store.keys.entry("item:0")) == 0
            slow = client.slowlog_get(1024)
            longest.append(max((entry["duration"] for entry in slow), default=0) / 1000)
            rates.append(removed / elapsed)
        print(f"members            {args.members:,}")
        print(f"chunk size         {store.options.chunk_size:,}")
        runs = ", ".join(f"{rate:,.0f}" for rate in rates)
        print(f"entries/s (median) {statistics.median(rates):,.0f}   runs: {runs}")
        print(f"longest command    {max(longest):.2f} ms (SLOWLOG, over {args.repeat} runs; bar: 20 ms)")
        label = f"invalidate a {args.members:,}-member tag"
        result(f"{label}: entries/s", statistics.median(rates), None, None, ">= 300000", "/s")
        result(f"{label}: longest command (SLOWLOG)", max(longest), None, None, "<= 20 ms", "ms")


if __name__ == "__main__":
    main()
