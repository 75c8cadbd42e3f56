"""``{% tagcache %}`` against a real Redis, once per supported backend."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import redis
from django.template import Context, Template, TemplateSyntaxError

from django_tagcache import TagCache, add_tags, cached, collect_tags, register_resolver
from django_tagcache.caching import tags
from django_tagcache.caching.api import get_store
from django_tagcache.core import metrics
from django_tagcache.web.fragments import fragment_key
from tests import keyspace
from tests.counting import count
from tests.keyspace import Keys
from tests.servers import free_port
from tests.views import Count


@pytest.fixture(autouse=True)
def _fragments_go_to_alias(alias: str, settings: Any) -> None:
    """Fragments without using= go to TAGCACHE['CACHE']: the backend under test."""
    settings.TAGCACHE = {"CACHE": alias}


def render(source: str, alias: str, **context: Any) -> str:
    """Render a template string with ``{% load tagcache %}`` and ``alias`` in its context."""
    template = Template("{% load tagcache %}" + source)
    return template.render(Context({"alias": alias, **context}))


def pttl(alias: str, name: str, vary_on: Iterable[object] = ()) -> int:
    """The fragment entry's PTTL: -2 missing, -1 no expiry."""
    return keyspace.pttl(alias, get_store(alias).keys.entry(fragment_key(name, list(vary_on))))


CARD = '{% tagcache 600 "card" pk tags=tags using=alias %}card {{ pk }} {{ counter }}{% endtagcache %}'


def test_a_hit_serves_the_first_render(alias: str) -> None:
    counter = Count()
    assert render(CARD, alias, pk=1, tags="t", counter=counter) == "card 1 1"
    assert render(CARD, alias, pk=1, tags="t", counter=counter) == "card 1 1"
    assert counter.n == 1
    assert metrics.snapshot()["hits"] == 1


def test_vary_on_values_make_separate_entries(alias: str) -> None:
    counter = Count()
    assert render(CARD, alias, pk=1, tags="t", counter=counter) == "card 1 1"
    assert render(CARD, alias, pk=2, tags="t", counter=counter) == "card 2 2"
    assert render(CARD, alias, pk=1, tags="t", counter=counter) == "card 1 1"
    assert render(CARD, alias, pk=2, tags="t", counter=counter) == "card 2 2"
    assert counter.n == 2


def test_the_key_is_fragment_key_and_quotes_do_not_count(alias: str) -> None:
    render('{% tagcache 600 "card" 7 %}x{% endtagcache %}', alias)
    assert render("{% tagcache 600 card 7 %}y{% endtagcache %}", alias) == "x"
    assert TagCache(alias).delete(fragment_key("card", [7]))
    assert render("{% tagcache 600 card 7 %}y{% endtagcache %}", alias) == "y"


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [("None", -1), ("600", 600_000), ("timeout", 30_000)],
)
def test_timeouts_none_and_positive(alias: str, timeout: str, expected: int) -> None:
    render(f'{{% tagcache {timeout} "f" tags="t" %}}x{{% endtagcache %}}', alias, timeout=30)
    ttl = pttl(alias, "f")
    if expected == -1:
        assert ttl == -1
    else:  # shortened by up to TTL_JITTER (0.1 by default), like every computed entry
        assert expected * 0.9 - 5_000 < ttl <= expected


@pytest.mark.parametrize("timeout", ["0", "-5"])
def test_timeout_zero_or_less_renders_every_time_and_stores_nothing(alias: str, timeout: str) -> None:
    counter = Count()
    source = f'{{% tagcache {timeout} "f" tags="t" %}}{{{{ counter }}}}{{% endtagcache %}}'
    assert render(source, alias, counter=counter) == "1"
    assert render(source, alias, counter=counter) == "2"
    assert pttl(alias, "f") == -2


