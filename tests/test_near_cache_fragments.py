"""``{% tagcache ... near=... %}``: fragments served from the near cache (L1), on a real Redis,
and dropped from it by an invalidation made in another process (tests/nearworker.py).

The test process shares the worker's cache settings (same Redis, same key prefix, same
staleness classes), so a tag the worker invalidates is the one this process cached under.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.template import Context, Template, TemplateSyntaxError

from django_tagcache.caching import near
from django_tagcache.caching.api import get_store
from django_tagcache.web.fragments import fragment_key
from tests.counting import CountingConnection, count
from tests.nearworker import STALENESS
from tests.test_near_cache import wait_serving
from tests.workers import Worker

NEAR = {"HEARTBEAT": 0.02, "MAX_LAG": 0.5}


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    found = Worker(str(django_settings.REDIS_URL), NEAR).wait_started()
    assert found.call("ready")["serving"]
    yield found
    found.close()


@pytest.fixture
def l1(settings: Any, worker: Worker) -> Iterator[near.Near]:
    """L1 on "default", configured as the worker's, with ``DEFAULT: False``: only ``near=True`` uses it."""
    settings.CACHES = {
        **settings.CACHES,
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": str(django_settings.REDIS_URL),
            "KEY_PREFIX": "nw",
            "OPTIONS": {"CONNECTION_POOL_KWARGS": {"connection_class": CountingConnection}},
        },
    }
    settings.TAGCACHE = {
        "CACHE": "default",
        "CLOCK_SKEW_MARGIN": 0,
        "STALENESS": STALENESS,
        "NEAR_CACHE": {"ALIASES": ["default"], "DEFAULT": False, **NEAR},
    }
    found = near.near_for("default", get_store("default"))
    assert found is not None
    assert found.channels[0].connected.wait(5)
    wait_serving(found)
    yield found
    near.reset()


def render(source: str, **context: Any) -> str:
    return Template("{% load tagcache %}" + source).render(Context(context))


def warm(found: near.Near, source: str, name: str, **context: Any) -> str:
    """Render until L1 holds the fragment (a read raced by its own write's push is not kept)."""
    entry = get_store().keys.entry(fragment_key(name))
    for _ in range(50):
        text = render(source, **context)
        if found.cache.get(entry) is not None:
            return text
        found.barrier()
    raise AssertionError(f"fragment {name!r} never reached L1")


MENU = '{% tagcache 600 "menu" tags="warm:menu" near=True %}menu {{ n }}{% endtagcache %}'


def test_a_fragment_hit_is_served_from_l1_with_no_redis_command(l1: near.Near) -> None:
    assert warm(l1, MENU, "menu", n=1) == "menu 1"
    with count() as tally:
        for _ in range(5):
            assert render(MENU, n=2) == "menu 1"
    assert tally.commands == []
    assert tally.round_trips == 0


def test_without_near_the_alias_default_applies(l1: near.Near) -> None:
    source = '{% tagcache 600 "plain" tags="warm:plain" %}plain {{ n }}{% endtagcache %}'
    render(source, n=1)
    for _ in range(3):
        with count() as tally:
            assert render(source, n=2) == "plain 1"
        assert tally.round_trips == 1  # DEFAULT is False: a GET each time
    assert l1.cache.get(get_store().keys.entry(fragment_key("plain"))) is None


def test_near_false_and_a_variable(l1: near.Near) -> None:
    source = '{% tagcache 600 "var" tags="warm:var" near=use %}var {{ n }}{% endtagcache %}'
    assert warm(l1, source, "var", n=1, use=True) == "var 1"
    with count() as tally:
        assert render(source, n=2, use=False) == "var 1"  # not from L1: one GET
    assert tally.round_trips == 1


def test_a_critical_tag_keeps_the_fragment_out_of_l1(l1: near.Near) -> None:
    source = '{% tagcache 600 "crit" tags="warm:c critical:c" near=True %}c {{ n }}{% endtagcache %}'
    render(source, n=1)
    for _ in range(3):
        with count() as tally:
            assert render(source, n=2) == "c 1"
        assert tally.round_trips == 1
    assert l1.cache.get(get_store().keys.entry(fragment_key("crit"))) is None


def test_an_invalidation_in_another_process_drops_the_fragment(l1: near.Near, worker: Worker) -> None:
    entry = get_store().keys.entry(fragment_key("menu"))
    assert warm(l1, MENU, "menu", n=1) == "menu 1"
    assert worker.call("invalidate", tags=["warm:menu"])["removed"] == 1
    l1.barrier()  # every push queued before now is applied: the worker's delete among them
    assert l1.cache.get(entry) is None
    assert render(MENU, n=2) == "menu 2"


@pytest.mark.parametrize("value", ['"yes"', "1", "missing"])
def test_near_takes_a_boolean(l1: near.Near, value: str) -> None:
    with pytest.raises(TemplateSyntaxError, match="near="):
        render('{% tagcache 600 "b" near=' + value + " %}x{% endtagcache %}")


def test_jinja2_takes_near(l1: near.Near) -> None:
    jinja2 = pytest.importorskip("jinja2")
    environment = jinja2.Environment(extensions=["django_tagcache.jinja2.TagCacheExtension"], autoescape=True)
    template = environment.from_string(
        '{% tagcache 600, "jmenu", tags="warm:jmenu", near=True %}j {{ n }}{% endtagcache %}'
    )
    entry = get_store().keys.entry(fragment_key("jmenu"))
    for _ in range(50):
        template.render(n=1)
        if l1.cache.get(entry) is not None:
            break
        l1.barrier()
    with count() as tally:
        assert template.render(n=2) == "j 1"
    assert tally.round_trips == 0
    with pytest.raises(jinja2.TemplateRuntimeError, match="near="):
        environment.from_string('{% tagcache 600, "jb", near="yes" %}x{% endtagcache %}').render()
