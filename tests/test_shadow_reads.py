"""The stale-read auditor (shadow reads): finds injected staleness, stays quiet on a correct run,
costs what its sample rate says, and never touches what a caller gets."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path

from django_tagcache import TagCache, cached, invalidate_tags
from django_tagcache.caching import background, shadow
from django_tagcache.caching.api import get_store
from django_tagcache.core import observations, serialization, shadow_records
from tests.faults import Faulty
from tests.testapp.models import Category, Product

AUDIT = {"SAMPLE_RATE": 1.0, "BUDGET": 0, "LOG_INTERVAL": 0}


@pytest.fixture(autouse=True)
def _fresh_auditor(settings: Any, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    settings.TAGCACHE = {**getattr(settings, "TAGCACHE", {}), "AUDIT": AUDIT}
    observations.reset()
    shadow.reset()
    shadow_records.reset_local()
    yield
    assert background.wait(30), "the audit thread did not finish"
    assert not [r for r in caplog.records if "audit task failed" in r.getMessage()]
    shadow._random = random.random


def outcomes() -> dict[str, int]:
    found: dict[str, int] = {}
    for (_, outcome), value in observations.counters("audit_reads").items():
        found[outcome] = found.get(outcome, 0) + value
    return found


def finish() -> dict[str, int]:
    assert background.wait(30)
    return outcomes()


@pytest.fixture(params=["default", "builtin", "locmem"])
def tc(request: pytest.FixtureRequest) -> TagCache:
    return TagCache(str(request.param))


def test_a_correct_run_reports_nothing_stale(tc: TagCache) -> None:
    source = {n: n * 10 for n in range(5)}
    for round_ in range(20):
        n = round_ % 5
        if round_ % 7 == 3:  # the source changes, and its tag is invalidated, as a save would
            source[n] += 1
            tc.invalidate_tags(f"n:{n}")
        assert tc.get_or_set(f"n:{n}", lambda n=n: source[n], tags=[f"n:{n}"]) == source[n]
    found = finish()
    assert found.get("stale", 0) == 0
    assert found.get("error", 0) == 0
    assert found.get("fresh", 0) >= 10  # every hit was checked, and agreed


def test_an_entry_overwritten_behind_the_back_is_stale(caplog: pytest.LogCaptureFixture) -> None:
    tc = TagCache("default")
    assert tc.get_or_set("price:7", lambda: 100, tags=["shop.product:7", "category:3"]) == 100
    store = get_store("default")
    entry = store.keys.entry("price:7")
    written = serialization.written_at(store.client.get(entry))  # type: ignore[arg-type]
    assert written is not None
    # Another program writes the entry, keeping its TTL and index: the package never knows.
    store.client.set(entry, serialization.dumps_stamped(90, 0.0, 0), keepttl=True)
    with caplog.at_level(logging.WARNING, logger="django_tagcache"):
        served = tc.get_or_set("price:7", lambda: 100, tags=["shop.product:7", "category:3"])
        assert served == 90  # what the cache holds is served: the auditor changes nothing
        assert finish() == {"stale": 1}
    mismatches = observations.counters("audit_mismatches")
    assert mismatches == {("critical", "category", "stale"): 1, ("critical", "shop.product", "stale"): 1}
    assert [r.getMessage() for r in caplog.records if "stale read" in r.getMessage()] == [
        f"django-tagcache: stale read: {entry} (price:7) served a value that differs from the database's, "
        "and the entry was not invalidated; its tags: category:3, shop.product:7; entry age: 0.0 s."
    ]
    ages = observations.histograms("audit_entry_age")
    assert ages[("stale",)][0][-1] == 1
    assert shadow_records.outcomes(store, 1)[("critical", "stale")] == 1  # for every process to read


def test_a_stale_entry_is_logged_once() -> None:
    tc = TagCache("default")
    tc.get_or_set("k", lambda: 1, tags=["t"])
    store = get_store("default")
    store.client.set(store.keys.entry("k"), serialization.dumps(2), keepttl=True)  # an old payload kind
    with pytest.MonkeyPatch.context() as patch:
        logged: list[str] = []
        patch.setattr(shadow.logger, "warning", lambda msg, *args: logged.append(msg % args))
        for _ in range(3):
            assert tc.get_or_set("k", lambda: 1, tags=["t"]) == 2
            assert background.wait(30)
    assert finish() == {"stale": 3}
    assert len(logged) == 1
    assert "entry age: unknown" in logged[0]  # an old payload kind has no write time


@pytest.mark.django_db(transaction=True)
def test_an_invalidation_that_never_came_is_stale() -> None:
    category = Category.objects.create(name="tea")
    Product.objects.create(name="green", category=category)

    @cached(tags=lambda pk: [f"category:{pk}", Product])
    def names(pk: int) -> list[str]:
        return sorted(Product.objects.filter(category_id=pk).values_list("name", flat=True))

    assert names(category.pk) == ["green"]
    assert names(category.pk) == ["green"]
    assert finish() == {"fresh": 1}
    # A write the package cannot see: straight through the driver, no ORM, no signal, no SQL watcher.
    connection.ensure_connection()
    driver = connection.connection
    assert driver is not None
    cursor = driver.cursor()
    cursor.execute(f"UPDATE {Product._meta.db_table} SET name = 'black'")
    cursor.close()
    driver.commit()
    assert names(category.pk) == ["green"]
    assert finish() == {"fresh": 1, "stale": 1}
    # The same change made through the ORM is invalidated: nothing more is stale.
    Product.objects.update(name="white")
    assert names(category.pk) == ["white"]  # a miss
    assert names(category.pk) == ["white"]
    assert finish() == {"fresh": 2, "stale": 1}


def test_an_entry_invalidated_before_the_check_is_late() -> None:
    tc = TagCache("default")
    tc.get_or_set("k", lambda: 1, tags=["t"])

    def recompute() -> int:
        invalidate_tags("t")  # the change commits and is invalidated right after the read
        return 2

    assert tc.get_or_set("k", recompute, tags=["t"]) == 1
    assert finish() == {"late": 1}
    assert observations.counters("audit_mismatches") == {("critical", "t", "late"): 1}


def test_the_verdict_waits_for_the_budget(settings: Any) -> None:
    """A mismatch is stale only if the entry is unchanged BUDGET seconds after it was served."""
    settings.TAGCACHE = {**settings.TAGCACHE, "AUDIT": {**AUDIT, "BUDGET": 3}}
    tc = TagCache("default")
    tc.get_or_set("k", lambda: 1, tags=["t"])
    checked = threading.Event()

    def recompute() -> int:
        checked.set()
        return 2

    assert tc.get_or_set("k", recompute, tags=["t"]) == 1
    assert checked.wait(30)
    for _ in range(30_000):  # the first check is over when only the delayed second one waits
        if background._running == 0 and background.pending() == 1:
            break
        time.sleep(0.001)
    assert outcomes() == {}
    invalidate_tags("t")  # the invalidation arrives within the budget
    assert finish() == {"late": 1}


def test_the_sample_rate_bounds_the_recomputes(settings: Any) -> None:
    tc = TagCache("default")
    computed: list[int] = []

    def compute() -> int:
        computed.append(1)
        return 1

    tc.get_or_set("k", compute, tags=["t"])
    for rate in (0.0, 0.01, 0.1):
        settings.TAGCACHE = {**settings.TAGCACHE, "AUDIT": {**AUDIT, "SAMPLE_RATE": rate}}
        seed = random.randrange(2**32)
        shadow._random = random.Random(seed).random
        draws = random.Random(seed)
        expected = sum(draws.random() < rate for _ in range(1000))
        computed.clear()
        for _ in range(1000):
            assert tc.get_or_set("k", compute, tags=["t"]) == 1
        assert background.wait(30)
        assert len(computed) == expected, f"seed {seed}"
        assert expected <= 1000 * rate * 2 + 10, f"seed {seed}"


def test_a_raising_compare_hook_or_recompute_never_reaches_the_caller() -> None:
    def broken_compare(served: object, fresh: object) -> bool:
        raise ZeroDivisionError

    @cached(tags=["t"], audit_compare=broken_compare)
    def value() -> int:
        return 1

    assert value() == 1
    assert value() == 1
    tc = TagCache("default")
    tc.get_or_set("k", lambda: 1, tags=["t"])
    assert tc.get_or_set("k", lambda: 1 // 0, tags=["t"]) == 1
    assert finish() == {"error": 2}
    assert observations.counters("audit_errors") == {("compare",): 1, ("recompute",): 1}


class Rows:
    """A result that is not equal by == to an equal one (a queryset, say)."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids


