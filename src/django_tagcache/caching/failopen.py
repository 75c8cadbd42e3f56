"""Failing open: what a Redis failure means for a read or a write of an entry.

The caller is served without the cache (its value computed, its write skipped); the failure is
counted, and logged unless the circuit breaker refused the call. Invalidations never fail open:
they raise :class:`~django_tagcache.TagCacheUnavailable` (see :mod:`django_tagcache.caching.api`).
"""

from __future__ import annotations

import logging

from ..core import metrics
from ..core.breaker import CircuitOpen

logger = logging.getLogger("django_tagcache")


def fail_open(what: str, exc: Exception) -> None:
    """Count a call served without the cache; log it unless the circuit breaker refused it.

    While the circuit is open every call is refused at once: the breaker logs its change of state
    once, and logging each refused call would flood the log of a busy site.
    """
    metrics.incr("failures")
    if not isinstance(exc, CircuitOpen):
        logger.warning(
            "django-tagcache: %s failed, Redis unreachable (%s); serving without the cache.", what, exc
        )
