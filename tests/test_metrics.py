"""Metrics: the in-process counters and timings, their Prometheus export, and OpenTelemetry spans."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from django_tagcache import TagCache
from django_tagcache.core import metrics, telemetry
from django_tagcache.ops import prometheus


def test_counters_follow_what_the_cache_did(tc: TagCache) -> None:
    tc.get("k")
    tc.get_or_set("k", lambda: 1, tags=["a"])
    tc.get("k")
    tc.set("j", 2, tags=["a", "b"])
    assert tc.invalidate_tags("a", "b") == 2
    counts = metrics.snapshot()
    assert (counts["misses"], counts["hits"], counts["stores"]) == (2, 1, 2)
    assert (counts["invalidations"], counts["tags_invalidated"], counts["entries_removed"]) == (1, 2, 2)
    assert counts["refused_writes"] == counts["failures"] == counts["retries"] == 0


def test_timings() -> None:
    metrics.observe_duration("invalidate", 0.5)
    metrics.observe_duration("invalidate", 0.25)
    with pytest.raises(RuntimeError), metrics.timed("write"):
        raise RuntimeError  # a failed call is timed too
    with metrics.timed("write"):
        pass
    timings = metrics.timings()
    assert timings["invalidate"] == (2, 0.75)
    assert timings["write"][0] == 2
    assert timings["write"][1] >= 0
    assert list(timings) == ["invalidate", "write"]
    metrics.reset()
    assert metrics.timings() == {}
    assert set(metrics.snapshot().values()) == {0}


# --- Prometheus --------------------------------------------------------------------------------------------


def test_the_collector_exports_counters_and_timings() -> None:
    registry = CollectorRegistry()
    registry.register(prometheus.TagCacheCollector())
    metrics.incr_many({"hits": 3, "refused_writes": 1})
    metrics.observe_duration("get", 0.5)
    metrics.observe_duration("get", 0.25)
    assert registry.get_sample_value("tagcache_hits_total") == 3
    assert registry.get_sample_value("tagcache_refused_writes_total") == 1
    assert registry.get_sample_value("tagcache_misses_total") == 0
    assert registry.get_sample_value("tagcache_redis_seconds_count", {"op": "get"}) == 2
    assert registry.get_sample_value("tagcache_redis_seconds_sum", {"op": "get"}) == 0.75
    text = generate_latest(registry).decode()
    assert "# HELP tagcache_refused_writes_total Writes refused because a tag was invalidated" in text
    assert "# TYPE tagcache_redis_seconds summary" in text
    for name in metrics.COUNTERS:
        assert f"tagcache_{name}_total " in text


def test_ready_registered_the_collector_with_the_default_registry(tc: TagCache) -> None:
    tc.get("missing")
    assert REGISTRY.get_sample_value("tagcache_misses_total") == 1
    assert prometheus.install() is True  # idempotent: registering twice would raise
    assert REGISTRY.get_sample_value("tagcache_misses_total") == 1


def test_uninstall_and_install_on_another_registry() -> None:
    prometheus.uninstall()
    try:
        assert REGISTRY.get_sample_value("tagcache_hits_total") is None
        registry = CollectorRegistry()
        assert prometheus.install(registry) is True
        metrics.incr("hits")
        assert registry.get_sample_value("tagcache_hits_total") == 1
        prometheus.uninstall()
        assert registry.get_sample_value("tagcache_hits_total") is None
    finally:
        prometheus.install()


# --- OpenTelemetry -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def exporter() -> InMemorySpanExporter:
    # A process has one global TracerProvider, settable once: one for the whole test session.
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    return spans


@pytest.fixture
def spans(exporter: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
    exporter.clear()
    yield exporter
    exporter.clear()


def test_a_span_per_call_with_attributes(spans: InMemorySpanExporter) -> None:
    with telemetry.span("invalidate", tags=3, cache="default", skipped=None) as span:
        assert span is not None
    [finished] = spans.get_finished_spans()
    assert finished.name == "tagcache.invalidate"
    assert finished.kind == trace.SpanKind.CLIENT
    assert dict(finished.attributes or {}) == {"db.system.name": "redis", "tags": 3, "cache": "default"}


def test_a_failing_call_is_recorded_on_its_span(spans: InMemorySpanExporter) -> None:
    with pytest.raises(ConnectionError), telemetry.span("write"):
        raise ConnectionError("down")
    [finished] = spans.get_finished_spans()
    assert finished.status.status_code == trace.StatusCode.ERROR
    assert finished.events[0].name == "exception"


def test_reads_are_traced_as_documented(spans: InMemorySpanExporter) -> None:
    from django_tagcache import tagcache

    tagcache.set("k", 1, tags=["t"])
    spans.clear()
    assert tagcache.get("k") == 1
    assert tagcache.get_or_set("k", lambda: 2, tags=["t"]) == 1
    assert [span.name for span in spans.get_finished_spans()] == ["tagcache.read", "tagcache.read"]


def test_spans_nest_under_the_caller(spans: InMemorySpanExporter) -> None:
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("request"), telemetry.span("read"):
        pass
    read, request = spans.get_finished_spans()
    assert read.parent is not None
    assert read.parent.span_id == request.context.span_id


def test_without_opentelemetry_a_span_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "_tracer", False)  # what _get_tracer() finds without the package
    with telemetry.span("read", tags=1) as span:
        assert span is None
    telemetry._reset()
    assert telemetry._get_tracer() is not False


def test_span_import_failure_is_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    telemetry._reset()
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # what `import` then finds: ImportError
    try:
        with telemetry.span("read") as span:
            assert span is None
        assert telemetry._tracer is False
    finally:
        telemetry._reset()
