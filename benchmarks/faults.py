"""Figures of the fault behaviour, measured on real servers (run on demand, never in the suite).

    python -m benchmarks.faults

1. Worst request latency while Redis hangs (CLIENT PAUSE), with the settings shown.
2. How many times the compute function runs when 50 callers ask for one cold key at once.
3. Invalidations lost when Redis is cut off while transactions commit, with the outbox on.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time

from benchmarks._setup import SHOP_APPS, configure_django
from tests.proxy import Proxy
from tests.servers import RedisServer

SOCKET_TIMEOUT = 0.25
RESILIENCE: dict[str, object] = {
    "RETRY": {"ATTEMPTS": 2, "INITIAL_BACKOFF": 0.01, "BUDGET": 0.5},
    "CIRCUIT_BREAKER": {"FAILURES": 3, "RESET_TIMEOUT": 1.0},
    "OUTBOX": True,
}


def configure(url: str, database: str) -> None:
    configure_django(
        url,
        apps=SHOP_APPS,
        database=database,
        cache_options={"SOCKET_TIMEOUT": SOCKET_TIMEOUT, "SOCKET_CONNECT_TIMEOUT": SOCKET_TIMEOUT},
        tagcache=RESILIENCE,
    )


def hang(server: RedisServer) -> None:
    from django_tagcache import tagcache

    tagcache.set("page", "html", tags=["t"])
    server.client().client_pause(3000)
    latencies = []
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        started = time.monotonic()
        tagcache.get_or_set("page", lambda: "computed", tags=["t"])
        latencies.append(time.monotonic() - started)
    worst, median = max(latencies), statistics.median(latencies)
    print(f"1. Redis paused 3 s: {len(latencies)} requests, worst {worst * 1000:.0f} ms,", end=" ")
    print(f"median {median * 1000:.2f} ms (socket timeout {SOCKET_TIMEOUT * 1000:.0f} ms,", end=" ")
    print("retry budget 500 ms, circuit opens after 3 failures)")
    wait_until_closed()


def wait_until_closed() -> None:
    """Let the circuit breaker find Redis again before the next measurement."""
    from django_tagcache import tagcache

    breaker = tagcache.store.breaker
    assert breaker is not None
    for _ in range(100):
        tagcache.get("probe")
        if breaker.state == "closed":
            return
        time.sleep(0.1)
    raise RuntimeError("Redis did not come back")


def stampede() -> None:
    from django_tagcache import tagcache

    computed = []
    barrier = threading.Barrier(50)

    def compute() -> str:
        computed.append(1)
        time.sleep(0.2)
        return "value"

    def caller() -> None:
        barrier.wait()
        tagcache.get_or_set("cold", compute, tags=["cold"])

    threads = [threading.Thread(target=caller) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"2. 50 callers on one cold key (compute takes 200 ms): computed {len(computed)} time(s)")


def outage(proxy: Proxy) -> None:
    from django.core.management import call_command
    from django.db import transaction

    from django_tagcache import tagcache
    from django_tagcache.outbox import PendingInvalidation
    from tests.testapp.models import Category, Product

    categories = [Category.objects.create(name=str(i)) for i in range(20)]
    products = [Product.objects.create(name=str(i), category=categories[i]) for i in range(20)]
    for category in categories:
        tagcache.set(f"page:{category.pk}", "before", tags=[f"category:{category.pk}"])
    proxy.cut(refuse=True)
    for product in products:
        with transaction.atomic():
            product.name += "!"
            product.save()
    pending = PendingInvalidation.objects.count()
    proxy.heal()
    wait_until_closed()
    call_command("tagcache_drain", verbosity=0)
    lost = sum(tagcache.get(f"page:{category.pk}") is not None for category in categories)
    print(f"3. 20 transactions committed with Redis cut off: {pending} outbox row(s);", end=" ")
    print(f"after the drain, invalidations lost: {lost}")


def main() -> None:
    server = RedisServer.start()
    proxy = Proxy(server.port)
    try:
        with tempfile.NamedTemporaryFile(suffix=".sqlite3") as database:
            configure(f"redis://127.0.0.1:{proxy.port}/0", database.name)
            hang(server)
            stampede()
            outage(proxy)
    finally:
        proxy.close()
        server.stop()


if __name__ == "__main__":
    main()
