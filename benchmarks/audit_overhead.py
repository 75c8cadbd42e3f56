"""What the stale-read auditor costs a read: ``get_or_set`` hits at sample rates 0, 0.001 and 0.01.

    python -m benchmarks.audit_overhead [--rounds 5000] [--repeat 15]

Each run times ``rounds`` hits at one rate, then at the next (the order rotating from run to run),
each block until the audit thread has finished the block's shadow reads: their recomputes, Redis
reads and records are paid for inside the measured time, as a server's CPU would pay for them.
The baseline is the auditor switched off (rate 0). Bar: <= 1.01 at 0.001. A last row shows what
keeping ``@cached`` argument sets for tagcache_verify costs a miss (the write happens in the
audit thread; the request only queues it).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from benchmarks._setup import configure_django, redis_url, result

VALUE = {"name": "Blue mug", "price": 12.5, "tags": ["kitchen", "blue"], "stock": list(range(20))}
RATES = (0.0, 0.001, 0.01)


def _settings(audit: dict[str, object]) -> None:
    from django.conf import settings

    settings.TAGCACHE = {"CACHE": "default", "AUDIT": audit}


def timed_block(func: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Microseconds per call, wall clock and this process's CPU (all threads), the audit thread's
    work for the block included. On a loaded machine the CPU time is the steadier of the two."""
    from django_tagcache.caching import background

    started, cpu = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        func()
    background.wait(60)
    wall = (time.perf_counter() - started) / rounds * 1e6
    return wall, (time.process_time() - cpu) / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with redis_url() as url:
        configure_django(url)
        from django_tagcache import cached, tagcache
        from django_tagcache.core import observations

        def compute() -> dict[str, object]:
            return dict(VALUE)

        def read() -> None:
            tagcache.get_or_set("card", compute, tags=["category:7", "seller:3", "shop.product:42"])

        read()
        walls: dict[float, list[float]] = {rate: [] for rate in RATES}
        cpus: dict[float, list[float]] = {rate: [] for rate in RATES}
        for run in range(args.repeat):
            order = RATES[run % len(RATES) :] + RATES[: run % len(RATES)]
            for rate in order:
                _settings({"SAMPLE_RATE": rate} if rate else {})
                wall, cpu = timed_block(read, args.rounds)
                walls[rate].append(wall)
                cpus[rate].append(cpu)
        audited = sum(v for (_, outcome), v in observations.counters("audit_reads").items() if outcome)
        print(f"  shadow reads done: {audited}")
        for clock, per_rate in (("wall", walls), ("CPU", cpus)):
            base = statistics.median(per_rate[0.0])
            for rate in RATES[1:]:
                ratios = [ours / theirs for ours, theirs in zip(per_rate[rate], per_rate[0.0], strict=True)]
                ours = statistics.median(per_rate[rate])
                ratio = statistics.median(ratios)
                bar = "<= 1.01" if rate == 0.001 else "(info)"
                name = f"get_or_set hit, auditor at {rate:g} vs off ({clock})"
                print(f"{name}: {ours:.2f} us vs {base:.2f} us, ratio {ratio:.4f} (bar {bar})")
                result(name, ours, base, ratio, bar)

        @cached(timeout=600, tags=["category:7"])
        def card(n: int) -> dict[str, object]:
            return dict(VALUE)

        def miss() -> None:
            card.forget(1)
            card(1)

        times: dict[int, list[float]] = {0: [], 32: []}
        for run in range(args.repeat):
            for samples in (0, 32) if run % 2 == 0 else (32, 0):
                _settings({"VERIFY_SAMPLES": samples})
                times[samples].append(timed_block(miss, max(100, args.rounds // 10))[0])
        ratio = statistics.median(o / t for o, t in zip(times[32], times[0], strict=True))
        ours, base = statistics.median(times[32]), statistics.median(times[0])
        name = "@cached miss, argument sets kept (32) vs not (0)"
        print(f"{name}: {ours:.2f} us vs {base:.2f} us, ratio {ratio:.4f}")
        result(name, ours, base, ratio, "(info)")


if __name__ == "__main__":
    main()
