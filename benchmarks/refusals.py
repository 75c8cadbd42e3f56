"""The hit-rate cost of read fences on a read-heavy mix: what refusing writes costs.

    python -m benchmarks.refusals [--seconds 3] [--rate 1000] [--writes 0.05]

Requests arrive at ``rate`` a second for ``seconds``. Each is, with probability ``writes``, a save
(an invalidation of one of 20 tags), else a read of one of 200 entries (``get_or_set`` inside a
request, so with the request's start as read fence). The same seeded sequence runs three times:
with the fence and the default ``CLOCK_SKEW_MARGIN`` (0.1 s), with a margin of 0 (one host), and
with the fence switched off (the generation check alone, as before fences). The rows give the
hit rate of each; the ratio is the share of the hits that the fences keep.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from benchmarks._setup import configure_django, redis_url, result

KEYS = 200
TAGS = 20


def run_mix(seconds: float, rate: float, writes: float, margin: float, fence: bool, prefix: str) -> float:
    """The hit rate (in %) of the reads of one seeded run."""
    from django.conf import settings as django_settings
    from django.test import override_settings

    from django_tagcache import invalidate_tags, tagcache
    from django_tagcache.caching import fences
    from django_tagcache.core import metrics, protections

    rng = random.Random(2026)
    reads = misses = 0
    settings = {**django_settings.TAGCACHE, "KEY_PREFIX": prefix, "CLOCK_SKEW_MARGIN": margin}
    with override_settings(TAGCACHE=settings):
        metrics.reset()
        switch = protections.switched_off("fence") if not fence else _Nothing()
        with switch:
            started = time.perf_counter()
            for n in range(int(seconds * rate)):
                delay = started + n / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)  # requests arrive at a steady rate, as wall-clock time passes
                if rng.random() < writes:
                    invalidate_tags(f"t{rng.randrange(TAGS)}")
                    continue
                key = rng.randrange(KEYS)
                computed: list[int] = []
                fences.request_started()
                try:
                    tagcache.get_or_set(f"k{key}", _recorder(computed, key), tags=[f"t{key % TAGS}"])
                finally:
                    fences.request_finished()
                reads += 1
                misses += bool(computed)
        refused = metrics.snapshot()["refused_writes"]
    state = "on" if fence else "off"
    print(f"  fence {state}, margin {margin} s: {reads} reads, {misses} misses, {refused} refused writes")
    return 100.0 * (reads - misses) / reads


def _recorder(computed: list[int], key: int) -> Callable[[], int]:
    def compute() -> int:
        computed.append(key)
        return key

    return compute


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--writes", type=float, default=0.05)
    args = parser.parse_args()
    with redis_url() as url:
        configure_django(url, tagcache={"STAMPEDE": {"LOCK_TTL": 0}, "TTL_JITTER": 0})
        mix = (args.seconds, args.rate, args.writes)
        without = run_mix(*mix, margin=0.1, fence=False, prefix="mix-off")
        default = run_mix(*mix, margin=0.1, fence=True, prefix="mix-default")
        exact = run_mix(*mix, margin=0.0, fence=True, prefix="mix-exact")
        share = f"{int(args.writes * 100)}% writes, {int(args.rate)} req/s"
        for name, rate in (("margin 0.1 s", default), ("margin 0", exact)):
            result(
                f"hit rate, fences ({name}) vs none, {share}", rate, without, rate / without, "report", "%"
            )


if __name__ == "__main__":
    main()
