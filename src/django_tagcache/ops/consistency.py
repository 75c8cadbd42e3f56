"""Prometheus families of the consistency observations, and the age of the oldest outbox row.

Read at each scrape from :mod:`django_tagcache.core.observations` (see docs/observability.md
for what each one means); the Grafana dashboard in docs/ is built on exactly these names.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.db import DatabaseError, connections, router
from django.utils import timezone

from ..conf import conf
from ..core import observations

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

logger = logging.getLogger("django_tagcache")

#: Counter name in observations -> (exported name, label names, HELP).
COUNTERS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "audit_reads": (
        "tagcache_audit_reads",
        ("class", "outcome"),
        "Sampled hits recomputed by the stale-read auditor, per staleness class and outcome "
        "(fresh, late, stale, error).",
    ),
    "audit_mismatches": (
        "tagcache_audit_mismatches",
        ("class", "prefix", "outcome"),
        "Audited hits that differed from a recompute (late or stale), per tag prefix of the entry.",
    ),
    "audit_errors": (
        "tagcache_audit_errors",
        ("kind",),
        "Shadow reads that could not conclude: the recompute, the compare hook or Redis failed.",
    ),
    "audit_dropped": ("tagcache_audit_dropped", (), "Shadow reads dropped because the audit queue was full."),
    "audit_unrecorded": (
        "tagcache_audit_unrecorded",
        (),
        "Audit outcomes counted here but not in Redis (for the SLO report): Redis was unreachable.",
    ),
    "misses": (
        "tagcache_prefix_misses",
        ("prefix",),
        "Misses of get_or_set and @cached per key prefix (or function): rate() shows miss storms.",
    ),
}

#: Histogram name in observations -> (exported name, label names, HELP).
HISTOGRAMS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "audit_entry_age": (
        "tagcache_audit_entry_age_seconds",
        ("outcome",),
        "Age of the entries the auditor checked when they were served, per outcome.",
    ),
    "invalidation_lag": (
        "tagcache_invalidation_lag_seconds",
        ("path",),
        "From a commit (path=commit) or an outbox row's write (path=outbox) to its invalidation "
        "applied in Redis.",
    ),
    "miss_compute": (
        "tagcache_miss_compute_seconds",
        ("prefix",),
        "Time spent computing values on misses, per key prefix (or function).",
    ),
    "failopen_compute": (
        "tagcache_failopen_compute_seconds",
        (),
        "Time spent computing values for callers served without Redis (failing open).",
    ),
}


def collect() -> Iterator[Metric]:
    """Every consistency family, for the Prometheus collector."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    for source, (name, labels, description) in COUNTERS.items():
        counter = CounterMetricFamily(name, description, labels=list(labels))
        for values, value in sorted(observations.counters(source).items()):
            counter.add_metric(list(values), value)
        yield counter
    bounds = [str(bound) for bound in observations.BUCKETS] + ["+Inf"]
    for source, (name, labels, description) in HISTOGRAMS.items():
        histogram = HistogramMetricFamily(name, description, labels=list(labels))
        for values, (cumulative, total) in sorted(observations.histograms(source).items()):
            histogram.add_metric(list(values), list(zip(bounds, cumulative, strict=True)), total)
        yield histogram
    yield GaugeMetricFamily(
        "tagcache_audit_sample_rate",
        "TAGCACHE['AUDIT']['SAMPLE_RATE']: the share of hits the auditor recomputes.",
        value=_sample_rate(),
    )
    oldest = GaugeMetricFamily(
        "tagcache_outbox_oldest_pending_seconds",
        "Age of the oldest outbox row still waiting for Redis (0: none); only with OUTBOX on.",
    )
    age = oldest_pending_age() if _outbox_on() else None
    if age is not None:
        oldest.add_metric([], age)
    yield oldest


def _sample_rate() -> float:
    try:
        return conf.AUDIT.sample_rate
    except Exception:  # a bad setting is the system check's to report, not the scrape's
        return 0.0


def _outbox_on() -> bool:
    try:
        return conf.OUTBOX
    except Exception:
        return False


def oldest_pending_age(using: str | None = None) -> float | None:
    """Seconds since the oldest outbox row was written; 0.0 with none; None if the database fails.

    A scrape may run in a thread of its own: a connection opened here is closed again, and one
    that a request holds (inside its transaction, maybe) is left as it was.
    """
    model: Any = apps.get_model("django_tagcache", "PendingInvalidation")
    alias = using or router.db_for_read(model)
    connection = connections[alias]
    was_open = connection.connection is not None
    try:
        created = model.objects.using(alias).order_by("created").values_list("created", flat=True).first()
    except DatabaseError as exc:
        logger.warning("django-tagcache: could not read the outbox's oldest row: %s", exc)
        return None
    finally:
        if not was_open and not connection.in_atomic_block:
            connection.close()
    return 0.0 if created is None else max(0.0, (timezone.now() - created).total_seconds())
