"""``manage.py tagcache_prune``: drop index members whose entry expired or is gone."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError

from ...ops.pruning import count_tag_keys, prune
from ..base import TagCacheCommand

BAR_WIDTH = 30


class ProgressBar:
    """A one-line text bar on stderr, redrawn in place when the percentage changes."""

    def __init__(self, write: Any, total: int) -> None:
        self._write = write
        self._total = max(total, 1)
        self._shown = -1

    def __call__(self, done: int) -> None:
        # Keys may appear while scanning: never draw past 100 %.
        percent = min(100, done * 100 // self._total)
        if percent != self._shown:
            self._shown = percent
            filled = BAR_WIDTH * percent // 100
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            self._write(f"\r[{bar}] {percent:3d}% {min(done, self._total)}/{self._total} tag keys", ending="")

    def close(self) -> None:
        self._write("", ending="\n")


class Command(TagCacheCommand):
    needs_redis = True
    help = (
        "Remove tag index members whose entry expired or no longer exists, and finish interrupted "
        "invalidations. Scans in bounded steps; safe to run while the site is up."
    )

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would be removed; change nothing."
        )
        parser.add_argument(
            "--batch", type=int, default=1000, help="Members read or removed per command (default 1000)."
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar, even on a terminal.")

    def run(self, alias: str, options: dict[str, Any]) -> None:
        if options["batch"] < 1:
            raise CommandError(f"--batch must be 1 or more, not {options['batch']}.")
        store = self.store(alias)
        bar = None
        if not options["no_progress"] and self.stderr.isatty():
            bar = ProgressBar(self.stderr.write, count_tag_keys(store))
        try:
            report = prune(store, dry_run=options["dry_run"], batch=options["batch"], progress=bar)
        finally:
            if bar is not None:
                bar.close()
        data = {"cache": alias, **report.as_dict()}
        would = "would be " if report.dry_run else ""
        counts = {f"expired members {would}removed:": report.expired_members}
        if report.checks_entries:
            counts[f"members of missing entries {would}removed:"] = report.dead_members
        width = max(len(label) for label in counts)
        lines = [
            f"Cache {alias!r}: {report.indexes} tag index(es) scanned"
            + (" (dry run: nothing changed)." if report.dry_run else "."),
            *(f"  {label:<{width}} {count}" for label, count in counts.items()),
        ]
        if not report.checks_entries:
            lines.append(
                "  members of missing entries: not checked on Redis Cluster (only expired ones are pruned)."
            )
        if report.busy_chunks:
            lines.append(
                f"  {report.busy_chunks} chunk(s) skipped: their index kept changing; run again later."
            )
        if report.drains:
            lines.append(
                f"  interrupted invalidations {'to finish' if report.dry_run else 'finished'}: "
                f"{report.drains} ({report.drained_entries} entries)"
            )
        self.emit(options, data, lines)
