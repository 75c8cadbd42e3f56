"""The shop's pages, each cached whole under tags.

``home``, ``category_detail`` and ``product_detail`` are cached by ``cache_page_tagged``;
``catalog`` and ``seller_detail`` live under /catalog/, which the section middleware caches
(``sections.py``), so they know nothing of caching but say with ``add_tags()`` what they read.
Every page also carries the tags of the fragments and widgets it contains (tags bubble up).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.shortcuts import get_object_or_404, render

from django_tagcache import add_tags
from django_tagcache.views import cache_page_tagged

from .models import Category, Product, Seller, Warehouse
from .widgets import category_counts, top_sellers

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponse

TIMEOUT = 600


@cache_page_tagged(TIMEOUT)
def home(request: HttpRequest) -> HttpResponse:
    # Which products sell best changes with any product write: the model tag, noted before the
    # rows are read (the queryset is read while the template renders). The widgets and the cards
    # bring their own tags.
    add_tags(Product)
    context = {
        "featured": Product.objects.select_related("category", "seller").order_by("-units_sold")[:4],
        "top_sellers": top_sellers(),
        "category_counts": category_counts(),
    }
    return render(request, "store/home.html", context)


# The page's own tags are known from the URL, before anything is read: "category:<pk>" is what
# a change to the category or to any product in it invalidates.
@cache_page_tagged(TIMEOUT, tags=lambda request, pk: [f"category:{pk}"])
def category_detail(request: HttpRequest, pk: int) -> HttpResponse:
    category = get_object_or_404(Category, pk=pk)
    products = category.products.select_related("category", "seller")
    return render(request, "store/category.html", {"category": category, "products": products})


@cache_page_tagged(TIMEOUT, tags=lambda request, pk: [f"store.product:{pk}", f"stock:{pk}"])
def product_detail(request: HttpRequest, pk: int) -> HttpResponse:
    product = get_object_or_404(Product.objects.select_related("category", "seller"), pk=pk)
    # The stock table lists this product's stock rows and the names of their warehouses: any
    # warehouse write (the model tag, from the model class) changes it too.
    stock_tags = [f"stock:{pk}", Warehouse]
    return render(request, "store/product.html", {"product": product, "stock_tags": stock_tags})


def catalog(request: HttpRequest) -> HttpResponse:
    # Before the rows are read (the token rule, docs/templates-and-views.md): any product write,
    # a new product included, changes this list.
    add_tags(Product)
    products = Product.objects.select_related("category", "seller")
    return render(request, "store/catalog.html", {"products": products})


def seller_detail(request: HttpRequest, pk: int) -> HttpResponse:
    add_tags(f"seller:{pk}")
    seller = get_object_or_404(Seller, pk=pk)
    products = seller.products.select_related("category", "seller")
    # The contact block reads the seller's user account, tagged "user:<pk>" by register() in apps.py.
    contact_tags = f"user:{seller.user_id}" if seller.user_id is not None else ""
    return render(
        request,
        "store/seller.html",
        {"seller": seller, "products": products, "contact_tags": contact_tags},
    )
