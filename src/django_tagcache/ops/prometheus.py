"""Prometheus export of the in-process metrics, when ``prometheus-client`` is installed.

A custom collector reads :func:`django_tagcache.core.metrics.snapshot` at each scrape, so the hot
path pays nothing for Prometheus. ``AppConfig.ready()`` registers it with prometheus-client's
default registry unless ``TAGCACHE['PROMETHEUS']`` is False. The numbers are the process's own:
scrape every worker (each one's ``/metrics``), and let Prometheus sum them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..core import metrics
from ..core.exporting import Registration
from . import consistency

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

#: HELP text of each counter; ``tagcache_<name>_total`` in the exposition.
DESCRIPTIONS = {
    "hits": "Reads that found their entry.",
    "misses": "Reads that found no entry.",
    "stores": "Entries written.",
    "refused_writes": "Writes refused because a tag was invalidated after the miss (stale write-back).",
    "oversized": "Computed values not cached because they exceeded MAX_ENTRY_SIZE.",
    "invalidations": "Invalidation calls that reached Redis.",
    "tags_invalidated": "Tags invalidated, summed over the calls.",
    "entries_removed": "Cache entries removed by invalidations.",
    "retries": "Redis calls retried after a connection error or timeout.",
    "failures": "Redis calls that failed after their retries (reads then fail open).",
    "lost_invalidations": "Invalidations that could not reach Redis and were not kept for a retry.",
    "audit_failures": "Purges whose audit record could not be written to the database.",
    "unreadable": "Entries read as misses because this version cannot read their payload.",
    "unpicklable": "Computed values served but not cached because they cannot be pickled.",
    "events_applied": "Events of other services applied by a consumer in this process.",
    "events_duplicate": "Events with nothing left to apply (duplicates, or covered by a newer event).",
    "events_dead_lettered": "Events moved to the dead-letter stream by a consumer in this process.",
    "near_hits": "Reads served by the near cache (L1).",
    "near_misses": "Reads the near cache could have served and did not hold.",
    "near_evictions": "Near-cache entries evicted to stay within MAX_ENTRIES and MAX_BYTES.",
    "near_pushes": "Keys named by Redis' invalidation pushes to the near cache.",
    "near_flushes": "Times the near cache was emptied (tracking connection lost or restored, FLUSHDB).",
    "near_restarts": "Redis restarts (run_id changes) seen by the near cache's tracking connection.",
    "request_hits": "Reads served by the request cache (L0).",
}

#: HELP text of each gauge; ``tagcache_<name>`` in the exposition.
GAUGES = {
    "near_entries": "Entries held by the near cache (L1) now.",
    "near_bytes": "Bytes held by the near cache (L1) now (keys, payloads and overhead).",
}

# The collector registered by install(), so that a second call does not register it twice.


class TagCacheCollector:
    """Yields every counter of :mod:`django_tagcache.core.metrics`, and the time spent per Redis operation."""

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

        for name, value in metrics.snapshot().items():
            description = DESCRIPTIONS.get(name, f"django-tagcache counter {name!r}.")
            yield CounterMetricFamily(f"tagcache_{name}", description, value=value)
        for name, value in metrics.gauges().items():
            yield GaugeMetricFamily(f"tagcache_{name}", GAUGES.get(name, name), value=value)
        timing = SummaryMetricFamily(
            "tagcache_redis_seconds",
            "Time spent in Redis calls, per operation, retries included.",
            labels=["op"],
        )
        for op, (count, seconds) in metrics.timings().items():
            timing.add_metric([op], count_value=count, sum_value=seconds)
        yield timing
        # Stale reads, invalidation lag, misses per prefix, failing open (docs/observability.md).
        yield from consistency.collect()


_registration = Registration(TagCacheCollector)


def install(registry: CollectorRegistry | None = None) -> bool:
    """Register the collector (with prometheus-client's default registry unless given); idempotent.

    Returns False, and does nothing, when prometheus-client is not installed.
    """
    return _registration.install(registry)


def uninstall() -> None:
    """Unregister the collector that :func:`install` registered, if any."""
    _registration.uninstall()
