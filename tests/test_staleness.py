"""Staleness budgets: soft purges serve the previous value, within its budget, while one caller refreshes."""

from __future__ import annotations

import contextvars
from typing import Any

import pytest

from django_tagcache import TagCache
from django_tagcache.caching.staleness import budget_ms
from django_tagcache.checks import check_tag_templates
from django_tagcache.core import metrics
from django_tagcache.orm.registry import registry
from tests.keyspace import Keys
from tests.testapp.models import Label

STALENESS = {"TAGS": {"promo": "best_effort", "promo:vip": "critical", "price": "important"}}


@pytest.fixture(autouse=True)
def _budgets(settings: Any) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "STALENESS": STALENESS}


def test_budgets_follow_the_longest_prefix_then_models_then_the_default() -> None:
    assert budget_ms("promo:summer") == 600_000
    assert budget_ms("promo:vip:1") == 0
    assert budget_ms("price:7") == 30_000
    assert budget_ms("shop.label:3") == 600_000  # Label's Meta.cache_staleness
    assert budget_ms("label-name:red") == 600_000  # ...which covers its templates' prefixes
    assert budget_ms("category:1") == 0  # critical by default


def soft(tc: TagCache) -> bool:
    return tc.store.standalone  # a cluster deletes at once: renaming entries would cross slots


def test_a_soft_purge_serves_the_old_value_while_one_caller_refreshes(tc: TagCache, keys: Keys) -> None:
    assert tc.get_or_set("banner", lambda: "old", tags=["promo:summer"]) == "old"
    assert tc.invalidate_tags("promo:summer") == 1
    assert tc.get("banner") is None  # plain reads never see stale data
    seen_meanwhile = []

    def refresh() -> str:
        # Another reader (another request: a context of its own) arrives while this one
        # recomputes: it gets the previous value at once.
        other = contextvars.Context()
        seen_meanwhile.append(
            other.run(tc.get_or_set, "banner", lambda: "computed twice", tags=["promo:summer"])
        )
        return "new"

    assert tc.get_or_set("banner", refresh, tags=["promo:summer"]) == "new"
    if soft(tc):
        assert seen_meanwhile == ["old"]
        assert metrics.snapshot()["stale_served"] == 1
    else:
        assert seen_meanwhile == ["computed twice"]
    assert tc.get("banner") == "new"
    assert keys.exists(tc.store.keys.entry("banner") + ":stale") == 0  # the fresh value replaced it


def test_the_stale_copy_lives_no_longer_than_the_budget(tc: TagCache, keys: Keys) -> None:
    tc.get_or_set("a", lambda: 1, timeout=None, tags=["price:1"])
    tc.get_or_set("b", lambda: 1, timeout=5, tags=["price:1"])
    tc.invalidate_tags("price:1")
    if not soft(tc):
        return
    assert 0 < keys.pttl(tc.store.keys.entry("a") + ":stale") <= 30_000  # the budget
    assert 0 < keys.pttl(tc.store.keys.entry("b") + ":stale") <= 5_000  # its own, shorter, life


def test_critical_tags_delete_at_once(tc: TagCache, keys: Keys) -> None:
    tc.get_or_set("k", lambda: "v", tags=["promo:vip:1"])
    tc.invalidate_tags("promo:vip:1")
    assert keys.exists(tc.store.keys.entry("k") + ":stale") == 0
    assert tc.get_or_set("k", lambda: "fresh", tags=["promo:vip:1"]) == "fresh"


def test_a_hard_purge_also_removes_the_stale_copy(tc: TagCache, keys: Keys) -> None:
    tc.get_or_set("k", lambda: "v1", tags=["promo:summer", "category:1"])
    tc.invalidate_tags("promo:summer")  # soft: a stale copy remains
    tc.get_or_set("k", lambda: "v2", tags=["promo:summer", "category:1"])
    tc.invalidate_tags("promo:summer")  # soft again: v2 becomes the stale copy
    tc.invalidate_tags("category:1")  # critical: nothing of k may be served any more
    assert keys.exists(tc.store.keys.entry("k") + ":stale") == 0


