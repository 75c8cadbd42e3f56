"""Randomized interleavings of readers, writers and invalidations: no history leaves a stale value.

Each history runs 2 to 8 actors (tests/interleaving.py) on real Redis (or the in-process store)
and the real database, switching between them at every store round trip, after every row load
and, in most configurations, right after each SELECT of the shop's rows runs (before its rows are
built into instances), as a seeded random generator decides. After each, every cached value must
equal a recompute from the database, and where soft purges run, every listing a reader was served
must be one the database held at most the staleness budget earlier (on the scheduler's clock).

The configurations (:data:`CONFIGS`) share the budget: ``TAGCACHE_HARNESS_HISTORIES`` sets how
many histories run in all (2,000 by default; 100,000 is the long mode) and
``TAGCACHE_HARNESS_SEED`` the seed. A failure prints the seed and the history, which replays
alone with ``TAGCACHE_HARNESS_FIRST``.
"""

from __future__ import annotations

import os
import random
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.db import connection

from django_tagcache.caching import recompute
from django_tagcache.caching.api import get_store
from django_tagcache.core import metrics, protections
from tests.interleaving import Shop, actors, populate
from tests.scheduler import Scheduler, hooked, virtual_time

pytestmark = [pytest.mark.django_db(transaction=True)]

HISTORIES = int(os.environ.get("TAGCACHE_HARNESS_HISTORIES", "2000"))
SEED = int(os.environ.get("TAGCACHE_HARNESS_SEED", "1129"))
FIRST = int(os.environ.get("TAGCACHE_HARNESS_FIRST", "0"))
if HISTORIES > 2000:  # the long mode runs for hours: no per-test timeout
    pytestmark.append(pytest.mark.timeout(0))


@dataclass(frozen=True)
class Config:
    """One configuration of the harness: a cache alias, settings, and which actors take part."""

    alias: str
    #: Its share of every 2,000 histories.
    share: int
    tagcache: dict[str, Any] = field(default_factory=dict)
    #: Namespaces (tenants) of the promotion banner, purged across all of them.
    tenants: tuple[str | None, ...] = (None,)
    #: Real requests through Django's WSGI and ASGI handlers, with TagCacheMiddleware.
    web: bool = False
    #: A scheduler point between each SELECT of the shop's rows and the instances built from it.
    select_points: bool = True
    #: Stampede locks taken: their waits run on the scheduler's clock.
    locks: bool = False
    #: Soft purges of the categories' tags, whose stale copies live at most this long (ms).
    stale_budget_ms: int = 0

    def histories(self, total: int) -> int:
        return max(1, total * self.share // 2000)


TENANTS = (None, "t1", "t2")
CONFIGS = {
    # One server: every invalidation of a category drains in several calls (CHUNK_SIZE 3), the
    # banner is cached in three namespaces, and pages are requested through Django's handlers.
    "server": Config(
        "default",
        700,
        {"CHUNK_SIZE": 3, "STAMPEDE": {"LOCK_TTL": 0}, "NAMESPACE": "tests.tenancy.tenant"},
        tenants=TENANTS,
        web=True,
    ),
    # Stampede locks (waiters, and stale copies served while one caller recomputes: soft purges
    # of the categories within a 30 s budget) and the outbox.
    "locks": Config(
        "default",
        400,
        {
            "CHUNK_SIZE": 3,
            "STAMPEDE": {"LOCK_TTL": 10, "WAIT": 0.05, "POLL": 0.01},
            "STALENESS": {"TAGS": {"category:": "important"}},
            "OUTBOX": True,
        },
        locks=True,
        stale_budget_ms=30_000,
    ),
    # The in-process store (LocMemCache), with namespaces.
    "locmem": Config(
        "locmem", 400, {"STAMPEDE": {"LOCK_TTL": 0}, "NAMESPACE": "tests.tenancy.tenant"}, tenants=TENANTS
    ),
    # The three-primary cluster, where every invalidation drains.
    "cluster": Config("cluster", 500, {"CHUNK_SIZE": 3, "STAMPEDE": {"LOCK_TTL": 0}}, select_points=False),
}


@dataclass
class Outcome:
    histories: int = 0
    steps: int = 0
    #: Listings served to readers and checked against the database's listings of the moment.
    served: int = 0
    stale: list[str] | None = None


def run(config: Config, count: int, seed: int, first: int = 0) -> Outcome:
    """Run histories ``first`` .. ``first + count``; stop at the first that leaves a stale value."""
    populate()
    shop, outcome = Shop(config.alias), Outcome()
    shop.tenants, shop.web, shop.stale_budget_ms = config.tenants, config.web, config.stale_budget_ms
    shop.snapshots = snapshot_transactions()
    store = get_store(config.alias)
    for number in range(first, first + count):
        shop.rng = random.Random(f"{seed}:{number}")
        shop.fill()
        scheduler = Scheduler(
            shop.rng,
            select_points=config.select_points,
            on_step=shop.observe if config.stale_budget_ms else None,
        )
        shop.start_history(scheduler)
        with ExitStack() as stack:
            stack.enter_context(hooked(store, scheduler))
            if config.locks:
                stack.enter_context(virtual_time(recompute, scheduler))
            scheduler.run(actors(shop, scheduler))
        outcome.histories += 1
        outcome.steps += scheduler.steps
        outcome.served += len(shop.served)
        if outcome.histories % 1000 == 0:  # long runs show how far they got
            print(f"  ... {outcome.histories} histories, {outcome.steps} steps", flush=True)
        stale = shop.stale()
        if stale:
            outcome.stale = [
                f"history {number} (TAGCACHE_HARNESS_SEED={seed} TAGCACHE_HARNESS_FIRST={number})"
            ]
            outcome.stale += stale
            return outcome
        if config.stale_budget_ms:
            shop.drop_stale_copies()
    return outcome


def snapshot_transactions() -> bool:
    """Whether the database can run the actors whose transactions read one snapshot: PostgreSQL.

    Not the default SQLite test database: one in-memory database in shared-cache mode, where
    every connection reads the latest commit (there is no snapshot to read from), and a reader's
    open transaction locks the tables it read against the writers. Nor MariaDB, where the
    harness does not run today: an actor waits on a row lock that a paused one holds, outside
    the scheduler's points.
    """
    return connection.vendor == "postgresql"


def configure(settings: Any, name: str) -> Config:
    config = CONFIGS[name]
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHE": config.alias, **config.tagcache}
    if config.web:
        settings.ROOT_URLCONF = "tests.interleaving"
        settings.MIDDLEWARE = ["django_tagcache.middleware.TagCacheMiddleware"]
        settings.CACHE_MIDDLEWARE_SECONDS = 600
    return config


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.cluster) if n == "cluster" else n for n in CONFIGS]
)
def test_no_history_leaves_a_stale_value(settings: Any, request: pytest.FixtureRequest, name: str) -> None:
    if name == "cluster":
        request.getfixturevalue("redis_cluster")
    config = configure(settings, name)
    outcome = run(config, config.histories(HISTORIES), SEED, FIRST)
    counts = metrics.snapshot()
    print(
        f"\n{name}: {outcome.histories} histories, {outcome.steps} scheduled steps, "
        f"{outcome.served} listings served and checked ({counts['stale_served']} stale copies), "
        f"stale: {outcome.stale or 0}"
    )
    assert outcome.stale is None, "\n".join(outcome.stale)
    assert counts["refused_writes"] > 0  # the races did happen, and were refused
    if config.stale_budget_ms:  # soft purges did serve stale copies, and they were checked
        assert counts["stale_served"] > 0
        assert outcome.served > 0


