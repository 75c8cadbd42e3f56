"""``manage.py tagcache_drain``: replay the invalidations waiting in the outbox."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections

from django_tagcache.outbox import PendingInvalidation, drain


class Command(BaseCommand):
    help = (
        "Replay pending invalidations from the outbox (TAGCACHE['OUTBOX']); exits 1 while Redis still fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default="default", help="Database alias holding the outbox.")
        parser.add_argument("--limit", type=int, default=None, help="Replay at most this many rows.")
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        database, limit = options["database"], options["limit"]
        if database not in connections:
            raise CommandError(f"Unknown database alias {database!r}; use one of: {', '.join(connections)}.")
        if limit is not None and limit < 1:
            raise CommandError("--limit must be a positive number of rows.")
        try:
            replayed, failing = drain(database, limit=limit)
            left = PendingInvalidation.objects.using(database).count()
        except DatabaseError as exc:
            raise CommandError(f"Cannot read the outbox on database {database!r}: {exc}") from exc
        if options["json"]:
            self.stdout.write(json.dumps({"replayed": replayed, "failing": failing, "pending": left}))
        else:
            self.stdout.write(f"Replayed {replayed} pending invalidation(s); {left} left.")
        if failing:
            raise CommandError(f"Redis still refuses: {failing} row(s) failed again and stay in the outbox.")
