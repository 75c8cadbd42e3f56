"""The outbox: no invalidation is lost across a Redis outage or a crash after commit."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction

from django_tagcache import tagcache
from django_tagcache.orm import outbox as outbox_module
from django_tagcache.orm.outbox import ROW_TAGS, PendingInvalidation
from tests.faults import Faulty
from tests.testapp.models import Category, Label, Product

pytestmark = pytest.mark.django_db(transaction=True)
RESET = 0.35


@pytest.fixture
def outbox(settings: Any) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "OUTBOX": True}


@pytest.fixture
def faulty_outbox(settings: Any, faulty: Faulty) -> Faulty:
    settings.TAGCACHE = {**settings.TAGCACHE, "OUTBOX": True}
    return faulty


def rows() -> list[PendingInvalidation]:
    return list(PendingInvalidation.objects.all())


@pytest.mark.usefixtures("outbox")
def test_the_row_is_written_in_the_transaction_and_deleted_after_redis_confirms() -> None:
    cat = Category.objects.create(name="c")
    with transaction.atomic():
        product = Product.objects.create(name="Blue", category=cat)
        (row,) = rows()
        assert f"shop.product:{product.pk}" in row.tags
    assert rows() == []


@pytest.mark.usefixtures("outbox")
def test_a_rollback_leaves_no_row() -> None:
    cat = Category.objects.create(name="c")

    def create_then_fail() -> None:
        with transaction.atomic():
            Product.objects.create(name="Blue", category=cat)
            raise RuntimeError

    with pytest.raises(RuntimeError):
        create_then_fail()
    assert rows() == []


@pytest.mark.usefixtures("outbox")
def test_rows_are_per_batch_and_updated_only_when_tags_grow(django_assert_max_num_queries: Any) -> None:
    cat = Category.objects.create(name="c")
    product = Product.objects.create(name="Blue", category=cat)
    with transaction.atomic():
        for i in range(3):
            product.name = str(i)
            product.save()  # same tags each time: only the first save writes the row
            if i == 0:
                first = PendingInvalidation.objects.get()
        assert rows()[0].pk == first.pk
        # The row as stored and the UPDATE of the product; nothing for the outbox.
        with django_assert_max_num_queries(2):
            product.save()
    with transaction.atomic():
        for i in range(ROW_TAGS + 10):
            Product.objects.create(name=str(i), category=cat)
        assert len(rows()) == 2  # at most ROW_TAGS tags a row
    assert rows() == []


def test_an_outage_loses_nothing_with_the_outbox(faulty_outbox: Faulty) -> None:
    tc = faulty_outbox.tc
    cat = Category.objects.create(name="c")
    product = Product.objects.create(name="Blue", category=cat)
    tc.set("category page", "old", tags=[f"category:{cat.pk}"])
    faulty_outbox.proxy.cut(refuse=True)
    with transaction.atomic():
        product.name = "Red"
        product.save()
    assert Product.objects.get().name == "Red"  # the write committed despite Redis
    (row,) = rows()
    assert (row.attempts, f"category:{cat.pk}" in row.tags) == (1, True)
    assert row.last_error
    faulty_outbox.proxy.heal()
    time.sleep(RESET)
    assert tc.get("category page") == "old"  # stale until the outbox is replayed
    call_command("tagcache_drain")
    assert tc.get("category page") is None
    assert rows() == []


def test_the_next_successful_flush_replays_what_failed(faulty_outbox: Faulty) -> None:
    tc = faulty_outbox.tc
    cat = Category.objects.create(name="c")
    tc.set("page", "old", tags=[f"category:{cat.pk}"])
    faulty_outbox.proxy.cut(refuse=True)
    Product.objects.create(name="Blue", category=cat)  # autocommit: a row is written on failure
    assert len(rows()) == 1
    faulty_outbox.proxy.heal()
    time.sleep(RESET)
    Category.objects.create(name="other")  # any successful invalidation drains the outbox
    assert rows() == []
    assert tc.get("page") is None


def test_drain_while_redis_is_down_fails_and_counts_the_attempt(faulty_outbox: Faulty) -> None:
    faulty_outbox.proxy.cut(refuse=True)
    Category.objects.create(name="c")
    with pytest.raises(CommandError, match="still refuses"):
        call_command("tagcache_drain")
    (row,) = rows()
    assert row.attempts == 2
    faulty_outbox.proxy.heal()
    time.sleep(RESET)
    call_command("tagcache_drain", "--limit", "5")
    assert rows() == []


@pytest.mark.usefixtures("outbox")
def test_duplicate_and_out_of_order_replays_never_leave_stale_values() -> None:
    cat = Category.objects.create(name="c")
    product = Product.objects.create(name="v1", category=cat)
    old = PendingInvalidation.objects.create(tags=[f"shop.product:{product.pk}"])
    duplicate = PendingInvalidation.objects.create(tags=[f"shop.product:{product.pk}"])

    def card() -> str:
        return str(Product.objects.get(pk=product.pk).name)

    assert tagcache.get_or_set("card", card, tags=[product]) == "v1"
    Product.objects.filter(pk=product.pk).update(name="v2")
    tagcache.invalidate_tags(product)
    assert tagcache.get_or_set("card", card, tags=[product]) == "v2"
    call_command("tagcache_drain")  # an old invalidation replayed late, twice: harmless
    assert {old.pk, duplicate.pk}.isdisjoint(r.pk for r in rows())
    assert tagcache.get_or_set("card", card, tags=[product]) == "v2"


@pytest.mark.usefixtures("outbox")
@pytest.mark.skipif(
    not os.environ.get("DATABASE_URL"), reason="a crash test needs a database two processes share"
)
def test_a_crash_between_commit_and_invalidation_leaves_the_row() -> None:
    """A child process commits a save and is killed before its invalidation reaches Redis."""
    cat = Category.objects.create(name="c")
    database = connection.settings_dict["NAME"]
    url = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + f"/{database}"
    # The child's Redis accepts connections and never answers: after its commit the child
    # waits there for its invalidation, and is killed while it waits.
    silent = socket.create_server(("127.0.0.1", 0))
    script = f"""
