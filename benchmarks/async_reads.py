"""The asyncio hot path against raw ``redis.asyncio`` on the same Redis, and a cold-key stampede.

    python -m benchmarks.async_reads [--rounds 2000] [--repeat 21] [--callers 100]

Bars: ``await tagcache.aget`` hit <= 1.10x a raw ``redis.asyncio`` GET (both one round trip,
on one event loop, through the same client, so the ratio is what the package adds); 100
concurrent ``aget_or_set`` misses of one cold key in one event loop: 1 computation.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from benchmarks._setup import configure_django, redis_url, result

VALUE = {"name": "Blue mug", "price": 12.5, "tags": ["kitchen", "blue"], "stock": list(range(20))}


async def paired(
    ours: Callable[[], Awaitable[object]],
    theirs: Callable[[], Awaitable[object]],
    *,
    rounds: int,
    repeat: int,
) -> tuple[float, float, float]:
    """benchmarks._setup.paired for coroutines: median us per call of each side, median ratio."""
    ours_us: list[float] = []
    theirs_us: list[float] = []
    ratios: list[float] = []
    for run in range(repeat):
        pair = [(ours, ours_us), (theirs, theirs_us)]
        for func, into in pair if run % 2 == 0 else reversed(pair):
            started = time.perf_counter()
            for _ in range(rounds):
                await func()
            into.append((time.perf_counter() - started) / rounds * 1e6)
        ratios.append(ours_us[-1] / theirs_us[-1])
    return statistics.median(ours_us), statistics.median(theirs_us), statistics.median(ratios)


async def hits(rounds: int, repeat: int) -> None:
    import redis.asyncio

    from django_tagcache import tagcache
    from django_tagcache.caching.stores import get_async_store

    await tagcache.aset("card", VALUE, tags=["category:7", "seller:3", "shop.product:42"])
    assert await tagcache.aget("card") == VALUE
    store = get_async_store()
    # The same redis.asyncio client (same pool, timeouts, parser): what the GET itself costs.
    raw: redis.asyncio.Redis = store.client
    entry = store.keys.entry("card")
    assert await raw.get(entry) is not None

    name = "await tagcache.aget hit vs raw redis.asyncio GET"
    ours_us, theirs_us, ratio = await paired(
        lambda: tagcache.aget("card"), lambda: raw.get(entry), rounds=rounds, repeat=repeat
    )
    print(f"{name}: {ours_us:.1f} us vs {theirs_us:.1f} us, ratio {ratio:.3f} (bar <= 1.10)")
    result(name, ours_us, theirs_us, ratio, "<= 1.10")


async def stampede(callers: int) -> None:
    from django_tagcache import tagcache

    computed = []

    async def compute() -> str:
        computed.append(1)
        await asyncio.sleep(0.1)
        return "value"

    await tagcache.aget("warm")  # the loop's first connection
    started = time.perf_counter()
    results = await asyncio.gather(
        *(tagcache.aget_or_set("cold", compute, timeout=60, tags=["cold"]) for _ in range(callers))
    )
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert results == ["value"] * callers
    name = f"{callers} concurrent aget_or_set misses of one cold key: computations"
    print(f"{name}: {len(computed)} in {elapsed_ms:.0f} ms (bar 1)")
    result(name, len(computed), None, None, "1", unit="")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--callers", type=int, default=100)
    args = parser.parse_args()
    with redis_url() as url:
        configure_django(url)

        async def run() -> None:
            await hits(args.rounds, args.repeat)
            await stampede(args.callers)

        asyncio.run(run())


if __name__ == "__main__":
    main()
