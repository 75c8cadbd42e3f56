"""Figures of the fault behaviour, measured on real servers (run on demand, never in the suite).

    python -m benchmarks.faults            # every fault held 1 s; the budget table
    python -m benchmarks.faults --long     # every fault held 5 s, more readers
    python -m benchmarks.faults --budget   # no fault table: the budget table and the stampede

1. The fault table: each fault of tests/faultkinds.py, with the outbox off and on, under a mixed
   load of reads, cached pages and tagged saves (tests/faultload.py): requests answered, the
   slowest request, invalidations lost, stale values served after recovery, time to recover.
2. The budget table: the wall time of one request making 1 to 20 Redis calls while Redis is hung
   (SIGSTOP), drops packets (a proxy swallowing them) or refuses connections, against
   ``RETRY['BUDGET']``, with the circuit breaker off so that the budget alone bounds it.
3. How many times 50 callers asking for one cold key at once compute it (single flight).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Iterator

from django.http import HttpRequest, HttpResponse
from django.urls import path

from benchmarks._setup import SHOP_APPS, configure_django
from tests.proxy import Proxy
from tests.servers import RedisServer, free_port

BUDGET = 1.0
SOCKET_TIMEOUT = 0.25
CALLS = (1, 2, 5, 10, 20)
LABELS = {"hung": "hung (SIGSTOP)", "drop": "dropping packets", "refused": "refusing connections"}


def calls_view(request: HttpRequest, calls: int) -> HttpResponse:
    from django_tagcache import tagcache

    values = [tagcache.get_or_set(f"k{i}", lambda: "v", tags=["t"]) for i in range(calls)]
    return HttpResponse(",".join(values))


urlpatterns = [path("calls/<int:calls>/", calls_view)]


def fault_table(long: bool, seed: int) -> None:
    from tests.faultkinds import everything
    from tests.faultload import run, table

    rows = []
    for make in everything().values():
        for outbox in (False, True):
            fault = make()
            try:
                row = run(
                    fault, outbox=outbox, hold=5.0 if long else 1.0, seed=seed, readers=4 if long else 2
                )
            finally:
                fault.close()
            print(" | ".join(row.cells()), *row.errors[:1], file=sys.stderr, flush=True)
            rows.append(row)
    print(f"Fault table (seed {seed}; each fault held {5.0 if long else 1.0} s):\n")
    print(table(rows))


@contextlib.contextmanager
def broken(mode: str) -> Iterator[str]:
    """A Redis URL that is hung, drops packets, or refuses connections for the block."""
    if mode == "refused":
        yield f"redis://127.0.0.1:{free_port()}/0"
        return
    server = RedisServer.start()
    proxy = Proxy(server.port)
    try:
        if mode == "hung":
            server.process.send_signal(signal.SIGSTOP)
        else:
            proxy.blackhole = True
        yield f"redis://127.0.0.1:{proxy.port}/0"
    finally:
        server.process.send_signal(signal.SIGCONT)
        proxy.close()
        server.stop()


def budget_table() -> None:
    from django.test import Client, override_settings

    print(
        f"\nOne request on a failing Redis (socket timeouts {SOCKET_TIMEOUT * 1000:.0f} ms, RETRY defaults,"
    )
    print(f"BUDGET {BUDGET} s, circuit breaker off): wall time of the request\n")
    print("| Redis | " + " | ".join(f"{n} call{'s' if n > 1 else ''}" for n in CALLS) + " | budget |")
    print("| --- |" + " --- |" * (len(CALLS) + 1))
    for mode in ("hung", "drop", "refused"):
        cells = []
        with broken(mode) as url:
            options = {"SOCKET_TIMEOUT": SOCKET_TIMEOUT, "SOCKET_CONNECT_TIMEOUT": SOCKET_TIMEOUT}
            cache = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url, "OPTIONS": options}
            tagcache = {"RETRY": {"BUDGET": BUDGET}, "CIRCUIT_BREAKER": {"FAILURES": 0}}
            with override_settings(CACHES={"default": cache}, TAGCACHE=tagcache):
                for calls in CALLS:
                    started = time.monotonic()
                    response = Client().get(f"/calls/{calls}/")
                    assert response.status_code == 200
                    cells.append(f"{(time.monotonic() - started) * 1000:.0f} ms")
        label = {"hung": "hung (SIGSTOP)", "drop": "dropping packets", "refused": "refusing connections"}[
            mode
        ]
        print(f"| {label} | " + " | ".join(cells) + f" | {BUDGET * 1000:.0f} ms |")


def stampede() -> None:
    """How many times 50 callers asking for one cold key at once compute it."""
    import threading

    from django.test import override_settings

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

    server = RedisServer.start()
    try:
        cache = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": server.url}
        with override_settings(CACHES={"default": cache}, TAGCACHE={}):
            threads = [threading.Thread(target=caller) for _ in range(50)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        server.stop()
    print(f"\n50 callers on one cold key (compute takes 200 ms): computed {len(computed)} time(s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--long", action="store_true", help="Hold each fault 5 s, with more readers.")
    parser.add_argument("--budget", action="store_true", help="Skip the fault table.")
    parser.add_argument("--seed", type=int, default=1, help="Seed of the load (printed with the table).")
    args = parser.parse_args()
    # Every failure is logged as a warning; thousands of them would bury the tables.
    logging.getLogger("django_tagcache").setLevel(logging.CRITICAL)
    with tempfile.NamedTemporaryFile(suffix=".sqlite3") as database:
        configure_django(
            "redis://127.0.0.1:1/0",  # replaced per fault
            apps=SHOP_APPS,
            database=database.name,
            extra={"ROOT_URLCONF": "benchmarks.faults", "ALLOWED_HOSTS": ["*"]},
        )
        if not args.budget:
            fault_table(args.long, args.seed)
        budget_table()
        stampede()


if __name__ == "__main__":
    main()