def test_timeout_zero_serves_an_existing_entry_then_never_stores_as_djangos_cache_tag(alias: str) -> None:
    # Django's {% cache %} reads before it looks at the timeout; so does {% tagcache %}.
    render('{% tagcache 600 "f" %}first{% endtagcache %}', alias)
    assert render('{% tagcache 0 "f" %}second{% endtagcache %}', alias) == "first"
    TagCache(alias).delete(fragment_key("f"))
    assert render('{% tagcache 0 "f" %}third{% endtagcache %}', alias) == "third"
    assert pttl(alias, "f") == -2


@pytest.mark.parametrize("timeout", ['"soon"', "missing", "1.5.2"])
def test_a_bad_timeout_is_a_template_error(alias: str, timeout: str) -> None:
    with pytest.raises(TemplateSyntaxError):
        render(f'{{% tagcache {timeout} "f" %}}x{{% endtagcache %}}', alias)


def test_too_few_arguments_is_a_template_error(alias: str) -> None:
    with pytest.raises(TemplateSyntaxError, match="at least 2 arguments"):
        render("{% tagcache 600 %}x{% endtagcache %}", alias)


def test_using_picks_the_cache_alias(alias: str) -> None:
    other = "builtin" if alias == "default" else "default"
    render('{% tagcache 600 "f" tags="t" using=other %}x{% endtagcache %}', alias, other=other)
    assert pttl(other, "f") > 0
    assert pttl(alias, "f") == -2  # the two aliases have different key prefixes
    TagCache(alias).invalidate_tags("t")
    assert pttl(other, "f") > 0
    TagCache(other).invalidate_tags("t")
    assert pttl(other, "f") == -2


@pytest.mark.parametrize("using", ['"nope"', '"dummy"', "missing"])
def test_an_unknown_or_unsupported_alias_is_a_template_error(alias: str, using: str) -> None:
    with pytest.raises(TemplateSyntaxError, match="Invalid cache name"):
        render(f'{{% tagcache 600 "f" using={using} %}}x{{% endtagcache %}}', alias)


def test_without_using_the_fragment_goes_to_tagcache_cache(alias: str) -> None:
    render('{% tagcache 600 "f" %}x{% endtagcache %}', alias)
    assert pttl(alias, "f") > 0


class Thing:
    """A stand-in for a model instance; the ORM's resolver is tested with real models elsewhere."""

    def __init__(self, pk: int) -> None:
        self.pk = pk


def _resolve_things(source: object) -> list[str] | None:
    if isinstance(source, Thing):
        return [f"thing:{source.pk}"]
    if source is Thing:
        return ["thing"]
    return None


@pytest.fixture
def things() -> Iterator[None]:
    previous = list(tags._resolvers)
    register_resolver(_resolve_things)
    yield
    tags._reset_resolvers(previous)


@pytest.mark.usefixtures("things")
@pytest.mark.parametrize(
    ("expression", "value", "expected"),
    [
        ('"promo"', None, ["promo"]),
        ('"category:7 promo"', None, ["category:7", "promo"]),
        ("value", "category:7  promo", ["category:7", "promo"]),
        ("value", ["a", "b"], ["a", "b"]),
        ("value", ("a", ["b", "c"]), ["a", "b", "c"]),
        ("value", Thing(3), ["thing:3"]),
        ("value", [Thing(3), Thing, "x"], ["thing", "thing:3", "x"]),
    ],
)
def test_every_kind_of_tag_source(alias: str, expression: str, value: object, expected: list[str]) -> None:
    source = f'{{% tagcache 600 "f" tags={expression} using=alias %}}{{{{ counter }}}}{{% endtagcache %}}'
    counter = Count()
    render(source, alias, value=value, counter=counter)
    for n, tag in enumerate(expected, start=1):
        assert render(source, alias, value=value, counter=counter) == str(n)
        TagCache(alias).invalidate_tags(tag)
        assert render(source, alias, value=value, counter=counter) == str(n + 1)


def test_an_unknown_variable_in_tags_is_a_template_error(alias: str) -> None:
    with pytest.raises(TemplateSyntaxError, match="unknown variable in tags="):
        render('{% tagcache 600 "f" tags=produt %}x{% endtagcache %}', alias)


