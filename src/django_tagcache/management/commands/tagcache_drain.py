"""``manage.py tagcache_drain``: replay the invalidations waiting in the outbox."""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError
from django.db import DatabaseError, connections

from ...conf import conf
from ...orm.outbox import PendingInvalidation, drain
from ..base import EXIT_UNREACHABLE, TagCacheCommand


class Command(TagCacheCommand):
    help = (
        "Replay pending invalidations from the outbox (TAGCACHE['OUTBOX']); exits 3 while Redis still "
        "fails. --cache and --namespace replay only the rows recorded for that cache alias or namespace."
    )

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--database", default="default", help="Database alias holding the outbox.")
        parser.add_argument("--limit", type=int, default=None, help="Replay at most this many rows.")

    def handle(self, *args: Any, **options: Any) -> None:
        database, limit = options["database"], options["limit"]
        if database not in connections:
            raise CommandError(f"Unknown database alias {database!r}; use one of: {', '.join(connections)}.")
        if limit is not None and limit < 1:
            raise CommandError("--limit must be a positive number of rows.")
        super().handle(*args, **options)

    def run(self, alias: str, options: dict[str, Any]) -> None:
        database, limit = options["database"], options["limit"]
        only: dict[str, Any] = {}
        if options["cache"]:
            # A blank alias on a row stands for TAGCACHE['CACHE'].
            only["cache__in"] = [alias, ""] if alias == conf.CACHE else [alias]
        if options["namespace"]:
            only["namespace"] = options["namespace"]
        try:
            replayed, failing = drain(database, limit=limit, only=only)
            left = PendingInvalidation.objects.using(database).filter(**only).count()
        except DatabaseError as exc:
            raise CommandError(f"Cannot read the outbox on database {database!r}: {exc}") from exc
        if options["json"]:
            self.stdout.write(json.dumps({"replayed": replayed, "failing": failing, "pending": left}))
        else:
            self.stdout.write(f"Replayed {replayed} pending invalidation(s); {left} left.")
        if failing:
            raise CommandError(
                f"Redis still refuses: {failing} row(s) failed again and stay in the outbox.",
                returncode=EXIT_UNREACHABLE,
            )
