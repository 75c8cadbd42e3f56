"""Shadow reads: a sampled share of cache hits recomputed off the request's path, and compared.

With ``TAGCACHE['AUDIT']['SAMPLE_RATE']`` above 0, a hit of ``get_or_set`` (with a callable) or
of an ``@cached`` function is, with that probability, handed to the background thread
(:mod:`.background`): the request returns at once. The thread recomputes the value, nested
cached calls bypassing the cache, and compares it with the value served (``==``, or the
``COMPARE`` hook). The outcome of the read:

- ``fresh``: the values agree;
- ``late``: they differ, but the entry served has since been invalidated or replaced: the cache
  caught up within ``BUDGET`` seconds of serving it;
- ``stale``: they differ and the entry is still in Redis, unchanged, ``BUDGET`` seconds after it
  was served (checked again then, if the first check came sooner);
- ``error``: the recompute or the compare raised, or Redis could not be read: nothing is known.

Outcomes are counted per staleness class (the strictest of the entry's tags), per tag prefix
for mismatches, with the served entry's age; a stale read is logged with its key and tags (each
key once, at most one line per ``LOG_INTERVAL``). Nothing here raises into the request, changes
what it returns, or blocks it: a full queue drops the sample (``audit_dropped``).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ..conf import conf
from ..core import observations, serialization, shadow_records
from ..core.retry import RETRYABLE
from . import background, staleness
from .namespaces import current as current_namespace
from .namespaces import in_namespace

if TYPE_CHECKING:
    from ..conf import AuditSettings
    from ..core.store import TagStore

logger = logging.getLogger("django_tagcache")

Compare = Callable[[Any, Any], bool]


class Origin(NamedTuple):
    """Where a cached value comes from: a ``get_or_set`` key, or an ``@cached`` function."""

    #: The user's key (``get_or_set``) or the function's dotted name (``@cached``).
    name: str
    #: ``get_or_set`` was given a callable: there is something to recompute.
    auditable: bool = True
    #: An ``@cached`` function's own compare hook (``audit_compare=``).
    compare: Compare | None = None
    #: The function's dotted name when it is an ``@cached`` function (kept for tagcache_verify).
    function: str | None = None

    @property
    def label(self) -> str:
        """The bounded metrics label: the function's name, or the key's prefix."""
        if self.function is not None:
            return observations.bounded(self.function)
        return observations.prefix_of(self.name)


class _Local(threading.local):
    bypass = False


_local = _Local()
# The rate for the TAGCACHE dict it was read from: a hit must not parse the settings each time.
_rate: tuple[object, float] = (object(), 0.0)
_random: Callable[[], float] = random.random  # replaceable: tests seed it
# Keys of stale reads already logged (bounded), and when the last line was written.
_logged: set[str] = set()
_last_log = [0.0]
# @cached writes seen per function, for the reservoir of argument sets (see remember()).
_writes: dict[str, int] = {}


def bypassing() -> bool:
    """Whether this thread is recomputing for the auditor: cached calls must not use the cache."""
    return _local.bypass


@contextmanager
def bypass() -> Iterator[None]:
    """Within the block, this thread's ``get_or_set`` and ``@cached`` compute without the cache."""
    before, _local.bypass = _local.bypass, True
    try:
        yield
    finally:
        _local.bypass = before


def sample_rate() -> float:
    """``AUDIT['SAMPLE_RATE']``, read again only when settings.TAGCACHE is another dict.

    A malformed ``AUDIT`` samples nothing: the system check reports it (E001), not each read.
    """
    global _rate
    raw = getattr(settings, "TAGCACHE", None)
    if _rate[0] is not raw:
        try:
            rate = conf.AUDIT.sample_rate
        except ImproperlyConfigured:
            rate = 0.0
        _rate = (raw, rate)
    return _rate[1]


def reset_rate() -> None:
    """Read ``SAMPLE_RATE`` again at the next hit (settings changed)."""
    global _rate
    _rate = (object(), 0.0)


def reset() -> None:
    """Forget the cached rate, the logged keys and the writes seen (tests)."""
    reset_rate()
    _logged.clear()
    _last_log[0] = 0.0
    _writes.clear()


class _Read(NamedTuple):
    store: TagStore
    entry: str
    raw: bytes
    served: Any
    compute: Callable[[], Any]
    tags: Callable[[], tuple[str, ...]]
    origin: Origin
    namespace: str | None
    served_at: float


def offer(
    store: TagStore,
    entry: str,
    raw: bytes,
    served: Any,
    compute: Callable[[], Any],
    tags: Callable[[], tuple[str, ...]],
    origin: Origin | None,
) -> None:
    """On a hit: maybe queue a shadow read of it (see the module docstring). Never raises."""
    if origin is None or not origin.auditable:
        return
    try:
        rate = sample_rate()
        if rate <= 0 or _random() >= rate:
            return
        read = _Read(store, entry, raw, served, compute, tags, origin, current_namespace(), time.time())
        audit = conf.AUDIT
        if not background.submit(lambda: _check(read, audit, first=True), limit=audit.queue_size):
            observations.count("audit_dropped")
    except Exception:  # a request is never failed by its audit
        logger.exception("django-tagcache: could not queue a shadow read")


