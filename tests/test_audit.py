"""The audit log: purges with a source are recorded once, routine invalidations never, and a failing
database never costs an invalidation."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction

from django_tagcache import TagCache, TagCacheUnavailable, invalidate_model, invalidate_tags, tagcache
from django_tagcache.core import metrics
from django_tagcache.models import MAX_RECORDED_TAGS, PurgeRecord
from django_tagcache.ops.audit import acting_as, os_username, purge_tags, record
from django_tagcache.signals import tags_invalidated
from tests.servers import RedisServer
from tests.testapp.models import Category, Product


@pytest.fixture
def sent() -> Iterator[list[dict[str, object]]]:
    seen: list[dict[str, object]] = []

    def receiver(**kwargs: object) -> None:
        seen.append(kwargs)

    tags_invalidated.connect(receiver)
    yield seen
    tags_invalidated.disconnect(receiver)


@pytest.mark.django_db
def test_an_api_call_with_a_source_is_recorded(tc: TagCache) -> None:
    tc.set("k", 1, tags=["a", "b"])
    assert tc.invalidate_tags("b", "a", source="deploy:42") == 1
    record = PurgeRecord.objects.get()
    assert (record.source, record.tags, record.tag_count, record.removed) == ("deploy:42", ["a", "b"], 2, 1)
    assert record.user is None
    assert record.username == ""
    assert record.cache == ""
    assert str(record) == "deploy:42 by anonymous: 2 tag(s), 1 entries"


@pytest.mark.django_db
def test_acting_as_names_who_purged() -> None:
    ann = User.objects.create(username="ann")
    with acting_as(ann):
        invalidate_tags("x", source="support-tool")
    with acting_as(username="cron@host"):
        invalidate_model(Product, source="nightly")
    with acting_as(AnonymousUser()):
        invalidate_tags("y", source="anonymous-form")
    rows = {r.source: r for r in PurgeRecord.objects.all()}
    assert (rows["support-tool"].user, rows["support-tool"].username) == (ann, "ann")
    assert (rows["nightly"].user, rows["nightly"].username, rows["nightly"].tags) == (
        None,
        "cron@host",
        ["shop.product"],
    )
    assert (rows["anonymous-form"].user, rows["anonymous-form"].username) == (None, "")
    ann.delete()  # the record outlives the account
    assert PurgeRecord.objects.get(source="support-tool").username == "ann"


@pytest.mark.django_db(transaction=True)
def test_routine_invalidations_are_not_recorded() -> None:
    cat = Category.objects.create(name="c")
    Product.objects.create(name="p", category=cat)
    invalidate_tags("plain")
    assert not PurgeRecord.objects.exists()


@pytest.mark.django_db
def test_purge_tags_records_one_row_for_all_its_batches(sent: list[dict[str, object]]) -> None:
    tagcache.set("k", 1, tags=["t0007"])
    tags = [f"t{n:04}" for n in range(1200)]
    assert purge_tags(tags, source="command:test", alias="default") == 1
    assert [len(s["tags"]) for s in sent] == [500, 500, 200]  # type: ignore[arg-type]
    assert {s["source"] for s in sent} == {"command:test"}
    record = PurgeRecord.objects.get()
    assert record.tag_count == 1200
    assert len(record.tags) == MAX_RECORDED_TAGS
    assert record.removed == 1
    assert record.cache == "default"


@pytest.mark.django_db
def test_a_purge_that_fails_half_way_records_what_it_did(settings: Any) -> None:
    """The first batch reaches Redis, which then stops: the record lists what was sent, and why it failed."""
    server = RedisServer.start()
    settings.CACHES = {
        **settings.CACHES,
        "own": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": server.url},
    }
    settings.TAGCACHE = {**settings.TAGCACHE, "RETRY": {"ATTEMPTS": 1}}

    def stop_server(sender: object, **kwargs: object) -> None:
        server.stop()

    tags_invalidated.connect(stop_server)
    try:
        with pytest.raises(TagCacheUnavailable, match="Could not invalidate 100 tag"):
            purge_tags([f"t{n:04}" for n in range(600)], source="command:test", alias="own")
    finally:
        tags_invalidated.disconnect(stop_server)
        server.stop()
    record = PurgeRecord.objects.get()
    assert (record.tag_count, record.tags[0], record.tags[-1], record.cache) == (600, "t0000", "t0599", "own")
    assert "Could not invalidate 100 tag(s)" in record.error
    assert "the last 100 tag(s) may be partly invalidated" in record.error


def test_a_database_failure_never_loses_the_invalidation(caplog: pytest.LogCaptureFixture) -> None:
    """No database access at all here (pytest-django refuses it): the invalidation still happens."""
    tagcache.set("k", 1, tags=["a"])
    with caplog.at_level(logging.ERROR, logger="django_tagcache"):
        assert invalidate_tags("a", source="api") == 1
    assert tagcache.get("k") is None
    assert metrics.snapshot()["audit_failures"] == 1
    assert "purge of 1 tag(s) from 'api' done (1 entries removed), but its audit record" in caplog.text


@pytest.mark.django_db
def test_a_failed_audit_write_leaves_the_transaction_usable(caplog: pytest.LogCaptureFixture) -> None:
    with transaction.atomic():
        # A negative count breaks the column's CHECK constraint (PostgreSQL, SQLite) or is out of
        # range for its unsigned type (MariaDB, in strict mode): a real database error either way.
        with caplog.at_level(logging.ERROR, logger="django_tagcache"):
            assert record(["a"], -1, source="x") is None
        Category.objects.create(name="still fine")  # the savepoint kept the transaction alive
    assert Category.objects.filter(name="still fine").exists()
    assert metrics.snapshot()["audit_failures"] == 1
    assert "IntegrityError" in caplog.text or "DataError" in caplog.text


def test_os_username() -> None:
    assert os_username().startswith("os:")
    assert len(os_username()) > 3
