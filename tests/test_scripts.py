"""The Lua scripts on both paths: EVALSHA (with NOSCRIPT fallback) and Redis 7 Functions."""

from __future__ import annotations

import re

import pytest
import redis

from django_tagcache import TagCache
from django_tagcache.caching.api import get_store
from django_tagcache.core.cluster_store import ClusterTagStore
from django_tagcache.core.scripts import (
    SCRIPT_NAMES,
    ScriptRunner,
    library_code,
    library_name,
    server_major_version,
)


@pytest.fixture(params=["eval", "function"])
def mode_tc(request: pytest.FixtureRequest, alias: str, raw: redis.Redis, settings: object) -> TagCache:
    if request.param == "function" and server_major_version(raw) < 7:
        pytest.skip("Redis Functions need Redis 7")
    settings.TAGCACHE = {"SCRIPT_MODE": request.param}  # type: ignore[attr-defined]
    tc = TagCache(alias)
    assert tc.store.scripts.mode == request.param
    return tc


def test_full_cycle_on_each_path(mode_tc: TagCache) -> None:
    mode_tc.set("a", 1, tags=["t", "u"])
    assert mode_tc.get_or_set("b", lambda: 2, tags=["t"]) == 2
    assert mode_tc.invalidate_tags("t") == 2
    assert mode_tc.get("a") is None
    assert mode_tc.get("b") is None


def test_scripts_come_back_after_the_server_forgets_them(mode_tc: TagCache, raw: redis.Redis) -> None:
    mode_tc.set("a", 1, tags=["t"])
    raw.script_flush()
    if mode_tc.store.scripts.mode == "function":
        raw.function_flush()
    mode_tc.set("b", 2, tags=["t"])
    assert mode_tc.invalidate_tags("t") == 2


def test_auto_mode_picks_functions_on_redis_7(alias: str, raw: redis.Redis) -> None:
    expected = "function" if server_major_version(raw) >= 7 else "eval"
    assert TagCache(alias).store.scripts.mode == expected


def test_load_and_loaded(raw: redis.Redis) -> None:
    runner = ScriptRunner(raw, "eval")
    shas = runner.load()
    assert set(shas) == set(SCRIPT_NAMES)
    assert all(len(sha) == 40 for sha in shas.values())
    assert runner.loaded() == dict.fromkeys(SCRIPT_NAMES, True)
    raw.script_flush()
    assert runner.loaded() == dict.fromkeys(SCRIPT_NAMES, False)


def test_library_is_named_after_its_code() -> None:
    assert library_code().startswith(f"#!lua name={library_name()}\n")
    for name in SCRIPT_NAMES:
        assert f"'{library_name()}_{name}'" in library_code()


def test_an_interrupted_big_invalidation_is_finished_by_the_next_one(tc: TagCache, raw: redis.Redis) -> None:
    store = get_store(tc._alias)
    for i in range(30):
        tc.set(f"e{i}", i, tags=["big"])
    # Run only the first step with a tiny budget, as a caller that died before draining would.
    from django_tagcache.core.store import parse_invalidate, plan_invalidate

    options = store.options.__class__(**{**store.options.__dict__, "chunk_size": 10})
    if isinstance(store, ClusterTagStore):
        # On a cluster the first step deletes nothing (entries live in other slots): it sets the
        # index aside and records it in the tag's drains hash.
        drains = store.begin_invalidate(["big"])
        removed, pending = 0, [(d.aside, d.drains) for d in drains]
    else:
        keys, args = plan_invalidate(store.keys, options, ["big"])
        removed, pending = parse_invalidate(store.scripts("invalidate", keys, args), len(keys))
    assert removed == 0
    assert len(pending) == 1
    assert tc.get("e0") == 0  # not drained yet: the work is recorded, not lost
    tc.set("new", 1, tags=["big"])  # new writes start a fresh index
    assert tc.invalidate_tags("big") == 31
    assert all(tc.get(f"e{i}") is None for i in range(30))
    assert raw.exists(pending[0][1]) == 0


def test_an_interrupted_drain_is_found_among_other_tags(tc: TagCache, raw: redis.Redis) -> None:
    """The check for unfinished drains covers every tag of a call, not only its first or last."""
    store = get_store(tc._alias)
    if isinstance(store, ClusterTagStore):
        pytest.skip("the cluster records drains per tag slot (test above)")
    from django_tagcache.core.store import parse_invalidate, plan_invalidate

    for i in range(30):
        tc.set(f"e{i}", i, tags=["big"])
    tc.set("other", 0, tags=["a"])
    options = store.options.__class__(**{**store.options.__dict__, "chunk_size": 10})
    keys, args = plan_invalidate(store.keys, options, ["big"])
    _removed, pending = parse_invalidate(store.scripts("invalidate", keys, args), len(keys))
    assert tc.get("e0") == 0  # set aside, not drained: as a caller that died would leave it
    assert tc.invalidate_tags("a", "big", "c") == 31
    assert all(tc.get(f"e{i}") is None for i in range(30))
    assert raw.exists(pending[0][1]) == 0


@pytest.mark.parametrize("count", [1, 3, 150])
def test_an_invalidation_sends_few_arguments_and_reads_a_flat_reply_of_integers(
    mode_tc: TagCache, raw: redis.Redis, count: int
) -> None:
    """Every model write sends this call: its arguments do not grow with its tags (one random
    token for the call, no staleness budgets while they are all 0), and its reply is one flat
    array of integers (entries removed, then each tag's completion and the one it replaced)."""
    from django_tagcache.core.protocol import text
    from django_tagcache.core.store import parse_invalidate, plan_invalidate

    store = mode_tc.store
    if isinstance(store, ClusterTagStore):
        pytest.skip("the cluster has scripts of its own")
    tags = [f"t{i}" for i in range(count)]
    mode_tc.set("e", 1, tags=tags[:1])
    mode_tc.invalidate_tags(*tags)  # every tag has completed an invalidation before
    mode_tc.set("f", 1, tags=tags[-1:])
    keys, args = plan_invalidate(store.keys, store.options, tags)
    assert len(keys) == count
    assert len(args) == 5  # chunk size, generation TTL, drain guard, one token, no budgets
    before = [raw.get(base + ":g") for base in keys]
    reply = store.scripts("invalidate", keys, args)
    assert len(reply) == 1 + 2 * count
    assert all(type(item) is int for item in reply)
    assert parse_invalidate(reply, count) == (1, [])
    done, previous = reply[1::2], reply[2::2]
    assert len(set(done)) == 1  # one call, one moment
    assert all(0 < p < d for p, d in zip(previous, done, strict=True))
    # Each tag got a token of its own, new and never seen before, of the usual 32 hex digits.
    after = [raw.get(base + ":g") for base in keys]
    assert len(set(after)) == count
    assert not set(after) & set(before)
    assert all(re.fullmatch(r"[0-9a-f]{32}@[0-9]+", text(value or b"")) for value in after)
