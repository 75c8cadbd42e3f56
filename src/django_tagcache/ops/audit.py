"""The audit log: who purged which tags, when, and how many entries went.

Purges made from the admin or a management command go through :func:`purge_tags`, which writes
one :class:`~django_tagcache.models.PurgeRecord` per purge. Any other call of the API that passes
``source=`` is recorded by :func:`on_tags_invalidated`, a ``tags_invalidated`` receiver connected
in ``AppConfig.ready()``. Routine invalidations caused by model writes pass no source: they are
counted in the metrics, not recorded row by row.

A record is written after Redis has done the work, or failed part way through it (the record
then says so in ``error``), and writing it never raises: a database error is logged and counted
(``audit_failures``), so a broken audit never hides or undoes a purge. Receivers of the signals
run through ``send_robust``: one that raises is logged and cannot undo or shrink a record.
"""

from __future__ import annotations

import getpass
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import router, transaction
from django.utils import timezone

from ..caching import namespaces
from ..caching.api import TagCache
from ..caching.exceptions import TagCacheUnavailable
from ..caching.tags import normalize_tags
from ..conf import conf
from ..core import metrics
from . import outlive
from .records import MAX_RECORDED_TAGS, PurgeRecord

logger = logging.getLogger("django_tagcache")

#: Tags per invalidation call in :func:`purge_tags`: keeps each script call short.
PURGE_BATCH = 500


@dataclass(frozen=True)
class Actor:
    user: Any  # a user instance (AUTH_USER_MODEL), or None
    username: str


# Who the purges of the current thread or task are made for (see acting_as), and whether
# purge_tags() is running there, which records its purge itself, once, at the end.
_actor: ContextVar[Actor | None] = ContextVar("django_tagcache_actor", default=None)
_in_purge: ContextVar[bool] = ContextVar("django_tagcache_in_purge", default=False)


@contextmanager
def acting_as(user: Any = None, username: str = "") -> Iterator[None]:
    """Attribute the purges recorded inside the block to ``user``, or to a free-text ``username``."""
    token = _actor.set(Actor(_real_user(user), username or _name_of(user)))
    try:
        yield
    finally:
        _actor.reset(token)


def os_username() -> str:
    """The operating-system user running this process, as the audit log names it."""
    try:
        return f"os:{getpass.getuser()}"
    except (OSError, KeyError):  # no passwd entry for this uid (some containers)
        return f"os:uid={os.getuid()}" if hasattr(os, "getuid") else "os:unknown"


@dataclass(frozen=True)
class Purge:
    """What :func:`purge` did: entries removed, the audit record (None if it could not be
    written), and the error that stopped it part way (None if it completed)."""

    removed: int
    record: PurgeRecord | None
    error: TagCacheUnavailable | None


def purge(tags: object, *, source: str, user: Any = None, alias: str | None = None) -> Purge:
    """Invalidate ``tags`` as one audited purge, and say what happened; never raises for Redis.

    ``tags`` is anything :func:`~django_tagcache.normalize_tags` accepts (bad tags raise
    TypeError/ValueError before Redis is touched). Tags are sent in batches of
    :data:`PURGE_BATCH`; the ``tags_invalidated`` signal carries ``source`` for each batch, and
    one record is written for the whole purge, in the current namespace. If a batch fails (Redis
    unreachable, a connection cut while a big tag drains), the record lists every tag sent to
    Redis, the failed batch included (it may be partly done), and says why in ``error``.
    """
    tag_list = normalize_tags(tags)
    cache = TagCache(alias)
    sent: list[str] = []
    removed = 0
    error: TagCacheUnavailable | None = None
    token = _in_purge.set(True)
    try:
        for start in range(0, len(tag_list), PURGE_BATCH):
            batch = tag_list[start : start + PURGE_BATCH]
            sent += batch  # before the call: a call that fails may have done part of its work
            removed += cache.invalidate_normalized(batch, source=source)
    except TagCacheUnavailable as exc:
        error = exc
    finally:
        _in_purge.reset(token)
    written = None
    if sent:
        why = "" if error is None else f"{error} (the last {len(batch)} tag(s) may be partly invalidated)"
        written = record(sent, removed, source=source, cache=alias or conf.CACHE, user=user, error=why)
    return Purge(removed, written, error)


