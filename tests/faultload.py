"""A mixed load run through a real fault: reads, cached pages and tagged saves, measured.

Shared by the fault suite (tests/test_faults.py, quick) and ``python -m benchmarks.faults`` (the
table of docs/resilience.md). A fault (tests/faultkinds.py) provides the cache configuration and
``inject()``/``heal()``. The load: reader threads call ``get_or_set`` and cached pages, each call
one request with its own Redis budget; one writer thread saves products (the only thread that
touches the database, so SQLite serves too), which invalidates their tags through the ORM, with
the outbox on or off. After the fault, the outbox is drained and every entry and page is compared
with the source of truth: a value that differs is stale.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory, override_settings

PRODUCTS = 20
PAGES = 4
RESILIENCE: dict[str, Any] = {
    "RETRY": {"ATTEMPTS": 3, "INITIAL_BACKOFF": 0.01, "MAX_BACKOFF": 0.1, "BUDGET": 1.0},
    "CIRCUIT_BREAKER": {"FAILURES": 3, "RESET_TIMEOUT": 0.3},
}


class Fault(Protocol):
    name: str
    automatic: bool  # it heals itself (a failover): recovery is timed from the injection

    def cache(self) -> dict[str, Any]: ...
    def inject(self) -> None: ...
    def heal(self) -> None: ...
    def leftover(self) -> int: ...


@dataclass
class Row:
    fault: str
    outbox: bool
    requests: int = 0
    answered: int = 0
    slowest: float = 0.0
    slowest_what: str = ""
    most_lost: float = 0.0
    lost: int = 0
    stale: int = 0
    recover: float = 0.0
    errors: list[str] = field(default_factory=list)

    def cells(self) -> list[str]:
        return [
            self.fault,
            "on" if self.outbox else "off",
            f"{self.answered}/{self.requests}",
            f"{self.slowest * 1000:.0f} ms",
            f"{self.most_lost * 1000:.0f} ms",
            str(self.lost),
            str(self.stale),
            f"{self.recover:.2f} s",
        ]


HEADER = [
    "fault",
    "outbox",
    "requests answered",
    "slowest request",
    "most lost to Redis",
    "invalidations lost",
    "stale after recovery",
    "time to recover",
]


def table(rows: list[Row]) -> str:
    """A markdown table of the rows."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + " --- |" * len(HEADER)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


class _Load:
    def __init__(self, seed: int) -> None:
        from tests.testapp.models import Category, Product

        self.random = random.Random(seed)
        self.truth: dict[int, str] = {}  # the source of truth the values are computed from
        category = Category.objects.create(name="faults")
        self.products = [Product.objects.create(name="v0", category=category) for _ in range(PRODUCTS)]
        self.truth = {product.pk: "v0" for product in self.products}
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.saves = 0
        self.slowest = (0.0, "")
        self.most_lost = 0.0  # the most time one request lost to failed Redis attempts and waits

    def value(self, pk: int) -> Any:
        from django_tagcache import tagcache

        return tagcache.get_or_set(f"p:{pk}", lambda: self.truth[pk], tags=[f"shop.product:{pk}"])

    def page(self, number: int) -> HttpResponse:
        from django_tagcache.views import cache_page_tagged

        pks = [product.pk for product in self.products[number::PAGES]]

        @cache_page_tagged(600)
        def view(request: HttpRequest) -> HttpResponse:
            return HttpResponse(",".join(str(self.value(pk)) for pk in pks))

        response: HttpResponse = view(RequestFactory().get(f"/page/{number}/"))
        return response

    def page_truth(self, number: int) -> str:
        return ",".join(self.truth[product.pk] for product in self.products[number::PAGES])

    def request(self, what: str, call: Any) -> None:
        from django_tagcache import redis_budget

        started = time.monotonic()
        try:
            with redis_budget() as budget:
                call()
        except Exception as exc:
            with self.lock:
                self.failures.append(f"{type(exc).__name__}: {exc}")
        took = time.monotonic() - started
        with self.lock:
            self.latencies.append(took)
            self.most_lost = max(self.most_lost, budget.spent)
            if took > self.slowest[0]:
                self.slowest = (took, f"{what}, {budget.spent:.2f} s lost to Redis")

    def reader(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self.stop.is_set():
            if rng.random() < 0.3:
                self.request("page", lambda: self.page(rng.randrange(PAGES)))
            else:
                self.request("read", lambda: self.value(rng.choice(self.products).pk))

    def writer(self) -> None:
        from django.db import close_old_connections

        try:
            while not self.stop.is_set():
                product = self.random.choice(self.products)
                self.saves += 1
                name = f"v{self.saves}"

                def save(product: Any = product, name: str = name) -> None:
                    self.truth[product.pk] = name
                    product.name = name
                    product.save()

                self.request("save", save)
                time.sleep(0.005)
        finally:
            close_old_connections()


def _recovered() -> bool:
    """Whether a tagged write goes through again (it fails open, False, until then)."""
    from django_tagcache import tagcache

    return tagcache.set("probe", time.monotonic(), tags=["probe"]) is True


def run(fault: Fault, *, outbox: bool, hold: float = 1.0, seed: int = 0, readers: int = 2) -> Row:
    """Run the load through ``fault`` (held ``hold`` seconds) and measure it."""
    from django_tagcache.caching.api import reset_stores
    from django_tagcache.core import metrics
    from django_tagcache.orm.outbox import PendingInvalidation, drain

    row = Row(fault.name, outbox)
    settings = {"CACHES": {"default": fault.cache()}, "TAGCACHE": {**RESILIENCE, "OUTBOX": outbox}}
    with override_settings(**settings):
        reset_stores()
        lost_before = metrics.snapshot()["lost_invalidations"]
        load = _Load(seed)
        for product in load.products:
            load.value(product.pk)
        threads = [threading.Thread(target=load.reader, args=(seed + i,)) for i in range(readers)]
        threads.append(threading.Thread(target=load.writer))
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.2)
            injected = time.monotonic()
            fault.inject()
            time.sleep(hold)
            healed = time.monotonic()
            fault.heal()
            start = injected if fault.automatic else healed
            while not _recovered() and time.monotonic() - start < 60:
                time.sleep(0.01)
            row.recover = time.monotonic() - start
            time.sleep(0.4)  # the breaker closes; traffic resumes
        finally:
            load.stop.set()
            for thread in threads:
                thread.join()
        time.sleep(0.35)  # let the breaker probe again before the drain
        if outbox:
            drain()
        row.lost = (
            metrics.snapshot()["lost_invalidations"] - lost_before + PendingInvalidation.objects.count()
        )
        row.stale = sum(load.value(pk) != name for pk, name in load.truth.items())
        row.stale += sum(load.page(n).content.decode() != load.page_truth(n) for n in range(PAGES))
        row.stale += fault.leftover()
        row.requests, row.answered = len(load.latencies), len(load.latencies) - len(load.failures)
        row.slowest, row.slowest_what = load.slowest
        row.most_lost = load.most_lost
        row.errors = sorted(set(load.failures))[:5]
        PendingInvalidation.objects.all().delete()
    return row
