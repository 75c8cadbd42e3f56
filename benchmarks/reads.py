"""The hot path against django-redis on the same Redis: a read hit, and a write with three tags.

    python -m benchmarks.reads [--rounds 2000] [--repeat 21]

Bars: ``tagcache.get`` hit <= 1.10x ``cache.get`` hit; ``tagcache.set`` with 3 tags <= 1.5x
``cache.set``. Both sides make one round trip (counted by the tests).
"""

from __future__ import annotations

import argparse

from benchmarks._setup import configure_django, paired, redis_url, result

VALUE = {"name": "Blue mug", "price": 12.5, "tags": ["kitchen", "blue"], "stock": list(range(20))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()
    with redis_url() as url:
        configure_django(url)
        from django.core.cache import cache

        from django_tagcache import tagcache

        tagcache.set("card", VALUE, tags=["category:7", "seller:3", "shop.product:42"])
        cache.set("card", VALUE)
        assert tagcache.get("card") == cache.get("card") == VALUE

        def ours_set() -> None:
            tagcache.set("card2", VALUE, tags=["category:7", "seller:3", "shop.product:42"])

        def theirs_set() -> None:
            cache.set("card2", VALUE)

        rows = [
            (
                "tagcache.get hit vs django-redis cache.get hit",
                lambda: tagcache.get("card"),
                lambda: cache.get("card"),
                "<= 1.10",
            ),
            ("tagcache.set, 3 tags vs django-redis cache.set", ours_set, theirs_set, "<= 1.50"),
        ]
        for name, ours, theirs, bar in rows:
            ours_us, theirs_us, ratio = paired(ours, theirs, rounds=args.rounds, repeat=args.repeat)
            print(f"{name}: {ours_us:.1f} us vs {theirs_us:.1f} us, ratio {ratio:.3f} (bar {bar})")
            result(name, ours_us, theirs_us, ratio, bar)


if __name__ == "__main__":
    main()
