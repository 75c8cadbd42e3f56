"""Declaring tags in ``class Meta``: mistakes get a clear message at start-up, never a raw TypeError."""

from __future__ import annotations

import pytest
from django.db import models
from django.test.utils import isolate_apps

from django_tagcache.orm.registry import TagTemplate, TemplateError
from tests.testapp.models import Category


@isolate_apps("tests.testapp")
@pytest.mark.parametrize("template", ["category {category_id}", "a\tb:{pk}", "x:{pk} "])
def test_a_template_with_whitespace_is_an_error_not_percent_encoded(template: str) -> None:
    class Item(models.Model):
        category = models.ForeignKey(Category, on_delete=models.CASCADE)

        class Meta:
            app_label = "shop"

    with pytest.raises(TemplateError, match="cannot hold whitespace"):
        TagTemplate.parse(Item, template)


@isolate_apps("tests.testapp")
@pytest.mark.parametrize(("attribute", "meant"), [("cache_tag", "cache_tags"), ("cachetags", "cache_tags")])
def test_a_misspelt_meta_option_is_a_check_error(attribute: str, meant: str) -> None:
    meta = type("Meta", (), {"app_label": "shop", attribute: ["x:{pk}"]})
    model = type("Item", (models.Model,), {"__module__": __name__, "Meta": meta})
    from django_tagcache.orm.registry import misspelt_options

    (message,) = misspelt_options(model)
    assert f"Meta.{attribute}" in message
    assert f"did you mean {meant}" in message