@pytest.mark.parametrize("value", [["a b"], [None], 42])
def test_bad_tags_are_a_template_error(alias: str, value: object) -> None:
    with pytest.raises(TemplateSyntaxError, match="bad tags"):
        render('{% tagcache 600 "f" tags=value %}x{% endtagcache %}', alias, value=value)


def test_tags_are_only_resolved_on_a_miss(alias: str) -> None:
    calls: list[int] = []

    def tags_of() -> str:
        calls.append(1)
        return "t"

    render('{% tagcache 600 "f" tags=tags_of %}x{% endtagcache %}', alias, tags_of=tags_of)
    render('{% tagcache 600 "f" tags=tags_of %}x{% endtagcache %}', alias, tags_of=tags_of)
    assert calls == [1]


NESTED = '{% include "tagcache_tests/nested.html" %}'
INNER = '{% include "tagcache_tests/inner.html" %}'


def test_nested_fragments_bubble_through_two_levels(alias: str) -> None:
    counter = Count()
    assert render(NESTED, alias, counter=counter).strip() == "[outer 1 (inner <innermost 2>)]"
    assert render(NESTED, alias, counter=counter).strip() == "[outer 1 (inner <innermost 2>)]"
    TagCache(alias).invalidate_tags("innermost")  # removes innermost, inner and outer
    assert render(NESTED, alias, counter=counter).strip() == "[outer 3 (inner <innermost 4>)]"
    TagCache(alias).invalidate_tags("inner")  # removes inner and outer; innermost is served
    assert render(NESTED, alias, counter=counter).strip() == "[outer 5 (inner <innermost 4>)]"
    TagCache(alias).invalidate_tags("outer")
    assert render(NESTED, alias, counter=counter).strip() == "[outer 6 (inner <innermost 4>)]"


def test_an_inner_fragment_served_from_the_cache_still_tags_the_outer(alias: str, raw: redis.Redis) -> None:
    counter = Count()
    assert render(INNER, alias, counter=counter).strip() == "(inner <innermost 1>)"
    # The outer fragment misses, the inner one is a hit: its tags come from its entry.
    assert render(NESTED, alias, counter=counter).strip() == "[outer 2 (inner <innermost 1>)]"
    store = get_store(alias)
    outer = store.keys.entry(fragment_key("outer"))
    assert raw.zscore(store.keys.index("innermost"), outer) is not None
    assert raw.zscore(store.keys.index("inner"), outer) is not None
    TagCache(alias).invalidate_tags("innermost")
    assert store.get(outer) is None
    assert render(NESTED, alias, counter=counter).strip() == "[outer 3 (inner <innermost 4>)]"


def test_get_or_set_cached_and_add_tags_inside_a_fragment_tag_it(alias: str) -> None:
    tc = TagCache(alias)

    @cached(timeout=60, tags=lambda n: [f"n:{n}"], cache=alias)
    def square(n: int) -> int:
        return n * n

    def body() -> str:
        add_tags("added")
        return f"{tc.get_or_set('v', 1, tags=['value'])} {square(3)}"

    square(3)  # a hit inside the fragment must contribute its tags too
    source = '{% tagcache 600 "f" %}{{ body }} {{ counter }}{% endtagcache %}'
    counter = Count()
    assert render(source, alias, body=body, counter=counter) == "1 9 1"
    for n, tag in enumerate(["added", "value", "n:3"], start=2):
        tc.invalidate_tags(tag)
        assert render(source, alias, body=body, counter=counter) == f"1 9 {n}"
        assert render(source, alias, body=body, counter=counter) == f"1 9 {n}"


def test_a_hit_hands_its_tags_to_an_open_collector(alias: str) -> None:
    render(NESTED, alias, counter=Count())
    with collect_tags() as page:
        render(NESTED, alias, counter=Count())
    assert page == {"outer", "inner", "innermost"}


def _invalidating(alias: str, *tag_names: str) -> Any:
    def invalidate() -> str:
        TagCache(alias).invalidate_tags(*tag_names)
        return ""

    return invalidate


