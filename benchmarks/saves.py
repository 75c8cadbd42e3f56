"""Cost of model writes: an autocommit save of a tagged model against the same model untagged.

    python -m benchmarks.saves [--rounds 2000] [--repeat 21] [--labels 50000]

Reports medians over repeated runs, paired so that load on a shared machine hits both sides,
and the Redis round trips each save sent (counted, so that figure does not depend on the
machine). Bar: a tagged save costs at most 1.5 round trips more than the untagged save, one
round trip being a raw redis-py GET (the save reads the row as stored and sends one
invalidation script call; signal handling, batching, metrics and tracing all count).

Then one transaction that touches over 100,000 tags (``--labels`` labels added to a product:
each label's instance tag and its ``label-name:`` tag) and the longest Redis command its commit
ran, from SLOWLOG. Bar: none over 20 ms.
"""

from __future__ import annotations

import argparse
import time

from benchmarks._setup import SHOP_APPS, configure_django, paired, redis_url, result


def configure(url: str) -> None:
    configure_django(url, apps=SHOP_APPS, database=":memory:", counting=True)


def save_overhead(rounds: int, repeat: int) -> None:
    from django_tagcache import tagcache
    from tests.counting import count
    from tests.testapp.models import Category, PlainProduct, Product

    category = Category.objects.create(name="c")
    product = Product.objects.create(name="p", category=category)
    plain = PlainProduct.objects.create(name="p", category=category)
    tagcache.set("warm", 1, tags=["warm"])
    tagcache.store.scripts.load()
    client = tagcache.store.client
    client.set("a key", b"x" * 16)

    with count() as tagged_trips:
        product.save()
    with count() as plain_trips:
        plain.save()

    def plain_save_and_get() -> None:
        plain.save()
        client.get("a key")

    # Paired runs: each ratio compares back-to-back measurements of both sides.
    t, b, ratio = paired(product.save, plain_save_and_get, rounds=rounds, repeat=repeat)
    _, u, _ = paired(product.save, plain.save, rounds=rounds, repeat=repeat)
    get, _, _ = paired(lambda: client.get("a key"), plain.save, rounds=rounds, repeat=repeat)
    overhead = (t - u) / get

    rows = [
        ("save() of an untagged model, autocommit", f"{u:8.1f}us", "", plain_trips.round_trips),
        ("a raw redis-py GET (one round trip)", f"{get:8.1f}us", "", 1),
        ("untagged save() + one raw GET", f"{b:8.1f}us", "1.00", plain_trips.round_trips + 1),
        ("save() of a tagged model, autocommit", f"{t:8.1f}us", f"{ratio:.2f}", tagged_trips.round_trips),
    ]
    print(f"{'row':46} {'median':>10} {'vs bar':>7} {'Redis round trips':>18}")
    for label, median, shown, trips in rows:
        print(f"{label:46} {median:>10} {shown:>7} {trips:>18}")
    print(f"tagged save overhead: {overhead:.2f} raw GET round trips ((tagged - untagged) / GET)")
    result("save(), tagged: time added, in raw GET round trips", overhead, None, None, "<= 1.5", "RT")
    result("save(), tagged: Redis round trips added", float(tagged_trips.round_trips), None, None, "<= 1", "")


def big_transaction(labels: int) -> None:
    from django.db import transaction

    from django_tagcache import tagcache
    from tests.counting import count
    from tests.testapp.models import Category, Label, Product

    with count() as batch_trips, transaction.atomic():
        category = Category.objects.create(name="many")
        for i in range(1000):
            Product.objects.create(name=str(i), category=category)
    print(f"1,000 creates in one atomic() block: {batch_trips.round_trips} invalidation round trip(s)")
    result(
        "1,000 saves in one atomic(): invalidation round trips",
        float(batch_trips.round_trips),
        None,
        None,
        "== 1",
        "",
    )

    product = Product.objects.create(name="labelled", category=category)
    created = Label.objects.bulk_create([Label(name=f"l{i}") for i in range(labels)], batch_size=5000)
    client = tagcache.store.client
    client.config_set("slowlog-log-slower-than", 1000)  # log every command over 1 ms
    client.config_set("slowlog-max-len", 10_000)
    client.slowlog_reset()
    with count() as trips:
        started = time.perf_counter()
        with transaction.atomic():
            product.labels.add(*created)
        elapsed = time.perf_counter() - started
    longest = max((entry["duration"] for entry in client.slowlog_get(10_000)), default=0) / 1000
    tags = 2 * labels + 4
    print(
        f"one transaction touching {tags:,} tags: commit and invalidation {elapsed * 1000:.0f} ms, "
        f"{trips.round_trips} round trip(s) to Redis, longest Redis command {longest:.1f} ms (SLOWLOG)"
    )
    result(f"one transaction touching {tags:,} tags: longest command", longest, None, None, "<= 20 ms", "ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--labels", type=int, default=50_000)
    args = parser.parse_args()
    with redis_url() as url:
        configure(url)
        save_overhead(args.rounds, args.repeat)
        big_transaction(args.labels)


if __name__ == "__main__":
    main()
