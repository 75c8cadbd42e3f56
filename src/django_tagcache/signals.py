"""Signals sent by django-tagcache."""

from __future__ import annotations

from django.dispatch import Signal

#: Sent after tags were invalidated, with ``tags`` (tuple of tag strings), ``removed`` (entries
#: deleted) and ``source`` (the ``source=`` given to the call, or None).
tags_invalidated = Signal()

#: Sent when an invalidation failed after it may have reached Redis, with ``tags``, ``source``
#: and ``error`` (the :class:`~django_tagcache.TagCacheUnavailable` about to be raised). Part of
#: the tags may have been invalidated: the audit log records such a purge as failed.
invalidation_failed = Signal()
