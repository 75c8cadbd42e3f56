"""django_tagcache.testing: the helpers a project's own tests use, on the in-process store."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import TestCase, override_settings

from django_tagcache import TagCache, invalidate_tags, tagcache
from django_tagcache.testing import (
    Invalidations,
    assert_no_invalidations,
    assert_tags_invalidated,
    capture_invalidations,
    reset_tagcache,
)
from tests.testapp.models import Category, Product


def test_capture_sees_every_invalidation_in_order() -> None:
    with capture_invalidations() as captured:
        TagCache("locmem").set("k", 1, tags=["a"])
        TagCache("locmem").invalidate_tags("a", "b", source="test")
    assert [(c.tags, c.removed, c.source) for c in captured.calls] == [(("a", "b"), 1, "test")]
    assert (captured.tags, captured.removed, len(captured)) == ({"a", "b"}, 1, 1)
    invalidate_tags("after")  # the block is over: not captured
    assert captured.tags == {"a", "b"}


def test_assert_tags_invalidated_passes_and_fails_with_a_clear_message() -> None:
    with assert_tags_invalidated("a"):
        TagCache("locmem").invalidate_tags("a", "b")
    unexpected = pytest.raises(AssertionError, match="invalidated but not expected: b")
    with unexpected, assert_tags_invalidated("a", exact=True):
        TagCache("locmem").invalidate_tags("a", "b")
    with (
        pytest.raises(AssertionError, match=r"not invalidated: c .*Nothing was invalidated.*captureOnCommit"),
        assert_tags_invalidated("c"),
    ):
        pass
    with pytest.raises(AssertionError, match="Expected no invalidation, got: x"), assert_no_invalidations():
        TagCache("locmem").invalidate_tags("x")


def test_the_pytest_fixtures(tagcache_reset: None, tagcache_invalidations: Invalidations) -> None:
    TagCache("locmem").invalidate_tags("seen")
    assert tagcache_invalidations.tags == {"seen"}


def test_reset_empties_the_in_process_store() -> None:
    TagCache("locmem").set("k", 1)
    reset_tagcache()
    assert TagCache("locmem").get("k") is None


@override_settings(TAGCACHE={"CACHE": "locmem"})
class ModelWritesInATestCase(TestCase):
    """A project's TestCase, with the in-process store as its tag cache."""

    category: Category

    @classmethod
    def setUpTestData(cls) -> None:
        cls.category = Category.objects.create(name="c")

    def setUp(self) -> None:
        reset_tagcache()

    def test_a_save_invalidates_at_commit(self) -> None:
        category = self.category
        tagcache.set("list", [1], tags=[f"category:{category.pk}"])
        product = Product(name="p", category=category)
        with (
            assert_tags_invalidated(f"category:{category.pk}", Product),
            self.captureOnCommitCallbacks(execute=True),
        ):
            product.save()
        assert tagcache.get("list") is None

    def test_without_running_the_commit_hooks_nothing_is_invalidated(self) -> None:
        category = self.category
        hint = self.assertRaisesMessage(AssertionError, "captureOnCommitCallbacks(execute=True)")
        with hint, assert_tags_invalidated(Category):
            category.save()


@pytest.mark.django_db
def test_pytest_django_with_on_commit_callbacks(
    django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    settings.TAGCACHE = {"CACHE": "locmem"}
    with assert_tags_invalidated(Category), django_capture_on_commit_callbacks(execute=True):
        Category.objects.create(name="c")


@override_settings(TAGCACHE={"CACHE": "locmem"})
class WritesBeforeTheCapture(TestCase):
    """captureOnCommitCallbacks runs the callbacks registered inside its block; a write made earlier in
    the same test must not keep the block's writes from being invalidated."""

    def test_a_write_inside_the_block_after_one_before_it_is_invalidated(self) -> None:
        reset_tagcache()
        category = Category.objects.create(name="c")  # registers this transaction's commit hook
        with capture_invalidations() as captured, self.captureOnCommitCallbacks(execute=True):
            Product.objects.create(name="p", category=category)
        assert {"shop.product", f"category:{category.pk}"} <= captured.tags
