"""Fragment keys: every combination of vary-on values is its own entry, and a misspelt one is an error."""

from __future__ import annotations

from typing import Any

import pytest
from django.template import Context, Template, TemplateSyntaxError

from django_tagcache.web.fragments import fragment_key

pytestmark = pytest.mark.usefixtures("_default_cache")


@pytest.fixture
def _default_cache(settings: Any) -> None:
    settings.TAGCACHE = {"CACHE": "default"}


def render(source: str, **context: Any) -> str:
    return Template("{% load tagcache %}" + source).render(Context(context))


SHARED = '{% tagcache 600 "cart" a b %}{{ owner }}{% endtagcache %}'


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("alice:admin", "x"), ("alice", "admin:x")),  # joined with ':' they are one string
        (("a", "b:c"), ("a:b", "c")),
        ((None, "x"), ("None", "x")),
        (("", "x"), (None, "x")),
        ((1, 2), ("1", "2")),
        (("a b",), ("a", "b")),
    ],
)
def test_different_vary_on_values_have_different_keys(
    first: tuple[Any, ...], second: tuple[Any, ...]
) -> None:
    assert fragment_key("cart", list(first)) != fragment_key("cart", list(second))


def test_the_encoding_does_not_depend_on_the_name_either() -> None:
    assert fragment_key("a.b", ["c"]) != fragment_key("a", ["b.c"])
    assert fragment_key("cart", []) != fragment_key("cart", [""])


def test_values_that_join_alike_are_separate_entries_in_a_template() -> None:
    assert render(SHARED, a="alice:admin", b="x", owner="alice, admin") == "alice, admin"
    assert render(SHARED, a="alice", b="admin:x", owner="alice") == "alice"


def test_an_unknown_vary_on_variable_is_a_template_error() -> None:
    """Resolved to "", it would give every user the entry of the first one."""
    with pytest.raises(TemplateSyntaxError, match=r"request\.user\.pkk"):
        render('{% tagcache 600 "cart" request.user.pkk %}x{% endtagcache %}', request=None)
    with pytest.raises(TemplateSyntaxError, match="usr"):
        render('{% tagcache 600 "cart" usr.pk|default:"0" %}x{% endtagcache %}')


def test_a_vary_on_value_that_is_none_is_not_an_error() -> None:
    assert render('{% tagcache 600 "cart" user %}{{ n }}{% endtagcache %}', user=None, n=1) == "1"
    assert render('{% tagcache 600 "cart" user %}{{ n }}{% endtagcache %}', user="None", n=2) == "2"


def _jinja(source: str) -> Any:
    jinja2 = pytest.importorskip("jinja2")
    environment = jinja2.Environment(extensions=["django_tagcache.jinja2.TagCacheExtension"], autoescape=True)
    return environment.from_string(source)


def test_jinja2_none_and_the_string_none_are_separate_entries() -> None:
    template = _jinja('{% tagcache 600, "j-cart", user %}{{ n }}{% endtagcache %}')
    assert template.render(user=None, n=1) == "1"
    assert template.render(user="None", n=2) == "2"


def test_jinja2_an_undefined_vary_on_value_is_an_error() -> None:
    jinja2 = pytest.importorskip("jinja2")
    template = _jinja('{% tagcache 600, "j-cart", usr %}x{% endtagcache %}')
    with pytest.raises(jinja2.TemplateError, match="usr"):
        template.render(user=1)