def test_soft_purges_of_big_tags_are_drained_softly(tc: TagCache, keys: Keys, settings: Any) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "CHUNK_SIZE": 10}
    tc = TagCache(tc._alias)
    for i in range(35):
        tc.get_or_set(f"k{i}", lambda i=i: i, tags=["promo:big"])
    assert tc.invalidate_tags("promo:big") == 35
    if soft(tc):
        assert all(keys.exists(tc.store.keys.entry(f"k{i}") + ":stale") for i in range(35))


def test_unknown_staleness_class_on_a_model_is_a_check_error() -> None:
    config = registry.register(Label)
    previous, config.staleness = config.staleness, "eventually"
    try:
        assert [m.id for m in check_tag_templates()] == ["django_tagcache.E005"]
    finally:
        config.staleness = previous


@pytest.mark.parametrize(
    "bad",
    [{"DEFAULT": "nope"}, {"TAGS": {"x": "nope"}}, {"CLASSES": {"slow": -1}}, {"OTHER": 1}],
)
def test_bad_staleness_settings_are_refused(settings: Any, bad: dict[str, Any]) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from django_tagcache.conf import conf

    settings.TAGCACHE = {"STALENESS": bad}
    with pytest.raises(ImproperlyConfigured):
        conf.STALENESS  # noqa: B018


def test_a_fragment_that_shows_a_stale_value_is_not_stored(tc: TagCache, keys: Keys) -> None:
    """The stale copy is fine to show within its budget, but never to bake into a cached fragment."""
    from django_tagcache.web.fragments import render_fragment

    if not soft(tc):
        pytest.skip("soft purges need a single server")
    alias = tc._alias or "default"
    tc.get_or_set("price", lambda: "old", tags=["promo:summer"])
    tc.invalidate_tags("promo:summer")
    # Another caller is refreshing the price right now: it holds the lock.
    assert tc.store.lock(tc.store.keys.entry("price"), "someone else", 10_000)
    text = render_fragment(
        alias=alias,
        key="price-box",
        timeout=60,
        tags=lambda: ("box",),
        render=lambda: f"<b>{tc.get_or_set('price', lambda: 'new', tags=['promo:summer'])}</b>",
    )
    assert text == "<b>old</b>"
    assert keys.exists(tc.store.keys.entry("price-box")) == 0


def test_a_get_or_set_around_a_stale_value_is_not_stored(tc: TagCache, keys: Keys) -> None:
    """An enclosing get_or_set (here without expiry) must not keep a stale copy beyond its budget."""
    if not soft(tc):
        pytest.skip("soft purges need a single server")
    tc.get_or_set("label", lambda: "old", tags=["shop.label:1"])
    tc.invalidate_tags("shop.label:1")  # best_effort (Label's Meta): a stale copy is kept
    assert tc.store.lock(tc.store.keys.entry("label"), "someone else", 10_000)

    def box() -> str:
        return f"[{tc.get_or_set('label', lambda: 'new', tags=['shop.label:1'])}]"

    assert tc.get_or_set("box", box, timeout=None, tags=["box"]) == "[old]"
    assert keys.exists(tc.store.keys.entry("box")) == 0


def test_a_models_rule_covers_its_own_tags_only() -> None:
    """shop.label's rule must not reach shop.labelprice, another model whose label it begins."""
    assert budget_ms("shop.label") == 600_000
    assert budget_ms("shop.label:3") == 600_000
    assert budget_ms("shop.labelprice") == 0
    assert budget_ms("shop.labelprice:3") == 0


def test_a_tags_entry_wins_over_a_models_longer_prefix(settings: Any) -> None:
    """TAGS first (its longest match), then the models: Label's "label-name:" must not beat "label"."""
    settings.TAGCACHE = {**settings.TAGCACHE, "STALENESS": {"TAGS": {"label": "critical"}}}
    assert budget_ms("label-name:red") == 0
    assert budget_ms("shop.label:3") == 600_000  # no TAGS entry matches: Label's own class
