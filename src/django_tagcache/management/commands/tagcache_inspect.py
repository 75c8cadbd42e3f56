"""``manage.py tagcache_inspect TAG``: what Redis holds for one tag."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError

from ...caching.tags import validate_tag
from ...ops.inspection import inspect_tag
from ..base import TagCacheCommand


def _ms(value: int | None) -> str:
    return "no expiry" if value is None else f"{value / 1000:.3f} s"


class Command(TagCacheCommand):
    needs_redis = True
    help = (
        "Show one tag: its index members (entry keys, expiry, whether each entry still exists), member "
        "count, generation token, the index's TTL and memory, and any interrupted invalidation left to drain."
    )

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("tag", metavar="TAG")
        parser.add_argument(
            "--limit", type=int, default=100, help="Most members to list (default 100; 0: count only)."
        )

    def run(self, alias: str, options: dict[str, Any]) -> None:
        try:
            tag = validate_tag(options["tag"])
        except (TypeError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        if options["limit"] < 0:
            raise CommandError(f"--limit must be 0 or more, not {options['limit']}.")
        data = {"cache": alias, **inspect_tag(self.store(alias), tag, options["limit"])}
        self.emit(options, data, self.lines(data))

    def lines(self, data: dict[str, Any]) -> list[str]:
        memory = data["index_memory_bytes"]
        lines = [
            f"Tag {data['tag']!r} on cache {data['cache']!r}",
            f"  index key:   {data['index_key']}",
            f"  members:     {data['members']}",
            f"  generation:  {data['generation'] or '(none)'}"
            + (f" (expires in {_ms(data['generation_pttl_ms'])})" if data["generation"] else ""),
            f"  index TTL:   {_ms(data['index_pttl_ms']) if data['members'] else '(no index)'}",
            f"  index size:  {'-' if memory is None else f'{memory} bytes'} (MEMORY USAGE)",
        ]
        for drain in data["pending_drains"]:
            lines.append(f"  pending drain: {drain['index']} ({drain['members']} members left)")
        if data["entries"]:
            shown = data["shown"]
            lines.append(f"  first {shown} member(s), soonest expiry first:")
            for entry in data["entries"]:
                if not entry["exists"]:
                    state = "GONE (prunable)"
                elif entry["pttl_ms"] is None:
                    state = "no expiry"
                else:
                    state = f"expires in {_ms(entry['pttl_ms'])}"
                lines.append(f"    {entry['key'] or entry['redis_key']}  [{state}]")
        if data["members"] > data["shown"]:
            lines.append(f"  ... {data['members'] - data['shown']} more (raise --limit to list them).")
        return lines
