"""System checks and tag templates: bad configuration is reported at start-up, never in save()."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.checks import Error
from django.db import models
from django.test.utils import isolate_apps

from django_tagcache import register
from django_tagcache.checks import check_settings, check_tag_templates
from django_tagcache.orm.registry import TagTemplate, registry
from tests.testapp.models import Category, Product


@pytest.fixture
def restore_registry() -> Iterator[None]:
    saved = {model: (list(c.templates), list(c.errors)) for model, c in registry._configs.items()}
    yield
    for model, (templates, errors) in saved.items():
        config = registry.register(model)
        config.templates[:], config.errors[:] = templates, errors
    for model in set(registry._configs) - set(saved):
        registry.unregister(model)


def ids(messages: list[Any]) -> list[str]:
    return [message.id for message in messages]


@isolate_apps("tests.testapp")
def test_template_errors_are_precise() -> None:
    class Item(models.Model):
        name = models.CharField(max_length=10)
        owner = models.ForeignKey(Category, on_delete=models.CASCADE)

        class Meta:
            app_label = "shop"

    with pytest.raises(ValueError, match=r"\{nope\}, which is not a concrete field"):
        TagTemplate.parse(Item, "x:{nope}")
    with pytest.raises(ValueError, match=r"use \{owner_id\}"):
        TagTemplate.parse(Item, "owner:{owner}")
    with pytest.raises(ValueError, match="not a concrete field"):
        TagTemplate.parse(Item, "owner:{owner_id.x}")
    with pytest.raises(ValueError, match="malformed"):
        TagTemplate.parse(Item, "x:{name")
    with pytest.raises(ValueError, match="non-empty string"):
        TagTemplate.parse(Item, "")
    assert TagTemplate.parse(Item, "item:{pk}:{name!s}:{owner_id:>4}").names == ("pk", "name", "owner_id")


@pytest.mark.django_db
@pytest.mark.usefixtures("restore_registry")
def test_bad_template_is_a_check_error_and_save_still_works() -> None:
    assert check_tag_templates() == []
    register(Category, tags=["{nope}", "fine:{name}"])
    errors = check_tag_templates()
    assert ids(errors) == ["django_tagcache.E004"]
    assert "{nope}" in errors[0].msg
    category = Category.objects.create(name="ok")  # the bad template is skipped, never raised
    from django_tagcache import tags_for

    assert "fine:ok" in tags_for(category)


@pytest.mark.usefixtures("restore_registry")
def test_register_takes_a_list() -> None:
    with pytest.raises(TypeError, match="list of templates"):
        register(Category, tags="category:{pk}")


@pytest.mark.django_db
@pytest.mark.usefixtures("restore_registry")
def test_a_format_spec_that_does_not_fit_renders_nothing(caplog: pytest.LogCaptureFixture) -> None:
    register(Category, tags=["n:{name:d}"])
    category = Category.objects.create(name="text")
    from django_tagcache import tags_for

    assert not any(tag.startswith("n:") for tag in tags_for(category))
    assert "cannot render" in caplog.text


def test_rendering_keeps_tags_valid() -> None:
    template = TagTemplate.parse(Product, "name:{name}")
    assert template.render({"name": "50% off\tnow"}) == "name:50%25%20off%09now"
    assert template.render({"name": None}) is None
    long = template.render({"name": "x" * 500})
    assert long is not None
    assert len(long) < 200
    assert long == template.render({"name": "x" * 500})


def test_meta_option_is_accepted_on_any_model() -> None:
    assert Product._meta.original_attrs["cache_tags"] == ["category:{category_id}", "seller:{seller_id}"]


@pytest.mark.parametrize(
    ("tagcache", "caches", "expected"),
    [
        ({}, None, []),
        ({"CACHE": "missing"}, None, ["django_tagcache.E002"]),
        ({"CACHE": "dummy"}, None, ["django_tagcache.E003"]),
        ({"CHUNK_SIZE": 0}, None, ["django_tagcache.E001"]),
        ({"RETRY": {"ATTEMPTS": 0}}, None, ["django_tagcache.E001"]),
        ({"SCRIPT_MODE": "lua"}, None, ["django_tagcache.E001"]),
        ({"DEFAULT_TIMEOUT": "soon"}, None, ["django_tagcache.E001"]),
        ({"CHUNKSIZE": 10}, None, ["django_tagcache.W001"]),
    ],
)
def test_settings_checks(settings: Any, tagcache: dict[str, Any], caches: Any, expected: list[str]) -> None:
    settings.TAGCACHE = tagcache
    messages = check_settings()
    assert ids(messages) == expected
    assert all(isinstance(m, Error) for m in messages if str(m.id).startswith("django_tagcache.E"))


_INF, _NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    ("tagcache", "words"),
    [
        ({"DEFAULT_TIMEOUT": _INF}, "DEFAULT_TIMEOUT"),
        ({"DEFAULT_TIMEOUT": _NAN}, "DEFAULT_TIMEOUT"),
        ({"DEFAULT_TIMEOUT": 1e300}, "DEFAULT_TIMEOUT"),
        ({"STAMPEDE": {"LOCK_TTL": _INF}}, "LOCK_TTL"),
        ({"STAMPEDE": {"WAIT": _NAN}}, "WAIT"),
        ({"RETRY": {"BUDGET": _NAN}}, "BUDGET"),
        ({"RETRY": {"INITIAL_BACKOFF": _INF}}, "INITIAL_BACKOFF"),
        ({"CIRCUIT_BREAKER": {"RESET_TIMEOUT": _INF}}, "RESET_TIMEOUT"),
        ({"XFETCH_BETA": _INF}, "XFETCH_BETA"),
        ({"GENERATION_TTL": 10**20}, "GENERATION_TTL"),
        ({"STALENESS": {"CLASSES": {"forever": _INF}}}, "forever"),
        ({"STALENESS": {"CLASSES": {"odd": _NAN}}}, "odd"),
        ({"STALENESS": {"CLASSES": ["critical", 0]}}, "CLASSES"),
        ({"STALENESS": {"TAGS": ["label"]}}, "TAGS"),
        ({"NAMESPACE": "tests.tenancy.no_such_callable"}, "NAMESPACE"),
        ({"NAMESPACE": "no_such_module.tenant"}, "NAMESPACE"),
        ({"NAMESPACE": "tests.tenancy.current_tenant"}, "NAMESPACE"),  # a ContextVar: not callable
    ],
)
def test_a_setting_that_would_break_at_run_time_is_a_check_error(
    settings: Any, tagcache: dict[str, Any], words: str
) -> None:
    settings.TAGCACHE = tagcache
    messages = check_settings()
    assert ids(messages) == ["django_tagcache.E001"]
    assert words in messages[0].msg


def test_fragments_in_an_alias_left_out_of_tagcache_caches_are_a_warning(settings: Any) -> None:
    from django_tagcache.checks import check_invalidated_aliases

    settings.CACHES = {**settings.CACHES, "template_fragments": settings.CACHES["builtin"]}
    assert check_invalidated_aliases() == []  # by default, model writes reach it
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHES": ["builtin"]}
    [warning] = check_invalidated_aliases()
    assert warning.id == "django_tagcache.W007"
    assert "'template_fragments'" in warning.msg
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHES": ["template_fragments"]}
    assert check_invalidated_aliases() == []
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHES": [], "CACHE": "template_fragments"}
    assert check_invalidated_aliases() == []  # the alias model writes reach first


def test_pages_in_an_alias_left_out_of_tagcache_caches_are_a_warning(settings: Any) -> None:
    from django_tagcache.checks import check_invalidated_aliases

    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "django_tagcache.middleware.TagCacheMiddleware"]
    settings.TAGCACHE = {**settings.TAGCACHE, "CACHES": []}
    assert check_invalidated_aliases() == []  # pages go to TAGCACHE["CACHE"]
    settings.CACHE_MIDDLEWARE_ALIAS = "builtin"
    [warning] = check_invalidated_aliases()
    assert warning.id == "django_tagcache.W007"
    assert "CACHE_MIDDLEWARE_ALIAS" in warning.msg


def test_tagcache_caches_naming_an_alias_that_cannot_be_invalidated_is_an_error(settings: Any) -> None:
    from django_tagcache.checks import check_invalidated_aliases

    for wrong in ("dummy", "missing"):
        settings.TAGCACHE = {**settings.TAGCACHE, "CACHES": [wrong]}
        [error] = check_invalidated_aliases()
        assert error.id == "django_tagcache.E007"
        assert repr(wrong) in error.msg


def test_settings_read_on_every_write_follow_each_change_at_once(settings: Any) -> None:
    """conf keeps the settings each write reads once checked, and reads them again whenever
    settings.TAGCACHE is another dict, even one assigned without Django's setting_changed
    signal (a script's ``settings.TAGCACHE = ...`` after setup); a bad value raises every time."""
    from django.conf import settings as django_settings
    from django.core.exceptions import ImproperlyConfigured

    from django_tagcache.conf import conf

    settings.TAGCACHE = {"CACHE": "default", "OUTBOX": False, "CLOCK_SKEW_MARGIN": 0}
    assert (conf.OUTBOX, conf.CLOCK_SKEW_MARGIN, conf.NAMESPACE) == (False, 0.0, None)
    settings.TAGCACHE = {"CACHE": "other", "OUTBOX": True, "CLOCK_SKEW_MARGIN": 0.5, "NAMESPACE": "a.b"}
    assert (conf.CACHE, conf.OUTBOX, conf.CLOCK_SKEW_MARGIN, conf.NAMESPACE) == ("other", True, 0.5, "a.b")
    django_settings.TAGCACHE = {"CACHE": "third"}  # no signal; the fixture restores all at the end
    assert (conf.CACHE, conf.OUTBOX) == ("third", False)
    settings.TAGCACHE = {"CACHE": "default", "OUTBOX": "yes"}
    for _ in range(2):
        with pytest.raises(ImproperlyConfigured, match="OUTBOX"):
            conf.OUTBOX  # noqa: B018  # the read is the test