def purge_tags(tags: object, *, source: str, user: Any = None, alias: str | None = None) -> int:
    """Invalidate ``tags`` as one audited purge (see :func:`purge`); returns the entries removed.

    A purge that fails part way is recorded as such (see :func:`purge`), then its
    :class:`~django_tagcache.TagCacheUnavailable` propagates.
    """
    done = purge(tags, source=source, user=user, alias=alias)
    if done.error is not None:
        raise done.error
    return done.removed


def on_tags_invalidated(
    sender: object, tags: tuple[str, ...], removed: int, source: str | None, **kwargs: Any
) -> None:
    """Record an invalidation that named its ``source`` (not those of purge_tags(): it records its own)."""
    if source is None or _in_purge.get():
        return
    record(tags, removed, source=source)


def on_invalidation_failed(
    sender: object, tags: tuple[str, ...], source: str | None, error: Exception, **kwargs: Any
) -> None:
    """Record a failed invalidation that named its ``source``: it may have removed entries."""
    if source is None or _in_purge.get():
        return
    record(tags, 0, source=source, error=f"{error} (the tags may be partly invalidated)")


def record(
    tags: Iterable[str],
    removed: int,
    *,
    source: str,
    cache: str = "",
    user: Any = None,
    error: str = "",
) -> PurgeRecord | None:
    """Write one audit record; returns it, or None if the database refused (logged and counted).

    Without ``user``, the actor of the enclosing :func:`acting_as` block is recorded, if any.
    The namespace is the current one. The write is its own savepoint: a failure leaves an
    enclosing transaction usable. Inside a transaction the record outlives its rollback (see
    :mod:`~django_tagcache.ops.outlive`); in one already marked for rollback it is written when
    that rollback happens, and the instance returned is not saved yet.
    """

    tag_list = sorted(tags)
    actor = Actor(_real_user(user), _name_of(user)) if user is not None else _actor.get()
    using = router.db_for_write(PurgeRecord)
    fields: dict[str, Any] = {
        "created": timezone.now(),
        "user_id": None if actor is None or actor.user is None else actor.user.pk,
        "username": (actor.username if actor else "")[:150],
        "source": source[:200],
        "cache": cache[:100],
        "namespace": namespaces.current() or "",
        "tags": tag_list[:MAX_RECORDED_TAGS],
        "tag_count": len(tag_list),
        "removed": removed,
        "error": error,
    }
    try:
        connection = transaction.get_connection(using)
        if not outlive.in_transaction(connection):
            return _write(using, fields)
        if connection.needs_rollback:  # no query can run before the rollback: written after it
            outlive.remember(connection, lambda: _write_again(using, fields))
            return PurgeRecord(**fields)
        written = _write(using, fields)
        outlive.remember(connection, lambda: _write_again(using, fields))
        return written
    # Anything at all: the purge has happened, and the caller must hear about it, not about the log.
    except Exception:
        _failed(fields)
        return None


def _write(using: str, fields: dict[str, Any]) -> PurgeRecord:
    with transaction.atomic(using=using):
        return PurgeRecord.objects.using(using).create(**fields)


def _write_again(using: str, fields: dict[str, Any]) -> None:
    """Write a record a rollback undid; the user row it linked may have gone with the rollback."""
    try:
        again = dict(fields)
        users = get_user_model()._default_manager.using(using)
        if again["user_id"] is not None and not users.filter(pk=again["user_id"]).exists():
            again["user_id"] = None  # ``username`` still names who it was
        connection = transaction.get_connection(using)
        _write(using, again)
        if outlive.in_transaction(connection):
            outlive.remember(connection, lambda: _write_again(using, again))
    except Exception:
        _failed(fields)


def _failed(fields: dict[str, Any]) -> None:
    metrics.incr("audit_failures")
    logger.exception(
        "django-tagcache: purge of %d tag(s) from %r %s (%d entries removed), but its audit "
        "record could not be written.",
        fields["tag_count"],
        fields["source"],
        "failed part way" if fields["error"] else "done",
        fields["removed"],
    )


def _real_user(user: Any) -> Any:
    """The user row to link, or None (nobody, or an AnonymousUser)."""
    if user is None or not getattr(user, "is_authenticated", False) or getattr(user, "pk", None) is None:
        return None
    return user


def _name_of(user: Any) -> str:
    if _real_user(user) is None:
        return ""
    return str(user.get_username())
