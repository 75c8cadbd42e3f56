"""Against django-cacheops, on the same Redis and database: a cached read, and a save that invalidates.

    python -m benchmarks.cacheops_compare [--rounds 1000] [--repeat 15]

Two models of the same shape: ``Product`` is cached by this app (``Meta.cache_tags``),
``PlainProduct`` by cacheops (``CACHEOPS``), so neither library sees the other's writes. Bars:
our cached read is faster than ``qs.cache().get()``; our save with its invalidation is faster
than cacheops' save with its invalidation. Needs django-cacheops (requirements/bench.txt).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from benchmarks._setup import SHOP_APPS, configure_django, paired, redis_url, result


def configure(url: str) -> None:
    configure_django(
        url,
        apps=(*SHOP_APPS, "cacheops"),
        database=":memory:",
        extra={"CACHEOPS_REDIS": url, "CACHEOPS": {"shop.plainproduct": {"ops": "all", "timeout": 600}}},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    import importlib.util

    # Only look for it: cacheops reads Django settings as soon as it is imported.
    if importlib.util.find_spec("cacheops") is None:
        print("django-cacheops is not installed: run ./scripts/bench, which installs requirements/bench.txt")
        sys.exit(2)
    with redis_url() as url:
        configure(url)
        from django_tagcache import cached
        from tests.testapp.models import Category, PlainProduct, Product

        category = Category.objects.create(name="c")
        ours = Product.objects.create(name="p", category=category)
        theirs = PlainProduct.objects.create(name="p", category=category)

        @cached(timeout=600, tags=lambda pk: [f"shop.product:{pk}"])
        def product(pk: int) -> Product:
            return Product.objects.get(pk=pk)

        # cacheops adds .cache() to querysets at run time; the type checker cannot know it.
        plain: Any = PlainProduct.objects
        assert product(ours.pk).pk == ours.pk
        assert plain.cache().get(pk=theirs.pk).pk == theirs.pk

        rows: list[tuple[str, Callable[[], object], Callable[[], object], str]] = [
            (
                "cached read: @cached hit vs cacheops qs.cache().get() hit",
                lambda: product(ours.pk),
                lambda: plain.cache().get(pk=theirs.pk),
                "< 1.00",
            ),
            ("save() + invalidation vs cacheops save() + invalidation", ours.save, theirs.save, "< 1.00"),
        ]
        for name, mine, other, bar in rows:
            ours_us, theirs_us, ratio = paired(mine, other, rounds=args.rounds, repeat=args.repeat)
            print(f"{name}: {ours_us:.1f} us vs {theirs_us:.1f} us, ratio {ratio:.3f} (bar {bar})")
            result(name, ours_us, theirs_us, ratio, bar)


if __name__ == "__main__":
    main()
