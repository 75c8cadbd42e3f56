"""Tags used while a page renders bubble up to the collectors that are open."""

from __future__ import annotations

import pytest

from django_tagcache import TagCache, add_tags, cached, collect_tags


def test_get_or_set_and_add_tags_reach_every_open_collector(tc: TagCache) -> None:
    with collect_tags() as outer:
        tc.get_or_set("a", 1, tags=["x"])
        with collect_tags() as inner:
            tc.get_or_set("b", 2, tags=["y", "z"])
            add_tags("w")
        tc.get_or_set("a", 1, tags=["x"])  # a hit contributes too
    assert inner == {"y", "z", "w"}
    assert outer == {"x", "y", "z", "w"}


def test_cached_hits_contribute_their_tags(alias: str) -> None:
    @cached(timeout=60, tags=lambda n: [f"n:{n}"], cache=alias)
    def double(n: int) -> int:
        return 2 * n

    double(3)
    with collect_tags() as page:
        assert double(3) == 6
    assert page == {"n:3"}


def test_add_tags_outside_a_collector_validates_only() -> None:
    add_tags("fine")
    with pytest.raises(ValueError, match="whitespace"):
        add_tags("not fine")
