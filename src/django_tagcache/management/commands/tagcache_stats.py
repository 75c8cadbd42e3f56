"""``manage.py tagcache_stats``: how much this app holds in Redis, and what this process counted."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError

from ...core import metrics
from ...events.lag import sources_status
from ...ops import slo
from ...ops.inspection import keyspace_stats
from ..base import TagCacheCommand

PROCESS_NOTE = (
    "Counters are this process's own: they live in each process and start at zero with it, so a "
    "command like this one has counted only its own calls; a running site's numbers come from the "
    "Prometheus export of each worker (see the Metrics section of the operations docs)."
)


class Command(TagCacheCommand):
    needs_redis = True
    help = (
        "Count tags and entries (SCAN over this app's keys, or --sample N keys and extrapolate), estimate "
        "index memory, and print this process's counters."
    )

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--sample",
            type=int,
            metavar="N",
            help="Read only N keys of the keyspace and extrapolate with DBSIZE, instead of a full scan.",
        )
        parser.add_argument(
            "--memory-sample",
            type=int,
            default=200,
            metavar="N",
            help="Indexes whose MEMORY USAGE is measured (default 200); the total is extrapolated.",
        )
        parser.add_argument(
            "--slo",
            action="store_true",
            help="Print the consistency SLO report (the stale-read auditor's samples) instead.",
        )
        parser.add_argument(
            "--hours", type=int, default=24, metavar="H", help="The SLO report's window (default 24 hours)."
        )

    def run(self, alias: str, options: dict[str, Any]) -> None:
        if options["slo"]:
            hours = options["hours"]
            if not 1 <= hours <= slo.KEEP_HOURS:
                raise CommandError(f"--hours must be in [1, {slo.KEEP_HOURS}], not {hours}.")
            report = slo.report(self.store(alias), hours=hours)
            self.emit(options, {"cache": alias, "slo": report}, slo.lines(report))
            return
        sample, memory_sample = options["sample"], options["memory_sample"]
        if sample is not None and sample < 1:
            raise CommandError(f"--sample must be 1 or more, not {sample}.")
        if memory_sample < 0:
            raise CommandError(f"--memory-sample must be 0 or more, not {memory_sample}.")
        redis_stats = keyspace_stats(self.store(alias), sample=sample, memory_sample=memory_sample)
        counters = metrics.snapshot()
        timings = {op: {"calls": n, "seconds": s} for op, (n, s) in metrics.timings().items()}
        process = {"counters": counters, "timings": timings, "note": PROCESS_NOTE}
        gauges = metrics.gauges()  # the near cache's size, when one runs in this process
        if gauges:
            process["gauges"] = gauges
        data: dict[str, Any] = {"cache": alias, "redis": redis_stats, "process": process}
        events = sources_status()  # [] unless this service consumes other services' events
        if events:
            data["events"] = events
        self.emit(options, data, self.lines(data) + event_lines(events))

    def lines(self, data: dict[str, Any]) -> list[str]:
        stats = data["redis"]
        about = "" if stats["exact_counts"] else "~"
        lines = [
            f"Cache {data['cache']!r} ({stats['method']}: "
            f"{stats['keys_scanned']} of {stats['dbsize']} keys read)",
            f"  tags (indexes):   {about}{stats['tags']}",
            f"  entries:          {about}{stats['entries']}",
            f"  pending drains:   {about}{stats['pending_drains']}",
        ]
        if stats["indexes_measured"]:
            lines += [
                f"  index memory:     ~{stats['index_memory_bytes']} bytes "
                f"(MEMORY USAGE of {stats['indexes_measured']} indexes, extrapolated)",
                f"  index members:    ~{stats['index_members']} (extrapolated the same way)",
            ]
            if stats["members_per_entry"] is not None:
                lines.append(
                    f"  members per entry: ~{stats['members_per_entry']} (tags per entry, plus dead members)"
                )
        # Only what moved: every counter is in --json; a fresh process has nothing else to show.
        moved = {name: value for name, value in data["process"]["counters"].items() if value}
        timings = data["process"]["timings"]
        lines.append("This process:" + ("" if moved or timings else " no cache calls yet."))
        lines += [f"  {name:<20} {value}" for name, value in moved.items()]
        lines += [f"  {name:<20} {value} now" for name, value in data["process"].get("gauges", {}).items()]
        for op, timing in timings.items():
            lines.append(f"  time in {op:<12} {timing['seconds']:.3f} s over {timing['calls']} call(s)")
        lines.append(f"  ({PROCESS_NOTE})")
        return lines


def event_lines(statuses: list[dict[str, Any]]) -> list[str]:
    """The consumer groups of TAGCACHE['EVENTS']['SOURCES'] (docs/events.md), one block per source."""
    lines = []
    for status in statuses:
        lines.append(f"Events from {status['source']!r} (stream {status['stream']!r}):")
        if "error" in status:
            lines.append(f"  unreachable: {status['error']}")
            continue
        lines += [
            f"  behind:           {status['events_behind']} event(s), {status['seconds_behind']:.3f} s",
            f"  pending:          {status['pending']} (delivered, not yet acknowledged)",
            f"  applied:          {status['applied']} (group {status['group']!r}, all consumers)",
            f"  duplicates:       {status['duplicates']}",
            f"  dead-lettered:    {status['dead_lettered']} "
            f"({status['dead_letter_length']} in the dead-letter stream)",
        ]
    return lines
