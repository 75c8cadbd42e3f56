"""The consistency SLO report: the share of critical reads that reflected committed data in time.

Built from the outcomes the stale-read auditor keeps in Redis (every process's samples, per
hour). A sampled read counts against the objective when it was ``stale``: it differed from a
recompute and its entry was still unchanged ``AUDIT['BUDGET']`` seconds after it was served.
``fresh`` and ``late`` reads (the cache caught up within the budget) count for it; ``error``
reads (nothing could be concluded) count for neither. Critical reads are those of the staleness
classes whose budget is 0 (``critical`` by default).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from ..conf import conf
from ..core import shadow_records
from .consistency import oldest_pending_age

if TYPE_CHECKING:
    from ..core.store import TagStore

OUTCOMES = ("fresh", "late", "stale", "error")
KEEP_HOURS = shadow_records.KEEP_HOURS


def _share(counts: Counter[str]) -> float | None:
    decided = counts["fresh"] + counts["late"] + counts["stale"]
    return None if not decided else (counts["fresh"] + counts["late"]) / decided


def report(store: TagStore, *, hours: int) -> dict[str, Any]:
    """The SLO report of the last ``hours`` hours, as a JSON-ready dict."""
    audit, classes = conf.AUDIT, conf.STALENESS.classes
    per_class: dict[str, Counter[str]] = {}
    for (name, outcome), value in shadow_records.outcomes(store, hours).items():
        per_class.setdefault(name, Counter())[outcome] += value
    critical_names = sorted(name for name, budget in classes.items() if budget == 0)
    critical: Counter[str] = Counter()
    for name in critical_names:
        critical.update(per_class.get(name, Counter()))
    share = _share(critical)
    return {
        "window_hours": hours,
        "budget_seconds": audit.budget,
        "target": audit.target,
        "sample_rate": audit.sample_rate,
        "critical_classes": critical_names,
        "critical": {**{o: critical[o] for o in OUTCOMES}, "share": share},
        "met": None if share is None else share >= audit.target,
        "classes": {
            name: {**{o: counts[o] for o in OUTCOMES}, "share": _share(counts)}
            for name, counts in sorted(per_class.items())
        },
        "outbox_oldest_pending_seconds": oldest_pending_age() if conf.OUTBOX else None,
    }


def _percent(share: float | None) -> str:
    return "-" if share is None else f"{100 * share:.3f}%"


def lines(data: dict[str, Any]) -> list[str]:
    """The report as text."""
    share, target = data["critical"]["share"], data["target"]
    verdict = {None: "no critical reads sampled", True: "met", False: "MISSED"}[data["met"]]
    out = [
        f"Consistency SLO, last {data['window_hours']} h: {_percent(share)} of critical reads reflected "
        f"committed data within {data['budget_seconds']:g} s (target {_percent(target)}): {verdict}",
        f"  {'class':<14}{'fresh':>9}{'late':>9}{'stale':>9}{'error':>9}{'in budget':>12}",
    ]
    for name, row in data["classes"].items():
        out.append(
            f"  {name:<14}{row['fresh']:>9}{row['late']:>9}{row['stale']:>9}{row['error']:>9}"
            f"{_percent(row['share']):>12}"
        )
    if not data["classes"]:
        out.append("  (no audited reads in the window)")
    if data["outbox_oldest_pending_seconds"] is not None:
        out.append(f"  outbox: oldest pending row {data['outbox_oldest_pending_seconds']:.1f} s old")
    out.append(
        f"  (From the stale-read auditor's samples, SAMPLE_RATE {data['sample_rate']:g} in this process's "
        "settings, counted in Redis by every process; see docs/observability.md.)"
    )
    return out