import os, django
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
os.environ["DATABASE_URL"] = {url!r}
django.setup()
from django.conf import settings
settings.TAGCACHE = {{**settings.TAGCACHE, "OUTBOX": True}}
from django.db import transaction
from tests.testapp.models import Product
with transaction.atomic():
    Product.objects.create(name="crash", category_id={cat.pk})
"""
    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{silent.getsockname()[1]}"}
    child = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=os.getcwd())
    try:
        while not Product.objects.filter(name="crash").exists():
            assert child.poll() is None, "the child ended before it committed"
            time.sleep(0.05)
    finally:
        child.kill()
        child.wait()
        silent.close()
    (row,) = rows()
    assert "shop.product" in row.tags
    assert row.attempts == 0
    call_command("tagcache_drain")
    assert rows() == []


@pytest.mark.usefixtures("outbox")
def test_no_row_holds_more_than_row_tags_tags() -> None:
    product = Product.objects.create(name="Blue", category=Category.objects.create(name="c"))
    labels = Label.objects.bulk_create([Label(name=str(i)) for i in range(ROW_TAGS + 100)])
    with transaction.atomic():
        product.labels.add(*labels)  # one batch of over 1,200 tags, recorded at once
        recorded = [row.tags for row in rows()]
    assert max(len(tags) for tags in recorded) <= ROW_TAGS
    assert {f"shop.label:{label.pk}" for label in labels} <= {tag for tags in recorded for tag in tags}
    assert rows() == []


def test_the_next_successful_flush_replays_every_pending_row(faulty_outbox: Faulty) -> None:
    """More rows than one batch: all of them are replayed, not just the first 100."""
    tc = faulty_outbox.tc
    tc.set("page", "old", tags=["t249"])
    faulty_outbox.proxy.cut(refuse=True)
    Category.objects.create(name="c")  # fails: one row
    PendingInvalidation.objects.bulk_create([PendingInvalidation(tags=[f"t{i}"]) for i in range(1, 250)])
    faulty_outbox.proxy.heal()
    time.sleep(RESET)
    Category.objects.create(name="d")
    assert rows() == []
    assert tc.get("page") is None


@pytest.mark.usefixtures("outbox")
def test_rows_another_process_left_are_replayed_by_a_later_flush(
    monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    """A process that died after its commit leaves a row; a live process replays it within the interval."""
    Category.objects.create(name="a")  # a successful flush: this process has looked at the outbox
    tagcache.set("page", "old", tags=["from-another-process"])
    left = PendingInvalidation.objects.create(tags=["from-another-process"])
    with django_assert_num_queries(1):  # the INSERT alone: the outbox is looked at only now and then
        Category.objects.create(name="b")
    assert rows() == [left]
    later = time.monotonic() + 3600  # past any replay interval
    monkeypatch.setattr(outbox_module, "_clock", lambda: later, raising=False)
    Category.objects.create(name="c")
    assert rows() == []
    assert tagcache.get("page") is None


def test_a_row_undone_by_a_savepoint_rollback_is_written_again(faulty_outbox: Faulty) -> None:
    """A manual savepoint (``transaction.savepoint()``) keeps the commit hooks of the writes made
    after it, so their tags are still invalidated at commit; but rolling it back also undoes the
    outbox row those writes inserted. A later write of the same tags must write them again."""
    tc = faulty_outbox.tc
    cat = Category.objects.create(name="c")
    product = Product.objects.create(name="Blue", category=cat)
    tc.set("category page", "old", tags=[f"category:{cat.pk}"])
    faulty_outbox.proxy.cut(refuse=True)
    with transaction.atomic():
        sid = transaction.savepoint()
        product.name = "Green"
        product.save()  # the batch's first write: its outbox row is inserted after the savepoint
        transaction.savepoint_rollback(sid)  # the row is gone; the batch and its tags stay
        product.name = "Red"
        product.save()  # the same tags again
        assert [row for row in rows() if f"category:{cat.pk}" in row.tags]
    assert Product.objects.get().name == "Red"  # committed despite Redis
    assert [row for row in rows() if f"category:{cat.pk}" in row.tags]
    faulty_outbox.proxy.heal()
    time.sleep(RESET)
    call_command("tagcache_drain")
    assert tc.get("category page") is None
    assert rows() == []
