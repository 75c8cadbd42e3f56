"""OpenTelemetry spans around Redis work, when ``opentelemetry-api`` is installed.

Without it, :func:`span` is a no-op context manager. With the API but no SDK configured, the
API's own no-op tracer is used: spans cost next to nothing until a project configures tracing.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import CoroutineType
from typing import Any, TypeVar

from . import metrics
from .bridge import run_sync, settle

T = TypeVar("T")

# The tracer, looked up at first use: None not yet, False when opentelemetry-api is missing.
# A tracer taken before the project sets its TracerProvider is a proxy that follows it later.
_tracer: Any = None


def _get_tracer() -> Any:
    global _tracer
    if _tracer is None:
        try:
            from opentelemetry import trace
        except ImportError:
            _tracer = False
        else:
            _tracer = trace.get_tracer("django_tagcache")
    return _tracer


def _reset() -> None:
    """Forget the tracer (for tests)."""
    global _tracer, _trace
    _tracer = _trace = None


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """Run the block in a client span ``tagcache.<name>``; yields the span, or None without OpenTelemetry.

    ``attributes`` become span attributes (None values are left out); ``db.system.name`` is
    "redis". An exception leaving the block is recorded on the span and re-raised.
    """
    tracer = _get_tracer()
    if not tracer:
        yield None
        return
    from opentelemetry.trace import SpanKind

    values = {"db.system.name": "redis"}
    values.update({key: value for key, value in attributes.items() if value is not None})
    with tracer.start_as_current_span(f"tagcache.{name}", kind=SpanKind.CLIENT, attributes=values) as current:
        yield current


_trace: Any = None  # the opentelemetry.trace module, once imported


def tracing() -> bool:
    """Whether a project has set a real tracer provider (not the API's placeholder).

    The placeholder's spans record nothing yet still cost some 12 us each (context attach and
    detach), too much for every write. This check is on every read's path, so it reads the API's
    global provider itself: ``get_tracer_provider()`` looks up an environment variable on every
    call while none is set. That variable is honoured once, at the first check.
    """
    trace = _trace
    if trace is None:
        if not (_tracer if _tracer is not None else _get_tracer()):
            return False
        trace = _load_trace()
    provider = trace._TRACER_PROVIDER  # None until set (the API sets it once per process)
    return provider is not None and not isinstance(
        provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
    )


def _load_trace() -> Any:
    global _trace
    from opentelemetry import trace

    # A provider named by OTEL_PYTHON_TRACER_PROVIDER is installed by the API's first call.
    trace.get_tracer_provider()
    _trace = trace
    return trace


def traced(op: str, func: Callable[[], T], **attributes: Any) -> T:
    """Run ``func`` as one Redis operation: timed in the metrics, and in a span when tracing is configured."""
    result: T = run_sync(timed(op, func, **attributes))
    return result


async def timed(op: str, func: Callable[[], Any], **attributes: Any) -> Any:
    """:func:`traced` for either transport: ``func`` blocks, or returns an awaitable (awaited here)."""
    started = time.perf_counter()
    try:
        if not tracing():
            result = func()  # inline, not settle(): this is every read's path
            if type(result) is CoroutineType:  # the asyncio transport's, without inspect's calls
                return await result
            return (await result) if inspect.isawaitable(result) else result
        with span(op, **attributes):
            return await settle(func())
    finally:
        metrics.observe_duration(op, time.perf_counter() - started)
