"""Invalidate the tags of committed writes now: Redis first, then the outbox's bookkeeping."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence

from ..caching.api import tagcache
from ..caching.exceptions import TagCacheUnavailable
from ..caching.origins import invalidating_as
from ..conf import conf
from ..core import metrics, observations
from ..core.breaker import CircuitOpen
from .ownsaves import Saved, dating

logger = logging.getLogger("django_tagcache")


def flush(
    tags: set[str],
    using: str,
    rows: Sequence[int] = (),
    saved: Iterable[Saved] = (),
    committed: float | None = None,
) -> None:
    """Invalidate now. A write has already committed, so a Redis failure is logged, not raised.

    With the outbox on, the batch's rows are deleted once Redis confirms, and a failure is
    recorded on them (or in a new row, for a write made outside a transaction) for a later drain.
    The instances that ``saved`` themselves are dated by the invalidation (see ownsaves.py).
    ``committed`` (``time.monotonic()``) is when the commit hooks began, for the lag histogram.
    """
    if not tags:
        return
    outbox = conf.OUTBOX
    started = time.monotonic() if committed is None else committed
    try:
        # Tags made by the registry are valid by construction: skip validating them again.
        with dating(saved), invalidating_as("orm"):
            tagcache.invalidate_normalized(tuple(sorted(tags)))
        observations.observe("invalidation_lag", time.monotonic() - started, ("commit",))
    except TagCacheUnavailable as exc:
        if outbox:
            from .outbox import failed, note_failure

            note_failure(using)
            failed(rows, tags, using, exc)
            # While the circuit is open every commit lands here; the breaker already said why.
            log = logger.debug if isinstance(exc.__cause__, CircuitOpen) else logger.warning
            log(
                "django-tagcache: %d tag(s) written on database %r could not be invalidated (%s); they wait "
                "in the outbox for the next successful invalidation or tagcache_drain.",
                len(tags),
                using,
                exc,
            )
            return
        metrics.incr("lost_invalidations")
        logger.error(
            # The error goes in parentheses: its own text may end with a full stop (redis-py's do).
            "django-tagcache: %d tag(s) written on database %r could not be invalidated (%s); entries under "
            "them may be stale until they expire. Enable TAGCACHE['OUTBOX'] to retry such invalidations.",
            len(tags),
            using,
            exc,
        )
        return
    if outbox:
        from .outbox import confirm, replay_due  # a model module: imported only once it is needed

        confirm(rows, using)
        replay_due(using)
