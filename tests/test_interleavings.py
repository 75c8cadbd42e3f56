"""Randomized interleavings of readers, writers and invalidations: no history leaves a stale value.

Each history runs 2 to 4 actors (tests/interleaving.py) on real Redis and the real database,
switching between them at every Redis round trip and after every row load, as a seeded random
generator decides. After each, every cached value must equal a recompute from the database.

``TAGCACHE_HARNESS_HISTORIES`` sets how many histories run (2,000 by default; 100,000 is the
long mode) and ``TAGCACHE_HARNESS_SEED`` the seed. A failure prints the seed and the history,
which replays alone with ``TAGCACHE_HARNESS_FIRST``.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import pytest

from django_tagcache.caching.api import get_store
from django_tagcache.core import metrics, protections
from tests.interleaving import Shop, actors, populate
from tests.scheduler import Scheduler, hooked

pytestmark = pytest.mark.django_db(transaction=True)

HISTORIES = int(os.environ.get("TAGCACHE_HARNESS_HISTORIES", "2000"))
SEED = int(os.environ.get("TAGCACHE_HARNESS_SEED", "1129"))
FIRST = int(os.environ.get("TAGCACHE_HARNESS_FIRST", "0"))
# The default run: 1,500 histories on one server and 500 on the cluster.
SERVER_HISTORIES = max(1, HISTORIES * 3 // 4)
CLUSTER_HISTORIES = max(1, HISTORIES // 4)


@dataclass
class Outcome:
    histories: int = 0
    steps: int = 0
    stale: list[str] | None = None


def run(alias: str, count: int, seed: int, first: int = 0) -> Outcome:
    """Run histories ``first`` .. ``first + count``; stop at the first that leaves a stale value."""
    populate()
    shop, outcome = Shop(alias), Outcome()
    store = get_store(alias)
    for number in range(first, first + count):
        shop.rng = random.Random(f"{seed}:{number}")
        shop.fill()
        scheduler = Scheduler(shop.rng)
        with hooked(store, scheduler):
            scheduler.run(actors(shop, scheduler))
        outcome.histories += 1
        outcome.steps += scheduler.steps
        stale = shop.stale()
        if stale:
            outcome.stale = [
                f"history {number} (TAGCACHE_HARNESS_SEED={seed} TAGCACHE_HARNESS_FIRST={number})"
            ]
            outcome.stale += stale
            return outcome
    return outcome


@pytest.fixture
def shop_settings(settings: Any) -> Any:
    settings.TAGCACHE = {
        **settings.TAGCACHE,
        "CHUNK_SIZE": 3,  # every invalidation of a category drains in several calls
        "STAMPEDE": {"LOCK_TTL": 0},  # no waiting on each other's locks: every step is scheduled
    }
    return settings


@pytest.mark.usefixtures("shop_settings")
def test_no_history_leaves_a_stale_value_on_one_server(settings: Any) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHE": "default"}
    outcome = run("default", SERVER_HISTORIES, SEED, FIRST)
    print(f"\n{outcome.histories} histories, {outcome.steps} scheduled steps, stale: {outcome.stale or 0}")
    assert outcome.stale is None, "\n".join(outcome.stale)
    assert metrics.snapshot()["refused_writes"] > 0  # the races did happen, and were refused


@pytest.mark.cluster
@pytest.mark.usefixtures("shop_settings", "redis_cluster")
def test_no_history_leaves_a_stale_value_on_a_cluster(settings: Any) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHE": "cluster"}
    outcome = run("cluster", CLUSTER_HISTORIES, SEED, FIRST)
    print(f"\n{outcome.histories} histories, {outcome.steps} scheduled steps, stale: {outcome.stale or 0}")
    assert outcome.stale is None, "\n".join(outcome.stale)


@pytest.mark.parametrize("protection", ["generation", "drain_guard", "fence", "stored_row"])
@pytest.mark.usefixtures("shop_settings")
def test_with_one_protection_off_a_stale_value_is_found(settings: Any, protection: str) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHE": "default"}
    with protections.switched_off(protection):
        outcome = run("default", HISTORIES, SEED)
    print(f"\n{protection} off -> first stale value after {outcome.histories} histories")
    assert outcome.stale is not None, f"{protection} off: no stale value in {HISTORIES} histories"
