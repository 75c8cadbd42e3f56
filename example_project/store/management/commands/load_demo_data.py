"""``load_demo_data``: the example shop's categories, sellers, warehouses, products and stock.

Idempotent: rows are looked up by name and created only if missing, so running it again changes
nothing, keeps edits made in the admin, and invalidates nothing.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from ...models import Category, Product, Seller, Stock, Warehouse

CATEGORIES = {"kitchen": "Kitchen", "garden": "Garden", "lighting": "Lighting", "books": "Books"}
# seller name: (username, first name, last name)
SELLERS = {
    "Ann's Pottery": ("ann", "Ann", "Lee"),
    "Bob's Tools": ("bob", "Bob", "Marsh"),
    "Cho Lights": ("cho", "Cho", "Park"),
}
WAREHOUSES = {"North": "Leeds", "South": "Lyon"}
# name: (category slug, seller name or None, price, units sold, description, stock per warehouse)
PRODUCTS: dict[str, tuple[str, str | None, str, int, str, dict[str, int]]] = {
    "Blue mug": ("kitchen", "Ann's Pottery", "12.50", 340, "Stoneware, 350 ml.", {"North": 40, "South": 12}),
    "Teapot": ("kitchen", "Ann's Pottery", "34.00", 120, "Six cups, with a strainer.", {"North": 8}),
    "Salad bowl": ("kitchen", "Ann's Pottery", "22.00", 80, "Glazed, 28 cm.", {"South": 15}),
    "Chef's knife": ("kitchen", "Bob's Tools", "59.00", 210, "20 cm carbon steel.", {"North": 5, "South": 9}),
    "Garden shears": ("garden", "Bob's Tools", "27.50", 150, "For hedges and roses.", {"North": 22}),
    "Watering can": ("garden", "Bob's Tools", "18.00", 95, "Galvanised, 9 litres.", {"South": 30}),
    "Trowel": ("garden", "Bob's Tools", "9.90", 60, "Ash handle.", {"North": 50, "South": 50}),
    "Desk lamp": ("lighting", "Cho Lights", "45.00", 175, "Adjustable arm, warm LED.", {"North": 14}),
    "Paper lantern": ("lighting", "Cho Lights", "15.00", 70, "45 cm, white.", {"South": 60}),
    "Reading light": ("lighting", "Cho Lights", "29.00", 40, "Clips on a book or a shelf.", {}),
    "The Cache Handbook": ("books", None, "24.00", 55, "Tags, TTLs and the stale write-back.", {"North": 3}),
}


class Command(BaseCommand):
    help = "Load the example shop's demo data (idempotent: existing rows are kept as they are)."

    def handle(self, *args: Any, **options: Any) -> None:
        created: Counter[str] = Counter()
        # One transaction: every invalidation these writes cause is sent once, at commit.
        with transaction.atomic():
            categories = {}
            for slug, name in CATEGORIES.items():
                categories[slug], new = Category.objects.get_or_create(slug=slug, defaults={"name": name})
                created["categories"] += new
            sellers = {}
            for name, (username, first, last) in SELLERS.items():
                user, new = get_user_model().objects.get_or_create(
                    username=username,
                    defaults={"first_name": first, "last_name": last, "email": f"{username}@example.com"},
                )
                if new:
                    user.set_unusable_password()
                    user.save(update_fields=["password"])
                    created["users"] += 1
                sellers[name], new = Seller.objects.get_or_create(name=name, defaults={"user": user})
                created["sellers"] += new
            warehouses = {}
            for name, city in WAREHOUSES.items():
                warehouses[name], new = Warehouse.objects.get_or_create(name=name, defaults={"city": city})
                created["warehouses"] += new
            for name, (slug, seller, price, sold, description, stock) in PRODUCTS.items():
                product, new = Product.objects.get_or_create(
                    name=name,
                    defaults={
                        "category": categories[slug],
                        "seller": sellers[seller] if seller else None,
                        "price": Decimal(price),
                        "units_sold": sold,
                        "description": description,
                    },
                )
                created["products"] += new
                if not new:
                    continue  # its stock, too, is as the admin left it
                for place, quantity in stock.items():
                    Stock.objects.create(product=product, warehouse=warehouses[place], quantity=quantity)
                    created["stock rows"] += 1
        if created.total():
            summary = ", ".join(f"{count} {what}" for what, count in created.items() if count)
            self.stdout.write(f"Demo data loaded: {summary}.")
        else:
            self.stdout.write("Demo data already loaded: nothing changed.")
