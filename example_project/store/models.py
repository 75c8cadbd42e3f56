"""The shop's data. Each model says in ``Meta.cache_tags`` which tags its rows feed.

Two kinds of tag are used, deliberately apart:

- ``category:<pk>``, ``seller:<pk>``, ``stock:<product pk>``: "something listed under this
  category/seller/product changed". A product's save invalidates its category's and seller's
  tags, so the category page and the seller page, which list it, are recomputed.
- the automatic instance tags (``store.category:<pk>``): "this row changed". A product card shows
  its category's name, so it carries ``store.category:<pk>``, which only a change of the category
  itself invalidates: editing one product does not recompute the cards of its neighbours.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Sum
from django.urls import reverse


class Category(models.Model):
    name = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)

    class Meta:
        ordering = ("name",)
        verbose_name_plural = "categories"
        cache_tags = ("category:{pk}",)

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("store:category", args=[self.pk])


class Seller(models.Model):
    name = models.CharField(max_length=100)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="seller"
    )

    class Meta:
        ordering = ("name",)
        cache_tags = ("seller:{pk}",)

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("store:seller", args=[self.pk])


class Warehouse(models.Model):
    name = models.CharField(max_length=100)
    city = models.CharField(max_length=100)

    class Meta:
        ordering = ("name",)
        cache_tags = ("warehouse:{pk}",)

    def __str__(self) -> str:
        return f"{self.name} ({self.city})"


class Product(models.Model):
    name = models.CharField(max_length=100)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="products")
    seller = models.ForeignKey(
        Seller, null=True, blank=True, on_delete=models.SET_NULL, related_name="products"
    )
    price = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("0.00"))
    description = models.TextField(blank=True)
    units_sold = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ("name",)
        cache_tags = ("category:{category_id}", "seller:{seller_id}")

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("store:product", args=[self.pk])

    @property
    def card_tags(self) -> list[object]:
        """The tags of this product's card: the product, the category and seller it names, its stock."""
        tags: list[object] = [self, f"store.category:{self.category_id}", f"stock:{self.pk}"]
        if self.seller_id is not None:
            tags.append(f"store.seller:{self.seller_id}")
        return tags

    def in_stock(self) -> int:
        """Units in all warehouses: one query, run only when a fragment that shows it is rendered."""
        total: int | None = self.stock.aggregate(total=Sum("quantity"))["total"]
        return total or 0


class Stock(models.Model):
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="stock")
    warehouse = models.ForeignKey(Warehouse, on_delete=models.CASCADE, related_name="stock")
    quantity = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ("warehouse__name",)
        verbose_name_plural = "stock"
        cache_tags = ("stock:{product_id}", "warehouse:{warehouse_id}")
        constraints = (
            models.UniqueConstraint(fields=("product", "warehouse"), name="store_stock_one_row_per_place"),
        )

    def __str__(self) -> str:
        return f"{self.product} in {self.warehouse}"
