"""Database models. Each lives beside the code that writes it; importing it here registers it with Django."""

from __future__ import annotations

from .ops.records import MAX_RECORDED_TAGS, PurgeRecord
from .orm.outbox import PendingInvalidation

__all__ = ["MAX_RECORDED_TAGS", "PendingInvalidation", "PurgeRecord"]
