"""A purge's record and the caller's transaction: Redis does not roll back, so neither does the record.

A purge inside a transaction (an admin action under ATOMIC_REQUESTS, code calling the purge API
in an ``atomic()`` block) happens in Redis at once. Its record must outlive a rollback of that
transaction (or of the savepoint it was written in), be written once when the transaction
commits, and never appear for a purge that did not happen. The transactions here are real
(``transaction=True``): they commit and roll back on the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client
from django.urls import reverse

from django_tagcache import TagCacheUnavailable, invalidate_tags, tagcache
from django_tagcache.models import PurgeRecord
from django_tagcache.ops.audit import purge_tags
from django_tagcache.signals import tags_invalidated
from tests.servers import RedisServer
from tests.testapp.models import Category, Product

pytestmark = pytest.mark.django_db(transaction=True)


def _rows() -> list[tuple[str, list[str], int, str]]:
    return [(r.source, r.tags, r.removed, r.error) for r in PurgeRecord.objects.order_by("pk")]


def test_a_purge_in_a_rolled_back_transaction_keeps_its_record() -> None:
    tagcache.set("k", 1, tags=["promo"])
    with transaction.atomic():
        Category.objects.create(name="undone")
        assert purge_tags(["promo"], source="command:test") == 1
        transaction.set_rollback(True)
    assert tagcache.get("k") is None  # Redis did the purge
    assert not Category.objects.exists()  # the caller's own work is undone
    assert _rows() == [("command:test", ["promo"], 1, "")]


def test_an_api_purge_in_a_rolled_back_transaction_keeps_its_record() -> None:
    tagcache.set("k", 1, tags=["promo"])
    with transaction.atomic():
        assert invalidate_tags("promo", source="deploy:7") == 1
        transaction.set_rollback(True)
    assert tagcache.get("k") is None
    assert _rows() == [("deploy:7", ["promo"], 1, "")]


def test_a_purge_in_a_rolled_back_savepoint_keeps_its_record_once() -> None:
    tagcache.set("k", 1, tags=["promo"])
    with transaction.atomic():
        with transaction.atomic():
            purge_tags(["promo"], source="command:test")
            transaction.set_rollback(True)  # back to the savepoint
        assert _rows() == [("command:test", ["promo"], 1, "")]  # written again, in the outer transaction
    assert _rows() == [("command:test", ["promo"], 1, "")]


def test_a_purge_in_a_savepoint_then_a_rolled_back_transaction_keeps_its_record_once() -> None:
    with transaction.atomic():
        with transaction.atomic():
            purge_tags(["a"], source="inner")
            transaction.set_rollback(True)
        purge_tags(["b"], source="outer")
        transaction.set_rollback(True)
    assert sorted(r[0] for r in _rows()) == ["inner", "outer"]


def test_a_committed_purge_is_recorded_once_and_a_later_rollback_adds_nothing() -> None:
    with transaction.atomic():
        purge_tags(["a"], source="committed")
    with transaction.atomic():
        Category.objects.create(name="undone")
        transaction.set_rollback(True)
    assert [r[0] for r in _rows()] == ["committed"]


def test_a_rolled_back_transaction_without_a_purge_records_nothing() -> None:
    with transaction.atomic():
        Category.objects.create(name="undone")
        with pytest.raises(ValueError, match="empty"):
            purge_tags([""], source="bad input")  # refused before Redis is touched: no purge
        transaction.set_rollback(True)
    with transaction.atomic():
        invalidate_tags("plain")  # no source: not audited
        transaction.set_rollback(True)
    assert _rows() == []


@pytest.fixture
def stopped_redis(settings: Any) -> Iterator[str]:
    server = RedisServer.start()
    settings.CACHES = {
        **settings.CACHES,
        "own": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": server.url},
    }
    settings.TAGCACHE = {**settings.TAGCACHE, "RETRY": {"ATTEMPTS": 1}}
    server.stop()
    try:
        yield "own"
    finally:
        server.stop()


def test_a_failed_purge_in_a_rolled_back_transaction_keeps_its_record(stopped_redis: str) -> None:
    with transaction.atomic():
        with pytest.raises(TagCacheUnavailable):
            purge_tags(["promo"], source="command:test", alias=stopped_redis)
        transaction.set_rollback(True)
    [(source, tags, removed, error)] = _rows()
    assert (source, tags, removed) == ("command:test", ["promo"], 0)
    assert "may be partly invalidated" in error


@pytest.fixture
def rollback_after_purge() -> Iterator[None]:
    """Code elsewhere in the request marks its transaction for rollback after the purge."""

    def receiver(source: str | None = None, **kwargs: object) -> None:
        if source and source.startswith("admin:"):
            transaction.set_rollback(True)

    tags_invalidated.connect(receiver, dispatch_uid="test-rollback-after-purge")
    yield
    tags_invalidated.disconnect(dispatch_uid="test-rollback-after-purge")


@pytest.mark.usefixtures("rollback_after_purge")
def test_an_admin_action_under_atomic_requests_keeps_its_record(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import connection

    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    product = Product.objects.create(name="p", category=Category.objects.create(name="c"))
    tagcache.set("k", 1, tags=[product])
    client = Client()
    client.force_login(User.objects.create(username="root", is_staff=True, is_superuser=True))
    response = client.post(
        reverse("admin:shop_product_changelist"),
        {"action": "purge_cached_data", "_selected_action": [product.pk]},
    )
    assert response.status_code == 302
    assert tagcache.get("k") is None
    record = PurgeRecord.objects.get()
    assert (record.source, record.username, record.removed) == ("admin:action:shop.product", "root", 1)


def test_a_purge_in_a_transaction_managed_by_hand_keeps_its_record_after_rollback() -> None:
    transaction.set_autocommit(False)
    try:
        Category.objects.create(name="undone")
        purge_tags(["promo"], source="manual")
        transaction.rollback()
    finally:
        transaction.set_autocommit(True)
    assert not Category.objects.exists()
    assert [r[0] for r in _rows()] == ["manual"]