def test_a_compare_hook_for_values_not_equal_by_eq() -> None:
    ids = [1, 2]

    @cached(tags=["t"], audit_compare=lambda a, b: a.ids == b.ids)
    def rows() -> Rows:
        return Rows(list(ids))

    rows()
    rows()
    assert finish() == {"fresh": 1}  # by ==, two Rows objects always differ
    ids.append(3)
    rows()
    assert finish() == {"fresh": 1, "stale": 1}


def test_redis_down_during_the_audit_never_reaches_the_caller(faulty: Faulty, settings: Any) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "AUDIT": AUDIT}
    tc = faulty.tc
    assert tc.get_or_set("k", lambda: 1, tags=["t"]) == 1

    def recompute() -> int:
        faulty.stop()  # Redis goes away between the read served and the audit's own reads
        return 2

    assert tc.get_or_set("k", recompute, tags=["t"]) == 1
    assert finish() == {"error": 1}
    assert observations.counters("audit_errors") == {("redis",): 1}
    assert observations.counters("audit_unrecorded") == {(): 1}
    assert tc.get_or_set("k", lambda: 3, tags=["t"]) == 3  # served without Redis
    assert observations.histograms("failopen_compute")[()][0][-1] == 1


def test_a_full_queue_drops_samples_without_blocking(settings: Any) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "AUDIT": {**AUDIT, "QUEUE_SIZE": 1}}
    tc = TagCache("default")
    tc.get_or_set("k", lambda: 1, tags=["t"])
    release = threading.Event()

    def slow() -> int:
        release.wait(30)
        return 1

    for _ in range(50):
        assert tc.get_or_set("k", slow, tags=["t"]) == 1  # returns at once: the audit thread waits
    dropped = observations.counters("audit_dropped")[()]
    release.set()
    assert dropped >= 48  # one running, one queued; the rest dropped
    assert sum(finish().values()) == 50 - dropped


