"""Tag normalisation and validation, with property tests over real Redis round trips."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_tagcache import TagCache, invalidate_tags, normalize_tags, register_resolver, tagcache
from django_tagcache.caching.tags import _reset_resolvers
from tests.counting import count

FORBIDDEN = set(" \t\n\r\x0b\x0c\x85\xa0\u1680\u2028\u2029\u3000") | {chr(c) for c in range(0x20)}

valid_tags = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="\x85\u180e"
    ),
    min_size=1,
    max_size=60,
).filter(lambda s: not any(c.isspace() for c in s))

PROPERTY = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_keys = itertools.count()


@given(st.lists(valid_tags, max_size=8))
def test_normalize_is_sorted_and_distinct(tags: list[str]) -> None:
    assert normalize_tags(tags) == tuple(sorted(set(tags)))


@given(valid_tags)
def test_a_string_is_one_tag_never_split(tag: str) -> None:
    assert normalize_tags(tag) == (tag,)


@given(valid_tags, st.sampled_from(sorted(FORBIDDEN)), valid_tags)
def test_whitespace_and_control_characters_are_rejected(head: str, bad: str, tail: str) -> None:
    with pytest.raises(ValueError, match="whitespace or control"):
        normalize_tags([head + bad + tail])


@pytest.mark.parametrize(
    ("bad", "error"),
    [("", ValueError), (None, TypeError), (3, TypeError), (b"bytes", TypeError), (object(), TypeError),
     (1.5, TypeError), ("x" * 257, ValueError), ("a\ud800", ValueError)],
)  # fmt: skip
def test_bad_tags_fail_before_touching_redis(tc: TagCache, bad: Any, error: type[Exception]) -> None:
    tc.get("warm")
    with count() as tally:
        with pytest.raises(error):
            tc.set("k", 1, tags=["ok", bad])
        with pytest.raises(error):
            tc.invalidate_tags(bad)
        with pytest.raises(error):
            tc.get_or_set("k", 1, tags=[bad])
    assert tally.round_trips == 0


def test_top_level_none_means_no_tags() -> None:
    assert normalize_tags(None) == ()


def test_nested_lists_and_sets() -> None:
    assert normalize_tags(["b", ("a", {"c"}), frozenset({"a"})]) == ("a", "b", "c")


def test_resolvers_teach_new_sources() -> None:
    class Thing:
        def __init__(self, n: int) -> None:
            self.n = n

    def resolve(obj: object) -> list[str] | None:
        return [f"thing:{obj.n}"] if isinstance(obj, Thing) else None

    previous = _reset_resolvers()
    try:
        register_resolver(resolve)
        register_resolver(resolve)
        assert normalize_tags([Thing(1), "x", [Thing(2)]]) == ("thing:1", "thing:2", "x")
    finally:
        _reset_resolvers(previous)


@pytest.mark.parametrize("tags", [["a*", "a?", "[ab]", "a", "ab"], ["café", "标签", "🏷️:7", "{b}", "a}:g"]])
def test_tags_are_literal_never_patterns(tc: TagCache, tags: list[str]) -> None:
    for i, tag in enumerate(tags):
        tc.set(f"k{i}", i, tags=[tag])
    for i, tag in enumerate(tags):
        assert tc.invalidate_tags(tag) == 1, tag
        assert tc.get(f"k{i}") is None
        assert [tc.get(f"k{j}") for j in range(i + 1, len(tags))] == list(range(i + 1, len(tags)))


@PROPERTY
@given(st.lists(valid_tags, min_size=1, max_size=4, unique=True), valid_tags)
def test_any_valid_tag_round_trips_through_redis(tc: TagCache, tags: list[str], other: str) -> None:
    key = f"prop{next(_keys)}"
    tc.set(key, "v", tags=tags)
    if other not in tags:
        assert tc.invalidate_tags(other) == 0
        assert tc.get(key) == "v"
    assert tc.invalidate_tags(tags[-1]) == 1
    assert tc.get(key) is None


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)


@PROPERTY
@given(values)
def test_any_value_round_trips(tc: TagCache, value: Any) -> None:
    key = f"val{next(_keys)}"
    tc.set(key, value, tags=["v"])
    assert tc.get(key, default=KeyError) == value


def test_nan_round_trips(tc: TagCache) -> None:
    tc.set("nan", math.nan, tags=["v"])
    assert math.isnan(tc.get("nan"))


@pytest.mark.parametrize(
    "call",
    [
        lambda: tagcache.set("k", 1, tags="category:7 promo"),
        lambda: tagcache.get_or_set("k", 1, tags="category:7 promo"),
        lambda: invalidate_tags("category:7 promo"),
        lambda: normalize_tags(["category:7 promo"]),
    ],
)
def test_a_space_separated_string_in_python_says_to_pass_a_list(call: Any) -> None:
    """Templates split tags="a b" on spaces; Python calls take one tag per string, and say so."""
    with pytest.raises(ValueError, match=r"pass a list: \['category:7', 'promo'\].*\{% tagcache %\}"):
        call()
