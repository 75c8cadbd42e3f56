"""Histories of concurrent readers, writers and invalidations over a tiny shop, and their check.

A history is a few actors (see :data:`MENU`) run by a seeded :class:`~tests.scheduler.Scheduler`
on real Redis and the real database. Afterwards every value cached under the shop's keys must
equal a recompute from the database: one that does not is a stale value.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.core.signals import request_finished, request_started
from django.db import transaction
from django.db.models import F, Sum
from django.http import HttpRequest, HttpResponse
from django.template import Context, Template
from django.test import RequestFactory

from django_tagcache import TagCache, cached, fence, invalidate_tags
from django_tagcache.caching.api import get_store
from django_tagcache.caching.rendering import read_entry
from django_tagcache.views import cache_page_tagged
from django_tagcache.web.fragments import fragment_key
from tests.scheduler import Scheduler
from tests.testapp.models import Category, Label, Product

CARD = Template(
    '{% load tagcache %}{% tagcache 600 "card" product.pk tags=product %}'
    "{{ product.name }}|{{ labels }}{% endtagcache %}"
)
SHELF = Template(
    '{% load tagcache %}{% tagcache 600 "shelf" cat tags="shelf" %}[{{ names }}]{% endtagcache %}'
)
FILLERS = 4  # entries kept under each category tag: with CHUNK_SIZE 3, invalidating one drains


class Rollback(Exception):
    """Raised inside a savepoint to roll it back."""


@dataclass
class Shop:
    """The cache alias, and the rows a history picks from."""

    alias: str
    rng: random.Random = field(default_factory=random.Random)
    names: list[str] = field(default_factory=lambda: ["ant", "bee", "cat", "dog", "eel"])
    #: Rows the current history's actors picked: checked even once deleted.
    touched: set[int] = field(default_factory=set)

    @property
    def tc(self) -> TagCache:
        return TagCache(self.alias)

    def categories(self) -> list[int]:
        return sorted(Category.objects.values_list("pk", flat=True))

    def products(self) -> list[int]:
        return sorted(Product.objects.values_list("pk", flat=True))

    # --- what is cached, and its recompute ---------------------------------------------------------

    def listing(self, cat: int) -> str:
        return ",".join(sorted(Product.objects.filter(category_id=cat).values_list("name", flat=True)))

    def labels(self, pk: int) -> str:
        return ",".join(sorted(Label.objects.filter(products__pk=pk).values_list("name", flat=True)))

    def total(self) -> int:
        return int(Product.objects.aggregate(total=Sum("price"))["total"] or 0)

    def cached_listing(self, cat: int) -> str:
        return str(self.tc.get_or_set(f"list:{cat}", lambda: self.listing(cat), tags=[f"category:{cat}"]))

    def cached_labels(self, product: Product) -> str:
        return str(
            self.tc.get_or_set(f"labels:{product.pk}", lambda: self.labels(product.pk), tags=[product])
        )

    def expected(self) -> dict[str, Any]:
        """Every key this shop caches -> its value recomputed now (None: must not be cached)."""
        store, wanted = get_store(self.alias), dict[str, Any]()
        rows = {pk: (name, cat) for pk, name, cat in Product.objects.values_list("pk", "name", "category_id")}
        labels: dict[int, list[str]] = {pk: [] for pk in rows}
        for pk, name in Product.labels.through.objects.values_list("product_id", "label__name"):
            labels[pk].append(name)
        for cat in self.categories():
            listing = ",".join(sorted(name for name, in_cat in rows.values() if in_cat == cat))
            wanted[f"list:{cat}"] = listing
            wanted[store.keys.entry(fragment_key("shelf", [cat]))] = f"[{listing}]"
        for pk in sorted(set(rows) | self.touched):
            row = rows.get(pk)
            names = ",".join(sorted(labels.get(pk, [])))
            wanted[f"labels:{pk}"] = None if row is None else names
            wanted[title.cache_key(Product(pk=pk))] = None if row is None else row[0]
            wanted[store.keys.entry(fragment_key("card", [pk]))] = (
                None if row is None else f"{row[0]}|{names}"
            )
        wanted["total"] = self.total()
        return wanted

    def stale(self) -> list[str]:
        """Cached values that differ from a recompute from the database."""
        store, found = get_store(self.alias), []
        for pk in sorted(set(self.products()) | self.touched):
            product = Product.objects.filter(pk=pk).first()
            served, wanted = serve_page(pk, product), "" if product is None else product.name
            if served != wanted:
                found.append(f"page {pk}: served {served!r}, database {wanted!r}")
        for key, value in self.expected().items():
            if key.startswith(store.keys.entry("")):
                hit = read_entry(self.alias, key)
                cached_value = None if hit is None else hit[0]
            else:
                cached_value = self.tc.get(key)
            if cached_value is not None and cached_value != value:
                found.append(f"{key}: cached {cached_value!r}, database {value!r}")
        return found

    def fill(self) -> None:
        """Keep FILLERS entries under each category tag, so that its invalidations drain in chunks."""
        for cat in self.categories():
            if self.tc.get(f"filler:{cat}:0") is None:  # invalidated with the others
                for i in range(FILLERS):
                    self.tc.set(f"filler:{cat}:{i}", i, tags=[f"category:{cat}"])


@cached(timeout=600, tags=lambda product: [product])
def title(product: Product) -> str:
    return product.name  # from the instance the caller loaded, maybe before a commit


# Tagged with the model too: a page of a missing row must go when a row takes its primary key.
@cache_page_tagged(600, tags=lambda request, pk: [Product, request.product] if request.product else [Product])
def product_page(request: HttpRequest, pk: int) -> HttpResponse:
    """A page showing what an earlier layer (a middleware, say) loaded into the request."""
    product: Product | None = request.product  # type: ignore[attr-defined]
    return HttpResponse("" if product is None else product.name)


def serve_page(pk: int, product: Product | None) -> str:
    """The body ``product_page`` serves for ``pk`` (from the cache if stored)."""
    request = RequestFactory().get(f"/shop/page/{pk}/")
    request.product = product  # type: ignore[attr-defined]
    return product_page(request, pk).content.decode()


def _load(pk: int, point: Callable[[], None]) -> Product | None:
    product = Product.objects.filter(pk=pk).first()
    point()  # the row is in memory: anything may happen before it is used
    return product


def actors(shop: Shop, scheduler: Scheduler) -> list[tuple[str, Callable[[], object]]]:
    """A random set of 2 to 6 actors over the shop's rows."""
    rng, point = shop.rng, scheduler.point
    all_cats, all_pks = shop.categories(), shop.products()
    shop.touched = set(all_pks)
    # Actors mostly meet on one category and one product: races need them to share data.
    focus_cat, focus_pk = rng.choice(all_cats), rng.choice(all_pks)
    cats = [focus_cat] * 3 + all_cats
    pks = [focus_pk] * 3 + all_pks

    def reader_listing(cat: int | None = None) -> Callable[[], object]:
        chosen = rng.choice(cats) if cat is None else cat
        return lambda: shop.cached_listing(chosen)

    def reader_title() -> Callable[[], object]:
        pk = rng.choice(pks)

        def body() -> None:
            product = _load(pk, point)
            if product is not None:
                title(product)

        return body

    def reader_card() -> Callable[[], object]:
        pk = rng.choice(pks)

        def body() -> None:
            with fence():  # as a request does from its start
                product = _load(pk, point)
                if product is not None:
                    CARD.render(Context({"product": product, "labels": lambda: shop.cached_labels(product)}))

        return body

    def reader_page() -> Callable[[], object]:
        pk = rng.choice(pks)

        def body() -> None:
            request_started.send(sender=None)  # the request's start: its read fence
            try:
                serve_page(pk, _load(pk, point))  # as if a middleware loaded the product
            finally:
                request_finished.send(sender=None)

        return body

    def reader_shelf(cat: int | None = None) -> Callable[[], object]:
        cat = rng.choice(cats) if cat is None else cat

        def body() -> None:
            SHELF.render(Context({"cat": cat, "names": lambda: shop.cached_listing(cat)}))

        return body

    def reader_total() -> Callable[[], object]:
        return lambda: shop.tc.get_or_set("total", shop.total, tags=[Product])

    def writer(change: str, pk: int | None = None, cat: int | None = None) -> Callable[[], object]:
        pk = rng.choice(pks) if pk is None else pk
        cat = rng.choice(cats) if cat is None else cat
        name = rng.choice(shop.names)
        atomic, savepoint = rng.random() < 0.5, rng.random() < 0.3

        def body() -> None:
            product = _load(pk, point)
            if product is None:
                return
            with transaction.atomic() if atomic else _nothing():
                if change == "rename":
                    product.name = name
                elif change == "move":
                    product.category_id = cat
                product.save()
                if savepoint:
                    try:
                        with transaction.atomic():
                            Product.objects.filter(pk=pk).update(name="rolled back")
                            raise Rollback
                    except Rollback:
                        pass

        return body

    def writer_labels() -> Callable[[], object]:
        pk, label = rng.choice(pks), rng.choice(list(Label.objects.values_list("pk", flat=True)))
        add = rng.random() < 0.5

        def body() -> None:
            product = _load(pk, point)
            if product is not None:
                (product.labels.add if add else product.labels.remove)(label)

        return body

    def writer_update() -> Callable[[], object]:
        cat = rng.choice(cats)
        return lambda: Product.objects.filter(category_id=cat).update(price=F("price") + 1)

    def writer_replace() -> Callable[[], object]:
        pk, cat, name = rng.choice(pks), rng.choice(cats), rng.choice(shop.names)

        def body() -> None:
            product = _load(pk, point)
            if product is not None:
                with transaction.atomic():
                    product.delete()
                    Product.objects.create(name=name, category_id=cat)

        return body

    def invalidator() -> Callable[[], object]:
        tags = rng.sample([f"category:{c}" for c in all_cats] + ["shelf"], rng.randint(1, 2))
        return lambda: invalidate_tags(*tags)

    menu: list[tuple[str, Callable[[], Callable[[], object]]]] = [
        ("list", reader_listing),
        ("title", reader_title),
        ("card", reader_card),
        ("shelf", reader_shelf),
        ("page", reader_page),
        ("total", reader_total),
        ("rename", lambda: writer("rename")),
        ("move", lambda: writer("move")),
        ("labels", writer_labels),
        ("update", writer_update),
        ("replace", writer_replace),
        ("invalidate", invalidator),
    ]
    # Groups that meet on purpose: two editors of one row and a listing of where it went; an edit
    # and a shelf of the row's category (whose invalidation drains in chunks).
    target = rng.choice(all_cats)
    home = Product.objects.filter(pk=focus_pk).values_list("category_id", flat=True).first() or target
    groups: list[tuple[str, Callable[[], list[Callable[[], object]]]]] = [
        (
            "editors",
            lambda: [
                writer("move", focus_pk, target),
                writer(rng.choice(["move", "rename"]), focus_pk),
                reader_listing(target),
            ],
        ),
        ("edit-shelf", lambda: [writer("rename", focus_pk), reader_shelf(home)]),
    ]
    chosen = [(name, make()) for name, make in (rng.choice(menu) for _ in range(rng.randint(1, 3)))]
    if rng.random() < 0.5 or len(chosen) == 1:
        name, make_group = rng.choice(groups)
        chosen += [(name, body) for body in make_group()]
    return [(f"{i}-{name}", body) for i, (name, body) in enumerate(chosen)]


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def populate() -> None:
    """Three categories, four products, two labels."""
    cats = [Category.objects.create(name=n) for n in "abc"]
    for i, name in enumerate(["ant", "bee", "cat", "dog"]):
        Product.objects.create(name=name, category=cats[i % 3], price=i)
    for name in ("red", "blue"):
        Label.objects.create(name=name)