def test_an_invalidation_of_its_own_tag_while_rendering_refuses_the_write(alias: str) -> None:
    source = '{% tagcache 600 "f" tags="t" %}{{ counter }}{{ invalidate }}{% endtagcache %}'
    counter = Count()
    assert render(source, alias, counter=counter, invalidate=_invalidating(alias, "t")) == "1"
    assert pttl(alias, "f") == -2
    assert metrics.snapshot()["refused_writes"] == 1
    assert render(source, alias, counter=counter, invalidate="") == "2"
    assert render(source, alias, counter=counter, invalidate="") == "2"


def test_an_invalidation_of_a_tag_found_while_rendering_refuses_the_write(alias: str) -> None:
    tc = TagCache(alias)
    tc.set("price", 10, tags=["product:1"])

    def price() -> int:
        # A hit: the value was read after the tag was noted (and its token read).
        value: int = tc.get_or_set("price", lambda: 12, tags=["product:1"])
        tc.invalidate_tags("product:1")  # a writer commits while the fragment renders
        return value

    source = '{% tagcache 600 "f" %}{{ price }}{% endtagcache %}'
    assert render(source, alias, price=price) == "10"
    assert pttl(alias, "f") == -2
    assert metrics.snapshot()["refused_writes"] >= 1


def test_an_invalidation_of_an_inner_fragments_tag_refuses_the_outer_write(alias: str) -> None:
    counter = Count()
    render(INNER, alias, counter=counter)  # inner and innermost cached
    source = '{% tagcache 600 "outer" %}' + INNER + "{{ invalidate }}{% endtagcache %}"
    # The inner fragment is served (vouching for its tokens), then "innermost" is invalidated.
    assert "innermost 1" in render(
        source, alias, counter=counter, invalidate=_invalidating(alias, "innermost")
    )
    assert pttl(alias, "outer") == -2
    assert "innermost 2" in render(source, alias, counter=counter, invalidate="")
    assert pttl(alias, "outer") > 0


def test_an_expired_generation_heals_instead_of_refusing_for_ever(alias: str, keys: Keys) -> None:
    counter = Count()
    render(INNER, alias, counter=counter)
    # GENERATION_TTL ran out for "inner": the inner entry's tokens can no longer vouch for it.
    keys.delete(get_store(alias).keys.generation("inner"))
    assert render(NESTED, alias, counter=counter).strip() == "[outer 2 (inner <innermost 1>)]"
    assert pttl(alias, "outer") == -2  # refused, and the inner entry that could not vouch is deleted
    assert pttl(alias, "inner") == -2
    assert pttl(alias, "innermost") > 0  # its tokens were still current: kept
    assert render(NESTED, alias, counter=counter).strip() == "[outer 3 (inner <innermost 1>)]"
    assert pttl(alias, "outer") > 0


def _standalone_only(alias: str) -> None:
    if alias == "cluster":
        pytest.skip("on Redis Cluster a miss groups its script calls by slot (see the cluster tests)")


def test_a_fragment_hit_is_one_get(alias: str) -> None:
    keyspace.skip_in_process(alias)
    render(NESTED, alias, counter=Count())
    with count() as tally:
        render(NESTED, alias, counter=Count())
    assert (tally.round_trips, tally.commands) == (1, ["GET"])
    with collect_tags(), count() as tally:
        render(NESTED, alias, counter=Count())
    assert (tally.round_trips, tally.commands) == (1, ["GET"])


def test_a_fragment_miss_reads_generations_once_and_writes_once(alias: str) -> None:
    keyspace.skip_in_process(alias)
    _standalone_only(alias)
    TagCache(alias).store.scripts.load()
    with count() as tally:
        render('{% tagcache 600 "f" tags="a b c" %}x{% endtagcache %}', alias)
    # GET, generations of a b c, the single-flight lock, the checked write (which releases it).
    assert tally.round_trips == 4
    assert tally.commands[0] == "GET"
    assert tally.commands[2] == "SET"


