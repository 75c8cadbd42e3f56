"""Run every benchmark, each in its own process on one shared Redis, and print a table of ratios.

    python -m benchmarks [--quick]

Uses REDIS_URL if set, else starts one redis-server for the whole run. Each benchmark reports
medians of repeated runs; the table lists their RESULT lines. ``./scripts/bench`` runs this in a
virtualenv that also has django-cacheops.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from benchmarks._setup import redis_url

SUITE: list[tuple[str, list[str], list[str]]] = [
    # (module, arguments, quick arguments)
    ("benchmarks.reads", [], ["--rounds", "300", "--repeat", "5"]),
    ("benchmarks.async_reads", [], ["--rounds", "300", "--repeat", "5"]),
    ("benchmarks.fragments_and_pages", [], ["--rounds", "200", "--repeat", "5"]),
    ("benchmarks.saves", [], ["--rounds", "300", "--repeat", "3"]),
    ("benchmarks.refusals", [], ["--seconds", "1"]),
    ("benchmarks.audit_overhead", [], ["--rounds", "1000", "--repeat", "5"]),
    ("benchmarks.cacheops_compare", [], ["--rounds", "300", "--repeat", "5"]),
    ("benchmarks.big_tag", ["--members", "100000"], ["--members", "20000", "--repeat", "1"]),
    ("benchmarks.index_churn", [], ["--cycles", "3", "--entries", "2000", "--ttl", "2"]),
    ("benchmarks.events", [], ["--events", "5000", "--repeat", "1", "--seconds", "2"]),
    ("benchmarks.near_cache", [], ["--rounds", "1000", "--repeat", "3", "--samples", "30", "--ops", "3000"]),
    ("benchmarks.asgi_views", [], ["--seconds", "1", "--repeat", "1"]),
]


def main() -> None:
    quick = "--quick" in sys.argv[1:]
    rows: list[dict[str, object]] = []
    with redis_url() as url:
        env = {**os.environ, "REDIS_URL": url}
        for module, arguments, quick_arguments in SUITE:
            print(f"==> {module}", flush=True)
            run = subprocess.run(
                [sys.executable, "-m", module, *(quick_arguments if quick else arguments)],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            for line in run.stdout.splitlines():
                if line.startswith("RESULT "):
                    rows.append(json.loads(line[len("RESULT ") :]))
                else:
                    print("   " + line)
            if run.returncode:
                print(f"   (exit {run.returncode}) {run.stderr.strip().splitlines()[-1:]}")
    print()
    print(f"{'row':62} {'ours':>10} {'baseline':>10} {'ratio':>7} {'bar':>9}")
    for row in rows:
        unit = str(row["unit"])
        ours = f"{row['ours']:.1f}{unit}" if isinstance(row["ours"], float) else str(row["ours"])
        base = row["baseline"]
        baseline = f"{base:.1f}{unit}" if isinstance(base, float) else ("" if base is None else str(base))
        ratio = f"{row['ratio']:.3f}" if isinstance(row["ratio"], float) else ""
        print(f"{row['row']!s:62} {ours:>10} {baseline:>10} {ratio:>7} {row['bar']!s:>9}")


if __name__ == "__main__":
    main()
