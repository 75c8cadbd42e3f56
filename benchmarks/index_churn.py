"""Index memory after churn: 10 expiry cycles of 10,000 entries under one tag.

    python -m benchmarks.index_churn [--cycles 10] [--entries 10000] [--ttl 4.0]

Each cycle writes N entries that expire after ``--ttl`` seconds, then waits for them to expire;
the next cycle's writes prune the dead members (bounded work per write). Reports the index size
against the live entries after every cycle, and its memory. Bar: members <= 1.1x live entries.
"""

from __future__ import annotations

import argparse
import time

from benchmarks._setup import configure_django, redis_url, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--ttl", type=float, default=4.0)  # longer than writing one cycle takes
    args = parser.parse_args()
    with redis_url() as url:
        configure_django(url, tagcache={"TTL_JITTER": 0.0})
        from django_tagcache import tagcache

        store = tagcache.store
        client, index = store.client, store.keys.index("churn")
        worst = 0.0
        print(f"{'cycle':>5} {'index members':>14} {'live entries':>13} {'ratio':>6} {'index bytes':>12}")
        for cycle in range(1, args.cycles + 1):
            for i in range(args.entries):
                tagcache.set(f"c{cycle}:{i}", i, timeout=args.ttl, tags=["churn"])
            pipe = client.pipeline(transaction=False)
            for i in range(args.entries):
                pipe.exists(store.keys.entry(f"c{cycle}:{i}"))
            live = sum(pipe.execute())
            members = client.zcard(index)
            ratio = members / max(live, 1)
            worst = max(worst, ratio)
            memory = client.memory_usage(index) or 0
            print(f"{cycle:>5} {members:>14,} {live:>13,} {ratio:>6.3f} {memory:>12,}")
            time.sleep(args.ttl + 0.1)
        print(f"worst ratio {worst:.3f} (bar: 1.1)")
        result(
            f"index members / live entries, {args.cycles} expiry cycles", worst, None, None, "<= 1.10", "x"
        )


if __name__ == "__main__":
    main()
