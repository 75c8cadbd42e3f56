"""The shop's admin: plain ModelAdmins. django-tagcache adds "Purge cached data" to each by itself."""

from __future__ import annotations

from django.contrib import admin

from .models import Category, Product, Seller, Stock, Warehouse


class StockInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Stock
    extra = 0


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "category", "seller", "price", "units_sold")
    list_filter = ("category", "seller")
    search_fields = ("name",)
    inlines = (StockInline,)


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}  # noqa: RUF012 - the admin's own declaration style


@admin.register(Seller)
class SellerAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "user")


@admin.register(Warehouse)
class WarehouseAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "city")


@admin.register(Stock)
class StockAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    # Quantities editable in the list: a stock change alone, without saving the product.
    list_display = ("product", "warehouse", "quantity")
    list_editable = ("quantity",)
    list_filter = ("warehouse",)
    list_select_related = ("product", "warehouse")
