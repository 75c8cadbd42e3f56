from __future__ import annotations

from django.db import models


class Category(models.Model):
    name = models.CharField(max_length=50)

    class Meta:
        cache_tags: list[str] = []


class Seller(models.Model):
    name = models.CharField(max_length=50)

    class Meta:
        cache_tags = ["seller-name:{name}"]


class Label(models.Model):
    name = models.CharField(max_length=50)

    class Meta:
        cache_tags = ["label-name:{name}"]
        cache_staleness = "best_effort"


class Product(models.Model):
    name = models.CharField(max_length=50)
    price = models.IntegerField(default=0)
    category = models.ForeignKey(Category, on_delete=models.CASCADE)
    seller = models.ForeignKey(Seller, null=True, blank=True, on_delete=models.SET_NULL)
    labels = models.ManyToManyField(Label, blank=True, related_name="products")

    class Meta:
        cache_tags = ["category:{category_id}", "seller:{seller_id}"]


class DiscountedProduct(Product):
    """A proxy: same rows, so the same tags, plus its own template."""

    class Meta:
        proxy = True
        cache_tags = ["price:{price}"]


class Place(models.Model):
    name = models.CharField(max_length=50)
    city = models.CharField(max_length=50)

    class Meta:
        cache_tags = ["city:{city}"]


class Restaurant(Place):
    cuisine = models.CharField(max_length=50)

    class Meta:
        cache_tags = ["cuisine:{cuisine}"]


class Untagged(models.Model):
    name = models.CharField(max_length=50)
    category = models.ForeignKey(Category, null=True, on_delete=models.SET_NULL)


class PlainProduct(models.Model):
    """Product's shape without cache tags: the baseline of the save benchmark."""

    name = models.CharField(max_length=50)
    price = models.IntegerField(default=0)
    category = models.ForeignKey(Category, on_delete=models.CASCADE, related_name="+")
    seller = models.ForeignKey(Seller, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")


class Shelf(models.Model):
    """Products placed on shelves through a model of their own."""

    name = models.CharField(max_length=50)
    products = models.ManyToManyField(Product, through="Placement", related_name="shelves")

    class Meta:
        cache_tags = ["shelf:{pk}"]


class Placement(models.Model):
    """The custom intermediate model of Shelf.products; it has no cache tags of its own."""

    shelf = models.ForeignKey(Shelf, on_delete=models.CASCADE)
    product = models.ForeignKey(Product, on_delete=models.CASCADE)
    position = models.IntegerField(default=0)
