"""Computed widgets, cached under tags: their queries run only on a miss.

``top_sellers`` uses ``@cached`` and ``category_counts`` uses ``tagcache.get_or_set``. Both are
tagged with model classes (the model tag, ``store.product``): any write to those models may
change a ranking or a count, so any write invalidates them. Inside a cached page their tags
bubble up: the home page is recomputed when they are.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Sum

from django_tagcache import cached, tagcache

from .models import Category, Product, Seller


@dataclass(frozen=True)
class Ranked:
    name: str
    url: str
    count: int


@cached(timeout=600, tags=[Product, Seller])
def top_sellers(limit: int = 3) -> list[Ranked]:
    """The sellers whose products sold the most units, best first."""
    sellers = (
        Seller.objects.annotate(units=Sum("products__units_sold"))
        .filter(units__gt=0)
        .order_by("-units", "name")
        .values_list("pk", "name", "units")[:limit]
    )
    return [Ranked(name, Seller(pk=pk).get_absolute_url(), units) for pk, name, units in sellers]


def category_counts() -> list[Ranked]:
    """Every category with its number of products."""
    counts: list[Ranked] = tagcache.get_or_set(
        "store:category-counts", _count_products, timeout=600, tags=[Category, Product]
    )
    return counts


def _count_products() -> list[Ranked]:
    categories = Category.objects.annotate(products_count=Count("products")).values_list(
        "pk", "name", "products_count"
    )
    return [Ranked(name, Category(pk=pk).get_absolute_url(), n) for pk, name, n in categories]