#: Each protection, and the configuration whose actors can break it.
MUTATIONS = {
    "generation": "server",
    "fence": "server",
    "drain_guard": "server",
    "stored_row": "server",
    "namespace_scan": "server",
    "query_start": "server",
    "own_save_check": "server",
    "own_save_alone": "locmem",
    "own_save_values": "locmem",
    # Reachable on PostgreSQL only (see snapshot_transactions()); on SQLite the targeted tests
    # of tests/test_snapshot_loads.py switch it off instead.
    "snapshot_floor": "locmem",
    "computing": "locks",
}

#: Protections only reachable where the database runs transactions that read one snapshot.
SNAPSHOT_ONLY = {"snapshot_floor"}


#: Protections the harness does not switch off: the near cache's, as the harness runs no near
#: cache; their own tests switch them off.
ELSEWHERE = {
    "alias_marks": "tests/test_aliases.py",  # the harness runs on one alias
    "near_flush": "tests/test_near_cache.py",
    "near_ticket": "tests/test_near_cache.py",
}


def test_every_protection_has_a_mutation_row() -> None:
    assert set(MUTATIONS) | set(ELSEWHERE) == set(protections.NAMES)


@pytest.mark.parametrize("protection", sorted(MUTATIONS))
def test_with_one_protection_off_a_stale_value_is_found(settings: Any, protection: str) -> None:
    if protection in SNAPSHOT_ONLY and not snapshot_transactions():
        pytest.skip(
            f"{protection}: the SQLite test database has no snapshots to read from (shared-cache "
            "in-memory database); tests/test_snapshot_loads.py switches it off. Run with a "
            "PostgreSQL DATABASE_URL."
        )
    config = configure(settings, MUTATIONS[protection])
    with protections.switched_off(protection):
        outcome = run(config, HISTORIES, SEED)
    print(
        f"\n{protection} off ({MUTATIONS[protection]}) -> "
        f"first stale value after {outcome.histories} histories"
    )
    assert outcome.stale is not None, f"{protection} off: no stale value in {HISTORIES} histories"
