"""Prometheus gauges of each consumer group's lag, read from the source streams at each scrape.

Registered by ``AppConfig.ready()`` beside the counters of :mod:`django_tagcache.ops.prometheus`
when ``TAGCACHE['EVENTS']`` names sources. The lag is the group's, the same in every process:
give it one scrape target (``max`` across targets, never ``sum``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..core.exporting import Registration
from .lag import sources_status

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

GAUGES = {
    "behind": "Events of the source stream not yet applied by this service's consumer group.",
    "seconds_behind": "Age of the oldest event not yet applied (source's clock), 0 when caught up.",
    "pending": "Events delivered to a consumer and not yet acknowledged.",
    "dead_letter_length": "Entries in the source's dead-letter stream.",
    "applied": "Events applied by the group, all consumers together (kept in the source's Redis).",
    "duplicates": "Events the group found nothing left to apply for.",
    "dead_lettered": "Events the group moved to the dead-letter stream.",
}

KEYS = {"behind": "events_behind"}  # gauge -> field of group_status(), where they differ


class EventLagCollector:
    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        statuses = [status for status in sources_status() if "error" not in status]
        for name, description in GAUGES.items():
            # "group" in the name: the process's own counters (tagcache_events_applied_total, ...)
            # are exported beside these, by ops/prometheus.py.
            gauge = GaugeMetricFamily(
                f"tagcache_events_group_{name}", description, labels=["source", "group"]
            )
            for status in statuses:
                gauge.add_metric([status["source"], status["group"]], float(status[KEYS.get(name, name)]))
            yield gauge


_registration = Registration(EventLagCollector)


def install(registry: CollectorRegistry | None = None) -> bool:
    """Register the collector (with prometheus-client's default registry unless given); idempotent.

    Returns False, and does nothing, when prometheus-client is not installed.
    """
    return _registration.install(registry)


def uninstall() -> None:
    """Unregister the collector that :func:`install` registered, if any."""
    _registration.uninstall()
