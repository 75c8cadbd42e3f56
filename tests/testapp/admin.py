"""ModelAdmins of the test models: plain ones (they get the purge action from django_tagcache), one
that mixes PurgeCacheMixin in itself, one with actions turned off, and an untagged model."""

from __future__ import annotations

from django.contrib import admin

from django_tagcache.admin import PurgeCacheMixin
from tests.testapp.models import Category, Label, Product, Seller, Untagged


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "price", "category")


@admin.register(Seller)
class SellerAdmin(PurgeCacheMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    pass


@admin.register(Label)
class LabelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    actions = None


admin.site.register(Category)
admin.site.register(Untagged)
