"""Cost of model writes: an autocommit save of a tagged model against the same model untagged.

    python -m benchmarks.saves [--rounds 2000] [--repeat 5]

Reports medians over repeated runs, and the Redis round trips each save sent (counted, so the
figure does not depend on the machine). Bar: a tagged save costs at most an untagged save plus one
round trip, measured here as an untagged save followed by a PING.
"""

from __future__ import annotations

import argparse

from benchmarks._setup import SHOP_APPS, configure_django, paired, redis_url, result


def configure(url: str) -> None:
    configure_django(url, apps=SHOP_APPS, database=":memory:", counting=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()
    with redis_url() as url:
        configure(url)
        from django.db import transaction

        from django_tagcache import tagcache
        from tests.counting import count
        from tests.testapp.models import Category, PlainProduct, Product

        category = Category.objects.create(name="c")
        product = Product.objects.create(name="p", category=category)
        plain = PlainProduct.objects.create(name="p", category=category)
        tagcache.set("warm", 1, tags=["warm"])
        tagcache.store.scripts.load()

        with count() as tagged_trips:
            product.save()
        with count() as plain_trips:
            plain.save()

        client = tagcache.store.client

        def plain_save_and_ping() -> None:
            plain.save()
            client.ping()

        # Paired runs: each ratio compares back-to-back measurements of both sides.
        t, b, ratio = paired(product.save, plain_save_and_ping, rounds=args.rounds, repeat=args.repeat)
        _, u, _ = paired(product.save, plain.save, rounds=args.rounds, repeat=max(3, args.repeat // 3))
        with count() as batch_trips, transaction.atomic():
            for i in range(1000):
                Product.objects.create(name=str(i), category=category)

        rows = [
            ("save() of an untagged model, autocommit", f"{u:8.1f}us", "", plain_trips.round_trips),
            ("untagged save() + one PING (the bar)", f"{b:8.1f}us", "1.00", plain_trips.round_trips + 1),
            ("save() of a tagged model, autocommit", f"{t:8.1f}us", f"{ratio:.2f}", tagged_trips.round_trips),
            ("1,000 creates in one atomic() block", "", "", batch_trips.round_trips),
        ]
        print(f"{'row':46} {'median':>10} {'vs bar':>7} {'Redis round trips':>18}")
        for label, median, shown, trips in rows:
            print(f"{label:46} {median:>10} {shown:>7} {trips:>18}")
        overhead = (t - u) / (b - u)
        print(f"time overhead: {overhead:.2f} round trips (one round trip = bar - untagged save)")
        result("save(), tagged vs untagged + one PING (autocommit)", t, b, ratio, "1 RT")
        result(
            "save(), tagged: Redis round trips added", float(tagged_trips.round_trips), None, None, "<= 1", ""
        )
        result(
            "1,000 saves in one atomic(): invalidation round trips",
            float(batch_trips.round_trips),
            None,
            None,
            "== 1",
            "",
        )


if __name__ == "__main__":
    main()
