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

from asgiref.sync import async_to_sync
from django.core.signals import request_finished, request_started
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, Sum
from django.http import HttpRequest, HttpResponse
from django.template import Context, Template
from django.test import AsyncClient, Client, RequestFactory
from django.urls import path

from django_tagcache import TagCache, add_tags, cached, fence, invalidate_tags
from django_tagcache.caching.api import get_store
from django_tagcache.caching.rendering import read_entry
from django_tagcache.views import cache_page_tagged
from django_tagcache.web.fragments import fragment_key
from tests.scheduler import Scheduler
from tests.tenancy import current_tenant
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
    #: The namespaces (tenants) the promotion banner is cached in; purged across all of them.
    tenants: tuple[str | None, ...] = (None,)
    #: The promotion's text: its source of truth, changed only by a purge across namespaces.
    promo: str = "p0"
    #: Whether actors make real requests through Django's handlers (WSGI and ASGI).
    web: bool = False
    #: Whether stale copies of soft purges may exist: then none outlives its budget (ms), and
    #: every listing served was true in the database at most that long before.
    stale_budget_ms: int = 0
    #: Whether readers may run transactions that read one snapshot (REPEATABLE READ): on
    #: PostgreSQL. Not SQLite: the test database is one in-memory database in shared-cache mode,
    #: where a transaction reads the latest commit (no snapshot) and its table locks would make
    #: the writers fail.
    snapshots: bool = False
    #: The scheduler's clock (seconds) of the current history.
    clock: Callable[[], float] = lambda: 0.0
    #: Each category's listings in the database this history, as [listing, since, until], on
    #: the scheduler's clock (until None: still current).
    versions: dict[int, list[list[Any]]] = field(default_factory=dict)
    #: The listings readers were served this history: (what, category, listing, when).
    served: list[tuple[str, int, str, float]] = field(default_factory=list)
    #: Scheduler.writes when the listings were last read from the database.
    _writes_seen: int = -1

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
        listing = str(self.tc.get_or_set(f"list:{cat}", lambda: self.listing(cat), tags=[f"category:{cat}"]))
        self.serve("list", cat, listing)
        return listing

    def cached_labels(self, product: Product) -> str:
        return str(
            self.tc.get_or_set(f"labels:{product.pk}", lambda: self.labels(product.pk), tags=[product])
        )

    def cached_nest(self, cat: int) -> str:
        """A get_or_set whose compute calls another: the outer value contains the inner one."""
        nest = str(
            self.tc.get_or_set(
                f"nest:{cat}", lambda: "<" + self.cached_listing(cat) + ">", tags=[f"category:{cat}"]
            )
        )
        self.serve("nest", cat, nest[1:-1])
        return nest

    # --- what was served, and when the database held it ----------------------------------------------

    def serve(self, what: str, cat: int, listing: str) -> None:
        """Note that a reader was served ``listing`` as category ``cat``'s, now."""
        if self.stale_budget_ms:
            self.served.append((what, cat, listing, self.clock()))

    def start_history(self, scheduler: Scheduler) -> None:
        self.clock = lambda: scheduler.clock
        self.versions, self.served, self._writes_seen = {}, [], -1

    def observe(self, scheduler: Scheduler) -> None:
        """Before each step of a history (every actor waits at a point, no write transaction is
        open): if an actor wrote since the last look, note the listings the database holds now."""
        if scheduler.writes == self._writes_seen:
            return
        self._writes_seen = scheduler.writes
        now, names = scheduler.clock, dict[int, list[str]]()
        for cat, name in Product.objects.values_list("category_id", "name"):
            names.setdefault(cat, []).append(name)
        for cat in self.categories():
            listing, known = ",".join(sorted(names.get(cat, []))), self.versions.setdefault(cat, [])
            if not known or known[-1][0] != listing:
                if known:
                    known[-1][2] = now
                known.append([listing, now, None])

    def served_outside_budget(self) -> list[str]:
        """Listings served that the database did not hold at any moment within the budget before.

        A hit, a fresh compute and a soft purge's stale copy alike: each must be a listing the
        database held at some moment no more than ``stale_budget_ms`` before it was served.
        """
        budget, found = self.stale_budget_ms / 1000, []
        for what, cat, listing, when in self.served:
            held = [(since, until) for value, since, until in self.versions.get(cat, []) if value == listing]
            if not any(since <= when and (until is None or until >= when - budget) for since, until in held):
                history = ", ".join(
                    f"{v!r} from {s:.2f} s to " + ("now" if u is None else f"{u:.2f} s")
                    for v, s, u in self.versions.get(cat, [])
                )
                found.append(
                    f"{what}:{cat} served {listing!r} at {when:.2f} s, which the database did not hold "
                    f"within {budget:g} s before (listings: {history})"
                )
        return found

    def cached_promo(self) -> str:
        return str(self.tc.get_or_set("promo", lambda: self.promo, tags=["promo"]))

    def expected(self) -> dict[str, Any]:
        """Every key this shop caches -> its value recomputed now (None: must not be cached)."""
        store, wanted = get_store(self.alias), dict[str, Any]()
        rows = {
            pk: (name, cat, price)
            for pk, name, cat, price in Product.objects.values_list("pk", "name", "category_id", "price")
        }
        labels: dict[int, list[str]] = {pk: [] for pk in rows}
        for pk, name in Product.labels.through.objects.values_list("product_id", "label__name"):
            labels[pk].append(name)
        for cat in self.categories():
            listing = ",".join(sorted(row[0] for row in rows.values() if row[1] == cat))
            wanted[f"list:{cat}"] = listing
            wanted[f"nest:{cat}"] = f"<{listing}>"
            wanted[store.keys.entry(fragment_key("shelf", [cat]))] = f"[{listing}]"
        for pk in sorted(set(rows) | self.touched):
            row = rows.get(pk)
            names = ",".join(sorted(labels.get(pk, [])))
            wanted[f"labels:{pk}"] = None if row is None else names
            wanted[title.cache_key(Product(pk=pk))] = None if row is None else row[0]
            wanted[summary.cache_key(Product(pk=pk))] = None if row is None else f"{row[0]}:{row[2]}"
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
        for tenant in self.tenants:
            token = current_tenant.set(tenant)
            try:
                promo = self.tc.get("promo")
            finally:
                current_tenant.reset(token)
            if promo is not None and promo != self.promo:
                found.append(f"promo in namespace {tenant}: cached {promo!r}, source {self.promo!r}")
        if self.web:
            for pk in sorted(set(self.products()) | self.touched):
                product = Product.objects.filter(pk=pk).first()
                wanted = "" if product is None else product.name
                served = Client().get(f"/harness/product/{pk}/").content.decode()
                if served != wanted:
                    found.append(f"site page {pk}: served {served!r}, database {wanted!r}")
        if self.stale_budget_ms:
            found += self.stale_copies_over_budget()
            found += self.served_outside_budget()
        return found

    def stale_copies_over_budget(self) -> list[str]:
        """Copies kept by soft purges that would outlive their budget (none may)."""
        store, found = get_store(self.alias), []
        for key in store.client.scan_iter(match="*:stale", count=1000):
            left = store.client.pttl(key)
            if left == -1 or left > self.stale_budget_ms:
                found.append(f"{key!r}: a stale copy kept for {left} ms, over {self.stale_budget_ms}")
        return found

    def drop_stale_copies(self) -> None:
        """Delete the soft purges' copies, so that every copy served in a history was made in it
        (and its age is measured on that history's clock)."""
        store = get_store(self.alias)
        keys = list(store.client.scan_iter(match="*:stale", count=1000))
        if keys:
            store.client.delete(*keys)

    def fill(self) -> None:
        """Keep FILLERS entries under each category tag, so that its invalidations drain in chunks."""
        for cat in self.categories():
            if self.tc.get(f"filler:{cat}:0") is None:  # invalidated with the others
                for i in range(FILLERS):
                    self.tc.set(f"filler:{cat}:{i}", i, tags=[f"category:{cat}"])


