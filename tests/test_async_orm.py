"""Model writes from async code (``asave``, ``adelete``, ``acreate``, ``aupdate``, ``sync_to_async``
around an ``atomic`` block) invalidate as sync writes do: once, after the commit.

Django runs the async ORM methods in asgiref's thread for sync code; the signal handlers and
the commit hooks run there, where the transaction is. Each invalidation is recorded with whether
a transaction was still open on that thread at that moment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connections, transaction

from django_tagcache import tags_for
from django_tagcache.signals import tags_invalidated
from tests.testapp.models import Category, Product

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def seen() -> Iterator[list[tuple[set[str], bool]]]:
    """(tags, whether a transaction was open then) of every invalidation sent while the test runs."""
    found: list[tuple[set[str], bool]] = []

    def receiver(tags: tuple[str, ...], **kwargs: object) -> None:
        found.append((set(tags), transaction.get_connection().in_atomic_block))

    tags_invalidated.connect(receiver)
    yield found
    tags_invalidated.disconnect(receiver)


def run(work: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    async def main() -> Any:
        try:
            return await work()
        finally:
            # The thread for sync code keeps a connection of its own; PostgreSQL would then
            # refuse to drop the test database.
            await sync_to_async(connections.close_all)()

    return asyncio.run(main())


def test_acreate_invalidates_the_new_rows_tags_once(seen: list[tuple[set[str], bool]]) -> None:
    category = Category.objects.create(name="a")
    seen.clear()
    product = run(lambda: Product.objects.acreate(name="p", category=category))
    assert seen == [(tags_for(product), False)]


def test_asave_invalidates_the_tags_before_and_after_once(seen: list[tuple[set[str], bool]]) -> None:
    old, new = Category.objects.create(name="old"), Category.objects.create(name="new")
    product = Product.objects.create(name="p", category=old)
    seen.clear()

    async def move() -> None:
        product.category = new
        await product.asave()

    run(move)
    assert len(seen) == 1
    tags, in_transaction = seen[0]
    assert {f"category:{old.pk}", f"category:{new.pk}"} <= tags
    assert not in_transaction


def test_adelete_invalidates_the_rows_tags_once(seen: list[tuple[set[str], bool]]) -> None:
    product = Product.objects.create(name="p", category=Category.objects.create(name="a"))
    expected = tags_for(product)
    seen.clear()
    run(product.adelete)
    assert len(seen) == 1
    tags, in_transaction = seen[0]
    assert expected <= tags  # (and the m2m relation the delete clears)
    assert not in_transaction


def test_aupdate_invalidates_the_model_tag_once(seen: list[tuple[set[str], bool]]) -> None:
    category = Category.objects.create(name="a")
    Product.objects.bulk_create([Product(name=str(n), category=category) for n in range(3)])
    seen.clear()
    run(lambda: Product.objects.filter(category=category).aupdate(price=5))
    assert len(seen) == 1
    tags, in_transaction = seen[0]
    assert "shop.product" in tags
    assert not in_transaction


def test_an_atomic_block_run_from_async_code_invalidates_once_after_its_commit(
    seen: list[tuple[set[str], bool]],
) -> None:
    category = Category.objects.create(name="a")
    products = [Product.objects.create(name=str(n), category=category) for n in range(5)]
    seen.clear()
    during: list[int] = []

    def rename_all() -> None:
        with transaction.atomic():
            for product in products:
                product.name += "!"
                product.save()
            during.append(len(seen))  # nothing sent before the commit

    run(sync_to_async(rename_all))
    assert during == [0]
    assert len(seen) == 1
    tags, in_transaction = seen[0]
    assert set().union(*(tags_for(p) for p in products)) <= tags
    assert not in_transaction


def test_a_rolled_back_block_run_from_async_code_invalidates_nothing(
    seen: list[tuple[set[str], bool]],
) -> None:
    product = Product.objects.create(name="p", category=Category.objects.create(name="a"))
    seen.clear()

    def rename_then_fail() -> None:
        with transaction.atomic():
            product.name = "q"
            product.save()
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError, match="roll back"):
        run(sync_to_async(rename_then_fail))
    assert seen == []


def test_concurrent_async_saves_each_invalidate_once(seen: list[tuple[set[str], bool]]) -> None:
    category = Category.objects.create(name="a")
    products = [Product.objects.create(name=str(n), category=category) for n in range(10)]
    seen.clear()

    async def save_all() -> None:
        await asyncio.gather(*(p.asave() for p in products))

    run(save_all)
    assert sorted(len(tags) for tags, _ in seen) == sorted(len(tags_for(p)) for p in products)
    assert {frozenset(tags) for tags, _ in seen} == {frozenset(tags_for(p)) for p in products}
    assert not any(in_transaction for _, in_transaction in seen)


def test_the_entries_go_at_the_commit_of_a_block_run_from_async_code(alias: str, settings: Any) -> None:
    """In Redis, not only in the signal: the cached entries under the rows' tags are still there
    while the block runs (nothing is invalidated before the commit), and gone when it returns."""
    from django_tagcache import TagCache

    settings.TAGCACHE = {**settings.TAGCACHE, "CACHE": alias}
    tc = TagCache(alias)
    category = Category.objects.create(name="a")
    products = [Product.objects.create(name=str(n), category=category) for n in range(3)]
    for product in products:
        tc.set(f"card:{product.pk}", product.name, tags=[product])
    tc.set("listing", "all", tags=[f"category:{category.pk}"])
    during: list[list[Any]] = []

    def rename_all() -> None:
        with transaction.atomic():
            for product in products:
                product.name += "!"
                product.save()
            during.append([tc.get(f"card:{p.pk}") for p in products] + [tc.get("listing")])

    async def work() -> None:
        await sync_to_async(rename_all)()
        await products[0].asave()  # and one more, on its own: autocommit

    run(work)
    assert during == [["0", "1", "2", "all"]]
    assert [tc.get(f"card:{p.pk}") for p in products] + [tc.get("listing")] == [None] * 4