def test_nested_misses_read_each_tag_once(alias: str) -> None:
    keyspace.skip_in_process(alias)
    _standalone_only(alias)
    TagCache(alias).store.scripts.load()
    with count() as tally:
        render(NESTED, alias, counter=Count())
    # Per fragment: GET, one generation read (its own tag), the lock, one write.
    assert tally.round_trips == 12


# --- Jinja2 ------------------------------------------------------------------------------------


def _jinja(source: str) -> Any:
    jinja2 = pytest.importorskip("jinja2")
    environment = jinja2.Environment(extensions=["django_tagcache.jinja2.TagCacheExtension"], autoescape=True)
    return environment.from_string(source)


def test_jinja2_caches_tags_and_bubbles(alias: str) -> None:
    inner = _jinja(
        '{% tagcache 600, "j-inner", pk, tags="inner pk:" ~ pk %}<b>{{ counter }}</b>{% endtagcache %}'
    )
    outer = _jinja(
        '{% tagcache None, "j-outer", tags=["outer"] %}'
        "[{{ inner.render(pk=1, counter=counter) | safe }}]"
        "{% endtagcache %}"
    )
    counter = Count()
    assert outer.render(inner=inner, counter=counter) == "[<b>1</b>]"
    assert outer.render(inner=inner, counter=counter) == "[<b>1</b>]"
    assert pttl(alias, "j-outer") == -1
    TagCache(alias).invalidate_tags("pk:1")  # a tag of the inner fragment, bubbled up to the outer one
    assert outer.render(inner=inner, counter=counter) == "[<b>2</b>]"


def test_jinja2_escapes_once(alias: str) -> None:
    template = _jinja('{% tagcache 600, "j-escape" %}{{ text }}{% endtagcache %}')
    assert template.render(text="<x>") == "&lt;x&gt;"
    assert template.render(text="<y>") == "&lt;x&gt;"


def test_jinja2_rejects_unknown_keywords(alias: str) -> None:
    jinja2 = pytest.importorskip("jinja2")
    with pytest.raises(jinja2.TemplateSyntaxError, match="tags=, using= and near="):
        _jinja('{% tagcache 600, "j", colour="red" %}x{% endtagcache %}')


def test_a_foreign_value_under_a_fragments_key_is_a_miss(alias: str) -> None:
    TagCache(alias).set(fragment_key("f"), "not a fragment", tags=["t"])
    assert render('{% tagcache 600 "f" %}rendered{% endtagcache %}', alias) == "rendered"
    assert render('{% tagcache 600 "f" %}again{% endtagcache %}', alias) == "rendered"


def _dead_redis(settings: Any) -> None:
    """Point the cache alias "dead" at a port nothing listens on, and make it TAGCACHE['CACHE']."""
    settings.CACHES = {
        **settings.CACHES,
        "dead": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        },
    }
    settings.TAGCACHE = {"CACHE": "dead", "RETRY": {"ATTEMPTS": 1}}


def test_an_unreachable_redis_renders_without_the_cache(settings: Any) -> None:
    _dead_redis(settings)
    counter = Count()
    assert render(NESTED, "dead", counter=counter).strip() == "[outer 1 (inner <innermost 2>)]"
    assert render(NESTED, "dead", counter=counter).strip() == "[outer 3 (inner <innermost 4>)]"
    assert metrics.snapshot()["failures"] > 0
    assert metrics.snapshot()["stores"] == 0


def test_a_stale_value_served_inside_a_fragment_keeps_it_from_being_stored(alias: str) -> None:
    from django_tagcache.caching.scopes import served_stale

    def stale() -> str:
        served_stale(["soft"])  # what serving a soft-purged value within its budget reports
        return "old"

    source = (
        '{% tagcache 600 "outer" %}{% tagcache 600 "inner" %}{{ stale }}{% endtagcache %}{% endtagcache %}'
    )
    assert render(source, alias, stale=stale) == "old"
    assert pttl(alias, "inner") == -2
    assert pttl(alias, "outer") == -2
