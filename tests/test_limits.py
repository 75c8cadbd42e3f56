"""No tag count a user can reach crashes a call, and no invalidation holds Redis in one long call."""

from __future__ import annotations

from typing import Any

from django.template import Context, Template

from django_tagcache import TagCache

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
