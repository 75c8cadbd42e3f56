"""Invalidation lag, the outbox's oldest row, and the Prometheus names the dashboard is built on."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from prometheus_client import CollectorRegistry, generate_latest

from django_tagcache.core import observations
from django_tagcache.ops import consistency
from django_tagcache.ops.prometheus import TagCacheCollector
from django_tagcache.orm.outbox import PendingInvalidation, drain
from tests.faults import Faulty
from tests.testapp.models import Category

DASHBOARD = Path(__file__).resolve().parent.parent / "docs" / "dashboards" / "tagcache-consistency.json"


@pytest.fixture(autouse=True)
def _fresh() -> None:
    observations.reset()


def lag_count(path: str) -> int:
    found = observations.histograms("invalidation_lag").get((path,))
    return 0 if found is None else found[0][-1]


@pytest.mark.django_db(transaction=True)
def test_the_lag_of_a_commit_is_measured_once() -> None:
    with transaction.atomic():
        for n in range(5):
            Category.objects.create(name=f"c{n}")
        assert lag_count("commit") == 0  # nothing before the commit
    assert lag_count("commit") == 1  # one transaction, one invalidation, one observation
    with transaction.atomic():
        Category.objects.create(name="rolled back")
        transaction.set_rollback(True)
    assert lag_count("commit") == 1


@pytest.mark.django_db(transaction=True)
def test_the_outbox_oldest_row_and_its_lag(faulty: Faulty, settings: Any) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "OUTBOX": True}
    assert consistency.oldest_pending_age() == 0.0
    faulty.stop()
    Category.objects.create(name="kept")  # Redis is down: the row waits
    assert PendingInvalidation.objects.count() == 1
    age = consistency.oldest_pending_age()
    assert age is not None
    assert age >= 0.0
    assert "tagcache_outbox_oldest_pending_seconds " in scrape()
    faulty.restart()
    assert drain() == (1, 0)
    assert lag_count("outbox") == 1
    assert consistency.oldest_pending_age() == 0.0


def scrape() -> str:
    registry = CollectorRegistry()
    registry.register(TagCacheCollector())
    return generate_latest(registry).decode()


def exported_names(text: str) -> set[str]:
    """Every sample name the exposition can carry, from its TYPE lines."""
    names: set[str] = set()
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE):
        suffixes = {
            "counter": [""] if name.endswith("_total") else ["_total"],
            "histogram": ["_bucket", "_sum", "_count"],
            "summary": ["_sum", "_count"],
        }.get(kind, [""])
        names.update(name + suffix for suffix in suffixes)
    return names


def test_every_metric_of_the_dashboard_is_exported() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"\btagcache_[a-z_]+", expr)}
    assert len(used) >= 12
    missing = used - exported_names(scrape())
    assert not missing, f"the dashboard uses metrics the exporter does not have: {sorted(missing)}"


def test_a_dashboard_name_the_exporter_lacks_is_caught() -> None:
    """The check above can fail: a misspelt name is not in the export."""
    assert "tagcache_audit_read_total" not in exported_names(scrape())


def test_the_consistency_families_carry_their_labels() -> None:
    observations.count("audit_reads", ("critical", "stale"))
    observations.count("misses", ("product",), 3)
    observations.observe("invalidation_lag", 0.003, ("commit",))
    text = scrape()
    assert 'tagcache_audit_reads_total{class="critical",outcome="stale"} 1.0' in text
    assert 'tagcache_prefix_misses_total{prefix="product"} 3.0' in text
    assert 'tagcache_invalidation_lag_seconds_bucket{le="0.005",path="commit"} 1.0' in text
    assert 'tagcache_invalidation_lag_seconds_bucket{le="0.001",path="commit"} 0.0' in text


def test_prefix_labels_are_bounded() -> None:
    words = ["".join(chr(97 + int(d)) for d in str(n)) for n in range(300)]  # 300 distinct prefixes
    labels = {observations.prefix_of(f"{word}:1") for word in words}
    assert len(labels) == observations.MAX_PREFIXES + 1
    assert observations.OTHER in labels
    assert observations.prefix_of("shop.product:5") in ("shop.product", observations.OTHER)
