"""Namespaces: tenants share a Redis but never each other's entries or purges."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis

from django_tagcache import TagCache
from django_tagcache.caching.namespaces import in_namespace, validate
from django_tagcache.signals import tags_invalidated
from tests.tenancy import current_tenant


@pytest.fixture(autouse=True)
def _namespaced(settings: Any) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "NAMESPACE": "tests.tenancy.tenant"}


@contextmanager
def tenant(name: str | None) -> Iterator[None]:
    token = current_tenant.set(name)
    try:
        yield
    finally:
        current_tenant.reset(token)


def test_tenants_have_separate_entries(tc: TagCache) -> None:
    with tenant("acme"):
        tc.set("menu", "acme menu", tags=["menu"])
    with tenant("globex"):
        assert tc.get("menu") is None
        tc.set("menu", "globex menu", tags=["menu"])
    with tenant("acme"):
        assert tc.get("menu") == "acme menu"
    assert tc.get("menu") is None  # no namespace is a namespace of its own


def test_a_purge_stays_in_its_namespace(tc: TagCache) -> None:
    for name in ("acme", "globex"):
        with tenant(name):
            tc.set("menu", name, tags=["menu"])
    with tenant("acme"):
        assert tc.invalidate_tags("menu") == 1
        assert tc.get("menu") is None
    with tenant("globex"):
        assert tc.get("menu") == "globex"


def test_a_purge_of_every_namespace_is_explicit_and_names_its_source(tc: TagCache) -> None:
    for name in ("acme", "globex", None):
        with tenant(name):
            tc.set("menu", name, tags=["menu*"])
            tc.set("other", name, tags=["menu-x"])
    with pytest.raises(ValueError, match="source="):
        tc.invalidate_tags("menu*", all_namespaces=True)
    seen: list[dict[str, Any]] = []

    def receiver(**kwargs: Any) -> None:
        seen.append(kwargs)

    tags_invalidated.connect(receiver)
    try:
        assert tc.invalidate_tags("menu*", all_namespaces=True, source="ops:alice") == 3
    finally:
        tags_invalidated.disconnect(receiver)
    assert {s["source"] for s in seen} == {"ops:alice"}
    for name in ("acme", "globex", None):
        with tenant(name):
            assert tc.get("menu") is None
            assert tc.get("other") == name  # "menu*" is literal: "menu-x" is untouched


def test_tags_cannot_reach_another_namespace(tc: TagCache, raw: redis.Redis) -> None:
    with tenant("globex"):
        tc.set("k", "secret", tags=["t"])
    with tenant("acme"):
        for tag in ("}:n:globex:t:{t", "n:globex:t:{t}", "t"):
            assert tc.invalidate_tags(tag) == 0
    with tenant("globex"):
        assert tc.get("k") == "secret"


@pytest.mark.parametrize("bad", ["", "a:b", "a b", "{x}", "x" * 65, "é"])
def test_invalid_namespaces_are_refused(tc: TagCache, bad: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        validate(bad)
    with tenant(bad), pytest.raises(ValueError, match="namespace"):
        tc.get("k")


def test_in_namespace_overrides_the_callable(tc: TagCache) -> None:
    with tenant("acme"):
        tc.set("k", "acme", tags=["t"])
    with in_namespace("acme"):
        assert tc.get("k") == "acme"