@cached(timeout=600, tags=lambda product: [product])
def title(product: Product) -> str:
    return product.name  # from the instance the caller loaded, maybe before a commit


# Tagged with the model too: an update() of the prices invalidates the model tag only.
@cached(timeout=600, tags=lambda product: [product, Product])
def summary(product: Product) -> str:
    return f"{product.name}:{product.price}"  # the values the caller's instance holds


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


def site_product(request: HttpRequest, pk: int) -> HttpResponse:
    """A view under TagCacheMiddleware: the page is cached site-wide, tagged by what it read."""
    add_tags(Product)  # before the data: a row that takes this pk must drop the page
    product = Product.objects.filter(pk=pk).first()  # a scheduler point between SELECT and post_init
    if product is not None:
        add_tags(product)
    return HttpResponse("" if product is None else product.name)


# The harness' URLconf (ROOT_URLCONF while the web actors run).
urlpatterns = [path("harness/product/<int:pk>/", site_product)]


def _load(pk: int, point: Callable[[], None]) -> Product | None:
    product = Product.objects.filter(pk=pk).first()
    point()  # the row is in memory: anything may happen before it is used
    return product


def actors(shop: Shop, scheduler: Scheduler) -> list[tuple[str, Callable[[], object]]]:
    """A random set of 2 to 8 actors over the shop's rows."""
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
            shelf = SHELF.render(Context({"cat": cat, "names": lambda: shop.cached_listing(cat)}))
            shop.serve("shelf", cat, shelf[1:-1])

        return body

    def reader_total() -> Callable[[], object]:
        return lambda: shop.tc.get_or_set("total", shop.total, tags=[Product])

    def writer(
        change: str, pk: int | None = None, cat: int | None = None, reuse: bool = False
    ) -> Callable[[], object]:
        pk = rng.choice(pks) if pk is None else pk
        cat = rng.choice(cats) if cat is None else cat
        name = rng.choice(shop.names)
        atomic, savepoint = rng.random() < 0.5, rng.random() < 0.3

        def body() -> None:
            product = _load(pk, point)
            if product is None:
                return
            try:
                save(product)
            except DatabaseError as exc:  # save(update_fields=...) of a row deleted meanwhile
                if "did not affect any rows" not in str(exc):
                    raise
                return
            if reuse:  # the saver goes on with its instance: dated by its own save, if that is safe
                title(product)

        def save(product: Product) -> None:
            with transaction.atomic() if atomic else _nothing():
                if change == "rename":
                    product.name = name
                elif change == "move":
                    product.category_id = cat
                if change == "reprice":  # writes the price alone: the instance's name may be old
                    product.price += 1
                    product.save(update_fields=["price"])
                else:
                    product.save()
                if savepoint:
                    try:
                        with transaction.atomic():
                            Product.objects.filter(pk=pk).update(name="rolled back")
                            raise Rollback
                    except Rollback:
                        pass

        return body

    def writer_twice() -> Callable[[], object]:
        """A transaction that saves a row, writes that row once more another way (an update(), a
        second instance's save, a delete and a new row), then caches from the instance it saved."""
        pk, (first, second) = rng.choice(pks), rng.sample(shop.names, 2)
        how = rng.choice(["update", "instance", "delete"])

        def body() -> None:
            product = _load(pk, point)
            if product is None:
                return
            with transaction.atomic():
                product.name = first
                product.save()  # a row deleted meanwhile is inserted again
                if how == "update":
                    Product.objects.filter(pk=pk).update(price=F("price") + 10)
                elif how == "instance":
                    other = Product.objects.get(pk=pk)
                    other.name = second
                    other.save()
                else:  # another row takes its place, so that the shop keeps its size
                    Product.objects.filter(pk=pk).delete()
                    Product.objects.create(name=second, category_id=product.category_id)
            title(product)
            summary(product)

        return body

    def writer_typed() -> Callable[[], object]:
        """A price assigned as the text or number a form or an API gave, which the column stores
        as an integer; then the saver caches from its instance."""
        pk, kind = rng.choice(pks), rng.choice(["text", "float"])

        def body() -> None:
            product = _load(pk, point)
            if product is None:
                return
            price = product.price + 1
            product.price = f"0{price}" if kind == "text" else price + 0.5  # stored as price
            try:
                product.save(update_fields=["price"])
            except DatabaseError as exc:  # a row deleted meanwhile
                if "did not affect any rows" not in str(exc):
                    raise
                return
            summary(product)

        return body

    def reader_snapshot(pk: int | None = None) -> Callable[[], object]:
        """A transaction at REPEATABLE READ (as a view under ATOMIC_REQUESTS on such a database):
        its first query takes the snapshot every later read sees; a row loaded later is as old."""
        pk = rng.choice(pks) if pk is None else pk

        def body() -> None:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                Category.objects.count()  # the snapshot is taken here
                point()  # another actor may commit and invalidate now
                product = Product.objects.filter(pk=pk).first()
                if product is not None:
                    title(product)
                    summary(product)

        return body

    def soft_purge(cat: int) -> list[Callable[[], object]]:
        """An edit soft-purges the listings of ``cat`` its reader just cached; then one reader
        recomputes the listing slowly, holding its lock, while the others ask for it: they are
        served the stale copies (or wait, or compute the nested listing from one)."""
        edit, done = writer("rename", focus_pk), [False]

        def editor() -> None:
            shop.cached_listing(cat)
            shop.cached_nest(cat)
            edit()
            done[0] = True

        def after_edit(read: Callable[[], object]) -> Callable[[], object]:
            def body() -> None:
                while not done[0]:
                    scheduler.step_aside()
                read()

            return body

        def slow() -> str:
            scheduler.step_aside()  # a long query: the others miss while this one holds the lock
            return shop.listing(cat)

        def slow_reader() -> None:
            shop.serve("list", cat, str(shop.tc.get_or_set(f"list:{cat}", slow, tags=[f"category:{cat}"])))

        return [
            editor,
            after_edit(slow_reader),
            after_edit(reader_listing(cat)),
            after_edit(reader_nested(cat)),
            after_edit(reader_shelf(cat)),
        ]

    def writer_labels() -> Callable[[], object]:
        pk, label = rng.choice(pks), rng.choice(list(Label.objects.values_list("pk", flat=True)))
        add = rng.random() < 0.5

        def body() -> None:
            product = _load(pk, point)
            if product is None:
                return
            try:
                (product.labels.add if add else product.labels.remove)(label)
            except IntegrityError as exc:  # a through row of a product deleted meanwhile
                if "FOREIGN KEY" not in str(exc).upper():
                    raise

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
                    created = Product.objects.create(name=name, category_id=cat)
                title(created)  # an instance from create(), used once its save is invalidated

        return body

    def reader_nested(cat: int | None = None) -> Callable[[], object]:
        cat = rng.choice(cats) if cat is None else cat
        return lambda: shop.cached_nest(cat)

    def reader_promo() -> Callable[[], object]:
        tenant = rng.choice(shop.tenants)

        def body() -> None:
            token = current_tenant.set(tenant)
            try:
                shop.cached_promo()
            finally:
                current_tenant.reset(token)

        return body

    def purger() -> Callable[[], object]:
        def body() -> None:
            shop.promo = f"p{rng.randrange(1000)}"
            invalidate_tags("promo", all_namespaces=True, source="harness")

        return body

    def web_reader() -> Callable[[], object]:
        pk, asgi = rng.choice(pks), rng.random() < 0.5
        url = f"/harness/product/{pk}/"

        def body() -> None:
            if asgi:
                async_to_sync(AsyncClient().get)(url)
            else:
                Client().get(url)

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
        ("nested", reader_nested),
        ("reuse", lambda: writer(rng.choice(["rename", "reprice"]), reuse=True)),
        ("twice", writer_twice),
        ("typed", writer_typed),
    ]
    if shop.snapshots:
        menu += [("snapshot", reader_snapshot)]
    if len(shop.tenants) > 1:
        menu += [("promo", reader_promo), ("purge", purger)]
    if shop.web:
        menu += [("web", web_reader)]
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
        # An editor that goes on with its instance, another editor of the row, and a reader.
        (
            "savers",
            lambda: [
                writer(rng.choice(["rename", "reprice"]), focus_pk, reuse=True),
                writer(rng.choice(["rename", "reprice"]), focus_pk),
                reader_title(),
            ],
        ),
        # A soft purge of a listing while an outer get_or_set and a plain reader recompute it.
        ("nest", lambda: [reader_nested(), reader_listing(), writer("move", focus_pk, target)]),
    ]
    if len(shop.tenants) > 1:
        # Readers of the banner in several namespaces, one of them first there, and the purge.
        groups.append(("tenants", lambda: [reader_promo(), reader_promo(), purger()]))
    if shop.stale_budget_ms:
        groups.append(("soft", lambda: soft_purge(home)))
    if shop.snapshots:
        # A transaction that took its snapshot, an editor of the row it loads later, a reader.
        groups.append(
            ("snapshot", lambda: [reader_snapshot(focus_pk), writer("rename", focus_pk), reader_title()])
        )
    if shop.web:
        groups.append(("requests", lambda: [web_reader(), writer("rename", focus_pk), web_reader()]))
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