def remember(store: TagStore, entry: str, origin: Origin | None, call: object) -> None:
    """After an ``@cached`` write: maybe keep its arguments for tagcache_verify (in the background).

    Reservoir sampling per function and process: the first ``VERIFY_SAMPLES`` writes are kept, the
    n-th after them with probability ``VERIFY_SAMPLES / n``; so a busy function costs next to
    nothing once its sample is full, and the sample stays spread over everything it cached.
    """
    if origin is None or origin.function is None:
        return
    try:
        audit = conf.AUDIT
        if audit.verify_samples <= 0:
            return
        seen = _writes[origin.function] = _writes.get(origin.function, 0) + 1
        if seen > audit.verify_samples and _random() * seen >= audit.verify_samples:
            return
        record = (entry, current_namespace(), call)
        function = origin.function
        task = lambda: shadow_records.remember_call(store, function, entry, record, audit.verify_samples)  # noqa: E731
        if not background.submit(task, limit=audit.queue_size):
            observations.count("audit_dropped")
    except Exception:
        logger.exception("django-tagcache: could not keep a call for tagcache_verify")


def agree(compare: Compare | None, served: Any, fresh: Any) -> bool:
    """Whether a served value and a recomputed one agree: by ``compare``, else by ``==``."""
    return bool(compare(served, fresh)) if compare is not None else bool(served == fresh)


def _check(read: _Read, audit: AuditSettings, *, first: bool) -> None:
    """Recompute, compare, and record the outcome (first check, or the one after BUDGET)."""
    try:
        with in_namespace(read.namespace), bypass():
            fresh = read.compute()
    except Exception as exc:
        return _error(read, "recompute", exc)
    try:
        same = agree(read.origin.compare or audit.compare, read.served, fresh)
    except Exception as exc:
        return _error(read, "compare", exc)
    if same:
        return _record(read, "fresh" if first else "late")
    try:
        now_raw = read.store.get(read.entry)
    except RETRYABLE as exc:
        return _error(read, "redis", exc)
    if now_raw != read.raw:
        return _record(read, "late")
    wait = read.served_at + audit.budget - time.time()
    if first and wait > 0:
        if not background.submit(
            lambda: _check(read, audit, first=False), limit=audit.queue_size, delay=wait
        ):
            observations.count("audit_dropped")
        return None
    return _record(read, "stale", log_interval=audit.log_interval)


def _tags(read: _Read) -> tuple[str, ...]:
    try:
        with in_namespace(read.namespace):
            return read.tags()
    except Exception:
        return ()


def _strictest(tags: tuple[str, ...]) -> str:
    """The class of the tag with the smallest budget; the default class for an entry without tags."""
    if not tags:
        return conf.STALENESS.default
    return staleness.class_of(min(tags, key=staleness.budget_ms))


def _record(read: _Read, outcome: str, *, log_interval: float = 0.0) -> None:
    tags = _tags(read)
    cls = _strictest(tags)
    observations.count("audit_reads", (cls, outcome))
    written = serialization.written_at(read.raw)
    age = None if written is None else max(0.0, read.served_at - written)
    if age is not None:
        observations.observe("audit_entry_age", age, (outcome,))
    if outcome in ("late", "stale"):
        for prefix in sorted({observations.prefix_of(tag) for tag in tags} or {read.origin.label}):
            observations.count("audit_mismatches", (cls, prefix, outcome))
    try:
        shadow_records.add_outcome(read.store, cls, outcome, read.served_at)
    except RETRYABLE:
        observations.count("audit_unrecorded")
    if outcome == "stale":
        _log_stale(read, tags, age, log_interval)


def _log_stale(read: _Read, tags: tuple[str, ...], age: float | None, interval: float) -> None:
    now = time.monotonic()
    if read.entry in _logged or now - _last_log[0] < interval:
        return
    if len(_logged) < 10_000:
        _logged.add(read.entry)
    _last_log[0] = now
    logger.warning(
        "django-tagcache: stale read: %s (%s) served a value that differs from the database's, "
        "and the entry was not invalidated; its tags: %s; entry age: %s.",
        read.entry,
        read.origin.name,
        ", ".join(tags) or "(none)",
        "unknown" if age is None else f"{age:.1f} s",
    )


def _error(read: _Read, kind: str, exc: BaseException) -> None:
    observations.count("audit_errors", (kind,))
    _record_error(read)
    logger.info("django-tagcache: shadow read of %s failed (%s): %r", read.entry, kind, exc)


def _record_error(read: _Read) -> None:
    cls = _strictest(_tags(read))
    observations.count("audit_reads", (cls, "error"))
    try:
        shadow_records.add_outcome(read.store, cls, "error", read.served_at)
    except RETRYABLE:
        observations.count("audit_unrecorded")
