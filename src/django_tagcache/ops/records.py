"""The audit log's table: one row per purge. It also carries the ``purge_cache`` permission."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

#: Most tags one record keeps; ``tag_count`` always holds the real number.
MAX_RECORDED_TAGS = 1000


class PurgeRecord(models.Model):
    """One purge: who asked for it, from where, when, which tags, how many entries it removed.

    Written by :func:`django_tagcache.ops.audit.purge_tags` (admin, management commands) and for
    every API call that passes ``source=`` (see :mod:`django_tagcache.ops.audit`). Routine
    invalidations caused by model writes are counted in the metrics, not recorded here.
    """

    created = models.DateTimeField(default=timezone.now, db_index=True, editable=False)
    # SET_NULL: the record outlives the account; ``username`` keeps who it was.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    username = models.CharField(
        max_length=150, blank=True, help_text="The user's name, or the OS user of a management command."
    )
    source = models.CharField(
        max_length=200,
        db_index=True,
        help_text='Where the purge came from, e.g. "admin:action:shop.product".',
    )
    cache = models.CharField(max_length=100, blank=True, help_text="Cache alias, when known.")
    tags = models.JSONField(
        default=list, help_text=f"The tags purged (at most the first {MAX_RECORDED_TAGS})."
    )
    tag_count = models.PositiveIntegerField(default=0)
    removed = models.PositiveBigIntegerField(default=0, help_text="Cache entries removed.")
    namespace = models.CharField(
        max_length=64, blank=True, default="", help_text="The namespace purged; empty for none."
    )
    error = models.TextField(
        blank=True,
        default="",
        help_text="Why the purge failed part way, if it did: the tags may then be only partly "
        "invalidated, and more entries removed than counted.",
    )

    class Meta:
        ordering = ("-created", "-pk")
        verbose_name = "purge record"
        verbose_name_plural = "purge records"
        # The log is written by the app only: no add/change/delete permissions exist to grant.
        default_permissions = ("view",)
        permissions = (("purge_cache", "Can purge cached data"),)

    def __str__(self) -> str:
        who = self.username or "anonymous"
        failed = " (failed)" if self.error else ""
        return f"{self.source} by {who}: {self.tag_count} tag(s), {self.removed} entries{failed}"
