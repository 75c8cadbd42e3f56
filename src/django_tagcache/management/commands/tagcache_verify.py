"""``manage.py tagcache_verify``: recompute a sample of cached ``@cached`` results, exit 4 if stale."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError

from ...ops.verify import Verified, verify
from ..base import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, TagCacheCommand


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


class Command(TagCacheCommand):
    help = (
        "Recompute a sample of the cached results of @cached functions now and compare them with the "
        "cache; print checked, stale and the oldest stale entry's age per function. Exits with status 4 "
        "when the stale share is over --max-stale (a deploy or runbook gate)."
    )

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--max-stale",
            type=float,
            default=0.0,
            metavar="SHARE",
            help="Largest share of checked entries that may be stale before exit status 4 (default 0).",
        )
        parser.add_argument(
            "--limit", type=int, metavar="N", help="Check at most N kept calls per function (default all)."
        )
        parser.add_argument(
            "--function",
            action="append",
            metavar="DOTTED.NAME",
            help="Check only this function (repeatable).",
        )

    def run(self, alias: str, options: dict[str, Any]) -> None:
        threshold, limit = options["max_stale"], options["limit"]
        if not 0 <= threshold <= 1:
            raise CommandError(
                f"--max-stale must be a share in [0, 1], not {threshold}.", returncode=EXIT_BAD_INPUT
            )
        if limit is not None and limit < 1:
            raise CommandError(f"--limit must be 1 or more, not {limit}.", returncode=EXIT_BAD_INPUT)
        results = verify(self.store(alias), limit=limit, only=options["function"])
        checked = sum(r.checked for r in results)
        stale = sum(r.stale for r in results)
        ages = [r.oldest_stale_age for r in results if r.oldest_stale_age is not None]
        share = stale / checked if checked else 0.0
        data = {
            "cache": alias,
            "functions": [r.as_dict() for r in results],
            "checked": checked,
            "stale": stale,
            "stale_share": share,
            "oldest_stale_age": max(ages) if ages else None,
            "max_stale": threshold,
            "passed": share <= threshold,
        }
        self.emit(options, data, self.lines(results, data))
        if not data["passed"]:
            raise CommandError(
                f"{stale} of {checked} checked entries are stale ({100 * share:.2f}%, over --max-stale "
                f"{100 * threshold:.2f}%).",
                returncode=EXIT_CHECK_FAILED,
            )

    def lines(self, results: list[Verified], data: dict[str, Any]) -> list[str]:
        if not results:
            return [
                "No @cached calls kept to verify: they are kept after @cached writes while "
                "TAGCACHE['AUDIT']['VERIFY_SAMPLES'] is above 0."
            ]
        width = max(len("function"), *(len(r.function) for r in results))
        head = f"{'checked':>8} {'stale':>6} {'late':>5} {'expired':>8} {'errors':>7}  oldest stale"
        out = [f"{'function':<{width}} {head}"]
        for r in results:
            out.append(
                f"{r.function:<{width}} {r.checked:>8} {r.stale:>6} {r.late:>5} {r.expired:>8} "
                f"{r.errors:>7}  {_age(r.oldest_stale_age)}" + (f"  ({r.problem})" if r.problem else "")
            )
        out.append(
            f"{'total':<{width}} {data['checked']:>8} {data['stale']:>6}"
            f"{'':>24}  {_age(data['oldest_stale_age'])}"
        )
        for r in results:
            out += [f"  stale: {key}" for key in r.stale_keys[:10]]
        return out
