"""The outbox: invalidations written to the database with the change, deleted when Redis confirms.

With ``TAGCACHE['OUTBOX'] = True``, a transaction's tags are also written to a row of
:class:`PendingInvalidation` inside the same transaction: one row per batch (and per 500 tags),
inserted with the batch's first tags and updated only when new tags join it. If the process dies
after the commit, or Redis cannot be reached, the row survives and ``tagcache_drain``, or a
successful invalidation in any process (see :func:`replay_due`), replays it. Replaying is
idempotent: invalidating a tag twice removes nothing the first time did not, so concurrent drains
are safe.

A savepoint rollback can undo a batch's row while the batch keeps its tags: a manual savepoint
(``transaction.savepoint()``) keeps the commit hooks of the writes made after it. Django replaces
its list of commit hooks on every savepoint rollback, so a recorder that sees another list than at
its last write records the batch's whole set again, in a new row (a row written twice is replayed
twice: harmless).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from django.db import DatabaseError, models, transaction
from django.utils import timezone

from ..caching import namespaces, reach
from ..caching.api import TagCache
from ..caching.exceptions import TagCacheUnavailable
from ..caching.origins import invalidating_as
from ..core import metrics, observations

logger = logging.getLogger("django_tagcache")
ROW_TAGS = 500
DRAIN_BATCH = 100


class PendingInvalidation(models.Model):
    """Tags whose invalidation is not yet confirmed by Redis."""

    created = models.DateTimeField(default=timezone.now, db_index=True, editable=False)
    cache = models.CharField(
        max_length=100, blank=True, help_text="Cache alias; blank for TAGCACHE['CACHE']."
    )
    namespace = models.CharField(max_length=64, blank=True, help_text="The namespace the tags belong to.")
    tags = models.JSONField(default=list)
    attempts = models.PositiveIntegerField(default=0, help_text="Failed attempts so far.")
    last_error = models.TextField(blank=True)
    last_attempt = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "django_tagcache"
        ordering = ["created", "pk"]  # noqa: RUF012 - Django reads Meta, it is never mutated
        verbose_name = "pending invalidation"
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"{len(self.tags)} tag(s) pending since {self.created:%Y-%m-%d %H:%M:%S}"


class Recorder:
    """The outbox rows of one batch of tags (one savepoint level of one transaction)."""

    __slots__ = ("current", "hooks", "ids", "recorded", "using")

    def __init__(self, using: str) -> None:
        self.using = using
        self.ids: list[int] = []
        self.current: PendingInvalidation | None = None
        self.recorded: set[str] = set()
        # Django's list of commit hooks at the last write: replaced by every savepoint rollback.
        self.hooks: object = None

    def record(self, tags: set[str]) -> None:
        """Make the rows hold ``tags`` (the batch's whole set); writes only when it grew, or when a
        savepoint rolled back since the last write (it may have undone the rows)."""
        hooks = transaction.get_connection(self.using).run_on_commit
        if hooks is not self.hooks:
            self.hooks = hooks
            if self.recorded:
                self.recorded = set()
                self.current = None  # maybe gone: new rows for the whole set
        new = tags - self.recorded
        if not new:
            return
        manager = PendingInvalidation.objects.using(self.using)
        pending = sorted(new)
        current = self.current
        if current is not None and len(current.tags) < ROW_TAGS:
            room = ROW_TAGS - len(current.tags)
            current.tags = sorted({*current.tags, *pending[:room]})
            manager.filter(pk=current.pk).update(tags=current.tags)
            pending = pending[room:]
        for first in range(0, len(pending), ROW_TAGS):
            self.current = manager.create(
                tags=pending[first : first + ROW_TAGS], namespace=namespaces.current() or ""
            )
            self.ids.append(self.current.pk)
        self.recorded |= new


def confirm(ids: Iterable[int], using: str) -> None:
    """Redis confirmed: delete the rows (after the commit, in autocommit)."""
    ids = list(ids)
    if ids:
        PendingInvalidation.objects.using(using).filter(pk__in=ids).delete()


def failed(ids: Iterable[int], tags: set[str], using: str, error: Exception) -> None:
    """Redis failed: count the attempt on the batch's rows, or write a row for tags that had none.

    An invalidation that failed on some of the cache aliases it reaches, and completed on the
    others, leaves rows for the aliases that failed only.
    """
    now, message = timezone.now(), str(error)[:2000]
    try:
        manager = PendingInvalidation.objects.using(using)
        ids = list(ids)
        if ids:
            _keep(manager, ids, error)
        else:
            for alias in _failed_aliases(error) or ("",):
                manager.create(
                    tags=sorted(tags),
                    cache=alias,
                    namespace=namespaces.current() or "",
                    attempts=1,
                    last_error=message,
                    last_attempt=now,
                )
    except DatabaseError:
        metrics.incr("lost_invalidations")
        logger.exception("django-tagcache: could not record %d tag(s) in the outbox", len(tags))


def _failed_aliases(error: Exception) -> tuple[str, ...] | None:
    """The aliases an invalidation failed on, when it reached others (None: it failed on every one)."""
    aliases = error.aliases if isinstance(error, TagCacheUnavailable) else None
    if aliases is None or set(aliases) >= set(reach.invalidated_aliases()):
        return None
    return aliases


def _keep(manager: Any, ids: list[int], error: Exception) -> None:
    """Count a failed attempt on rows ``ids``; rows for every alias (blank ``cache``) that failed on
    some aliases only are narrowed to those (one row per alias and row)."""
    now, message = timezone.now(), str(error)[:2000]
    failed_on = _failed_aliases(error)
    counted = {"attempts": models.F("attempts") + 1, "last_error": message, "last_attempt": now}
    if failed_on is None:
        manager.filter(pk__in=ids).update(**counted)
        return
    rows = list(manager.filter(pk__in=ids, cache=""))
    for row in rows:
        for alias in failed_on[1:]:
            manager.create(
                created=row.created,
                tags=row.tags,
                cache=alias,
                namespace=row.namespace,
                attempts=row.attempts + 1,
                last_error=message,
                last_attempt=now,
            )
    manager.filter(pk__in=[row.pk for row in rows]).update(cache=failed_on[0])
    manager.filter(pk__in=ids).update(**counted)


def drain(
    using: str = "default", *, limit: int | None = None, cache: Any = None, only: dict[str, str] | None = None
) -> tuple[int, int]:
    """Replay pending rows, oldest first: (rows replayed, rows still failing). Safe to run concurrently.

    ``only`` restricts the rows replayed (field lookups, e.g. ``{"namespace": "acme"}``). Rows go
    in batches of ``DRAIN_BATCH``, each one transaction and one invalidation per cache and
    namespace among its rows.
    """
    replayed = failing = 0
    manager = PendingInvalidation.objects.using(using).filter(**(only or {}))
    while limit is None or replayed + failing < limit:
        with transaction.atomic(using=using):
            rows = manager.order_by("created", "pk")
            if transaction.get_connection(using).features.has_select_for_update_skip_locked:
                rows = rows.select_for_update(skip_locked=True)
            batch = list(
                rows[: DRAIN_BATCH if limit is None else min(DRAIN_BATCH, limit - replayed - failing)]
            )
            if not batch:
                break
            done, failed_now = _replay(batch, manager, cache)
            manager.filter(pk__in=done).delete()
            replayed += len(done)
            failing += failed_now
        if failing:
            break  # Redis is still down: stop here rather than walk the whole table
    return replayed, failing


def _replay(batch: list[PendingInvalidation], manager: Any, cache: Any) -> tuple[list[int], int]:
    """Invalidate a batch's tags, one call per (cache, namespace): (ids done, rows that failed)."""

    groups: dict[tuple[str, str], list[PendingInvalidation]] = {}
    for row in batch:
        groups.setdefault((row.cache, row.namespace), []).append(row)
    done: list[int] = []
    failing = 0
    for (alias, namespace), group in groups.items():
        tags = sorted({tag for row in group for tag in row.tags})
        try:
            with namespaces.in_namespace(namespace or None), invalidating_as("outbox"):
                (cache or TagCache(alias or None)).invalidate_tags(*tags)
        except TagCacheUnavailable as exc:
            failing += len(group)
            _keep(manager, [row.pk for row in group], exc)
        else:
            done += [row.pk for row in group]
            now = timezone.now()
            for row in group:  # from the row's write (in its transaction) to Redis' confirmation
                observations.observe("invalidation_lag", (now - row.created).total_seconds(), ("outbox",))
    return done, failing


#: Seconds between two looks at the outbox by one process while its own invalidations succeed.
REPLAY_INTERVAL = 10.0
#: Most rows one successful invalidation replays; more wait for the next one (not the interval).
REPLAY_ROWS = 1000
_clock = time.monotonic  # replaceable in tests
# Per process and database alias: when this process last looked at the outbox; None (at start,
# and after a failure or a look that left rows) means "at the next successful invalidation".
_looked: dict[str, float | None] = {}


def note_failure(using: str) -> None:
    """An invalidation failed: its rows wait, so look again at the next success."""
    _looked[using] = None


def replay_due(using: str) -> None:
    """After a successful invalidation: replay pending rows, at most every ``REPLAY_INTERVAL`` seconds.

    Rows another process left (it died between its commit and its invalidation, or its Redis
    failed) are so replayed within about ``REPLAY_INTERVAL`` seconds by any process whose
    invalidations succeed; a look that finds nothing costs one query.
    """
    now, last = _clock(), _looked.get(using)
    if last is not None and now - last < REPLAY_INTERVAL:
        return
    _looked[using] = now
    try:
        if not PendingInvalidation.objects.using(using).exists():
            return
        replayed, failing = drain(using, limit=REPLAY_ROWS)
    except DatabaseError:
        logger.exception("django-tagcache: could not replay the outbox on %r", using)
        _looked[using] = None
        return
    if failing or replayed >= REPLAY_ROWS:
        _looked[using] = None
