"""No tag count a user can reach crashes a call, and no invalidation holds Redis in one long call."""

from __future__ import annotations

from typing import Any

import pytest
from django.template import Context, Template

from django_tagcache import TagCache
from django_tagcache.core.store import TagStore
from tests.counting import count

# Lua's unpack() fails past about 8,000 values ("too many results to unpack").
MANY = 10_000


def many_tags(prefix: str = "t") -> list[str]:
    return [f"{prefix}{i}" for i in range(MANY)]


def test_get_or_set_takes_any_number_of_tags(tc: TagCache) -> None:
    tags = many_tags()
    assert tc.get_or_set("k", lambda: "v", tags=tags) == "v"
    assert tc.get("k") == "v"
    tc.invalidate_tags(tags[-1])
    assert tc.get("k") is None


def test_a_fragment_takes_any_number_of_tags(alias: str, settings: Any) -> None:
    settings.TAGCACHE = {"CACHE": alias}
    template = Template('{% load tagcache %}{% tagcache 600 "big" tags=tags %}{{ n }}{% endtagcache %}')
    tags = many_tags()
    assert template.render(Context({"tags": tags, "n": 1})) == "1"
    assert template.render(Context({"tags": tags, "n": 2})) == "1"
    TagCache(alias).invalidate_tags(tags[0])
    assert template.render(Context({"tags": tags, "n": 3})) == "3"


@pytest.mark.parametrize("alias", ["default", "redis62"])
def test_many_tags_are_invalidated_in_bounded_script_calls(tc: TagCache) -> None:
    """Each script call handles at most TAGS_PER_CALL tags, so none runs long (SLOWLOG: ./scripts/bench)."""
    tags = many_tags()
    for tag in tags[::1000]:
        tc.set(f"under {tag}", 1, tags=[tag])
    with count() as tally:
        removed = tc.invalidate_tags(*tags)
    calls = sum(command in ("FCALL", "EVALSHA") for command in tally.commands)
    assert calls == -(-MANY // TagStore.TAGS_PER_CALL) > 1
    # Pipelined: Redis serves other clients between the calls (EVALSHA first checks the script).
    assert tally.round_trips == (1 if tc.store.scripts.mode == "function" else 2)
    assert removed == 10
    assert all(tc.get(f"under {tag}") is None for tag in tags[::1000])