def test_recomputing_bypasses_nested_cached_calls() -> None:
    """The truth is the database's, not another cached value (which may be the stale one)."""
    prices = {"a": 1}

    @cached(tags=["inner"])
    def inner() -> int:
        return prices["a"]

    @cached(tags=["outer"])
    def outer() -> int:
        return inner() * 10

    assert outer() == 10
    prices["a"] = 2  # neither tag invalidated: both entries are now stale
    assert outer() == 10
    found = finish()
    assert found == {"stale": 1}  # the outer hit, checked against inner's source, not inner's entry


def test_sampling_off_costs_no_work(settings: Any) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "AUDIT": {}}
    tc = TagCache("default")
    for _ in range(100):
        tc.get_or_set("k", lambda: 1, tags=["t"])
    assert background.pending() == 0
    assert outcomes() == {}


def test_an_old_payload_and_a_stamped_one_both_read(tc: TagCache) -> None:
    assert serialization.loads(serialization.dumps(5))[0] == 5  # type: ignore[index]
    assert serialization.loads(serialization.dumps_timed(5, 1.0, 1000))[0] == 5  # type: ignore[index]
    stamped = serialization.dumps_stamped(5, 0.5, 1000)
    value, compute_seconds, expiry = serialization.loads(stamped)  # type: ignore[misc]
    assert (value, compute_seconds) == (5, 0.5)
    written = serialization.written_at(stamped)
    assert written is not None
    assert abs(expiry - written - 1.0) < 1e-6
    assert serialization.written_at(serialization.dumps(5)) is None


def test_misses_and_their_compute_time_per_prefix() -> None:
    tc = TagCache("default")
    for n in range(3):
        tc.get_or_set(f"product:{n}", lambda: 1, tags=["t"])
    tc.get_or_set("product:0", lambda: 1, tags=["t"])

    @cached(tags=["t"])
    def top() -> int:
        return 1

    top()
    name = f"{__name__}.test_misses_and_their_compute_time_per_prefix.<locals>.top"
    assert observations.counters("misses") == {("product",): 3, (name,): 1}
    computed = observations.histograms("miss_compute")
    assert computed[("product",)][0][-1] == 3


def test_a_malformed_audit_setting_never_reaches_a_read(settings: Any) -> None:
    tc = TagCache("default")
    tc.get_or_set("k", lambda: 1, tags=["t"])
    settings.TAGCACHE = {**settings.TAGCACHE, "AUDIT": {"SAMPLE_RATE": "often"}}
    assert tc.get_or_set("k", lambda: 1, tags=["t"]) == 1  # the check reports it; the read goes on
    assert finish() == {}


GREETINGS = {1: "hello"}


@cached(tags=lambda pk: [f"greeting:{pk}"])
def greeting(pk: int) -> str:
    return GREETINGS[pk]


def greeting_view(request: HttpRequest, pk: int) -> HttpResponse:
    return HttpResponse(greeting(pk))


urlpatterns = [path("greeting/<int:pk>/", greeting_view)]


@pytest.mark.urls(__name__)
def test_a_response_is_the_same_with_the_auditor_on_or_off(client: Client, settings: Any) -> None:
    assert client.get("/greeting/1/").content == b"hello"  # a miss, stored
    store = get_store("default")
    entry = store.keys.entry(greeting.cache_key(1))
    store.client.set(entry, serialization.dumps_stamped("stale hello", 0.0, 0), keepttl=True)
    audited = client.get("/greeting/1/")
    assert finish() == {"stale": 1}
    settings.TAGCACHE = {**settings.TAGCACHE, "AUDIT": {}}
    plain = client.get("/greeting/1/")
    assert (
        (audited.status_code, audited.content) == (plain.status_code, plain.content) == (200, b"stale hello")
    )
    assert dict(audited.items()) == dict(plain.items())
    assert finish() == {"stale": 1}  # nothing sampled with the auditor off
