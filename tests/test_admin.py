"""The admin: the "Purge cached data" action, its permission, the purge page, the read-only purge log."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin import AdminSite, ModelAdmin
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from django_tagcache import tagcache
from django_tagcache.admin import PurgeCacheMixin, install_purge_action
from django_tagcache.models import PurgeRecord
from tests.testapp.admin import SellerAdmin
from tests.testapp.models import Category, Label, Product, Seller, Untagged

pytestmark = pytest.mark.django_db

PURGE_PAGE = "admin:django_tagcache_purgerecord_purge"


def staff(*perms: str, superuser: bool = False) -> User:
    user = User.objects.create(
        username="ann" if not superuser else "root", is_staff=True, is_superuser=superuser
    )
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def logged_in(user: User, **kwargs: Any) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def action_names(client: Client, changelist: str) -> list[str]:
    response = client.get(reverse(changelist))
    assert response.status_code == 200
    form = response.context["action_form"]
    return [] if form is None else [name for name, _label in form.fields["action"].choices if name]


@pytest.fixture
def products() -> list[Product]:
    cat = Category.objects.create(name="Mugs")
    return [Product.objects.create(name=f"p{n}", category=cat) for n in range(3)]


PRODUCT_PERMS = ("shop.view_product", "shop.change_product", "shop.delete_product")


def test_staff_without_the_permission_does_not_see_the_action(products: list[Product]) -> None:
    client = logged_in(staff(*PRODUCT_PERMS))
    assert action_names(client, "admin:shop_product_changelist") == ["delete_selected"]
    # Posting it anyway is refused like any unknown action: nothing is purged.
    tagcache.set("card", 1, tags=[products[0]])
    url = reverse("admin:shop_product_changelist")
    client.post(url, {"action": "purge_cached_data", "_selected_action": [products[0].pk]})
    assert tagcache.get("card") == 1
    assert not PurgeRecord.objects.exists()


def test_the_action_purges_every_tag_of_the_selected_rows(products: list[Product]) -> None:
    user = staff(*PRODUCT_PERMS, "django_tagcache.purge_cache")
    client = logged_in(user)
    assert action_names(client, "admin:shop_product_changelist") == ["delete_selected", "purge_cached_data"]
    p0, p1, p2 = products
    tagcache.set("card0", 1, tags=[p0])
    tagcache.set("category-page", 1, tags=[f"category:{p0.category_id}"])
    tagcache.set("card2", 1, tags=[p2])
    response = client.post(
        reverse("admin:shop_product_changelist"),
        {"action": "purge_cached_data", "_selected_action": [p0.pk, p1.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert tagcache.get("card0") is None
    assert tagcache.get("category-page") is None
    assert tagcache.get("card2") == 1
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert message.startswith("Purged the cached data of 2 products: ")
    assert "2 cache entries removed" in message
    record = PurgeRecord.objects.get()
    assert (record.user, record.username, record.source) == (user, "ann", "admin:action:shop.product")
    assert record.removed == 2
    assert f"shop.product:{p0.pk}" in record.tags
    assert f"category:{p0.category_id}" in record.tags


def test_the_action_only_where_it_means_something() -> None:
    client = logged_in(staff(superuser=True))
    assert "purge_cached_data" in action_names(client, "admin:shop_category_changelist")
    assert "purge_cached_data" in action_names(client, "admin:shop_seller_changelist")  # mixin by hand
    # Tagged by register() in a later app's ready(): the mixin decides per request.
    assert "purge_cached_data" in action_names(client, "admin:auth_user_changelist")
    assert "purge_cached_data" not in action_names(client, "admin:shop_untagged_changelist")
    assert "purge_cached_data" not in action_names(client, "admin:auth_group_changelist")
    assert action_names(client, "admin:shop_label_changelist") == []  # actions = None wins
    assert "purge_cached_data" not in action_names(client, "admin:django_tagcache_purgerecord_changelist")


def test_ready_mixed_the_purge_into_the_registered_model_admins() -> None:
    product_admin = admin.site.get_model_admin(Product)
    assert isinstance(product_admin, PurgeCacheMixin)
    assert type(product_admin).__name__ == "ProductAdmin"
    assert type(product_admin).__module__ == "tests.testapp.admin"
    assert type(product_admin).list_display == ("name", "price", "category")
    assert type(admin.site.get_model_admin(Seller)) is SellerAdmin  # has the mixin already: left alone
    assert not isinstance(admin.site.get_model_admin(Label), PurgeCacheMixin)  # actions = None
    assert not isinstance(admin.site.get_model_admin(PurgeRecord), PurgeCacheMixin)


def test_install_purge_action_on_another_site() -> None:
    site = AdminSite(name="other")
    site.register(Product)
    site.register(Untagged, ModelAdmin)
    assert install_purge_action(site) == [Product, Untagged]
    assert install_purge_action(site) == []  # idempotent
    assert isinstance(site.get_model_admin(Product), PurgeCacheMixin)


# --- the purge page ----------------------------------------------------------------------------------------


def test_the_purge_page_confirms_then_purges(products: list[Product]) -> None:
    root = staff(superuser=True)
    client = logged_in(root, enforce_csrf_checks=True)
    changelist = client.get(reverse("admin:django_tagcache_purgerecord_changelist"))
    assert reverse(PURGE_PAGE).encode() in changelist.content  # linked from the purge log
    form = client.get(reverse(PURGE_PAGE))
    assert form.status_code == 200
    assert b"Review the purge" in form.content
    token = form.cookies["csrftoken"].value
    tagcache.set("a", 1, tags=["promo"])
    tagcache.set("b", 1, tags=["shop.product"])
    posted = {"tags": "promo\n shop.product  promo", "cache": "default", "csrfmiddlewaretoken": token}
    confirm = client.post(reverse(PURGE_PAGE), posted)
    assert confirm.status_code == 200
    assert b"Yes, purge" in confirm.content
    assert list(confirm.context["tags"]) == ["promo", "shop.product"]
    assert tagcache.get("a") == 1
    assert not PurgeRecord.objects.exists()
    done = client.post(
        reverse(PURGE_PAGE), {**posted, "tags": confirm.context["tags_text"], "confirm": "yes"}
    )
    assert done.status_code == 302
    assert done["Location"] == reverse("admin:django_tagcache_purgerecord_changelist")
    assert tagcache.get("a") is None
    assert tagcache.get("b") is None
    record = PurgeRecord.objects.get()
    assert (record.user, record.source, record.tags, record.removed) == (
        root,
        "admin:purge_page",
        ["promo", "shop.product"],
        2,
    )
    assert [str(m) for m in get_messages(done.wsgi_request)] == [
        "Purged 2 tag(s) on cache 'default': 2 cache entries removed."
    ]


def test_the_purge_page_is_csrf_protected_and_for_superusers_only() -> None:
    root = logged_in(staff(superuser=True), enforce_csrf_checks=True)
    tagcache.set("a", 1, tags=["promo"])
    forged = root.post(reverse(PURGE_PAGE), {"tags": "promo", "cache": "default", "confirm": "yes"})
    assert forged.status_code == 403
    assert tagcache.get("a") == 1
    helper = logged_in(staff("django_tagcache.purge_cache", "django_tagcache.view_purgerecord"))
    assert helper.get(reverse(PURGE_PAGE)).status_code == 403
    assert (
        reverse(PURGE_PAGE).encode()
        not in helper.get(reverse("admin:django_tagcache_purgerecord_changelist")).content
    )
    assert Client().get(reverse(PURGE_PAGE)).status_code == 302  # to the login page


def test_the_purge_page_rejects_bad_tags() -> None:
    client = logged_in(staff(superuser=True))
    for tags, error in [
        ("", "This field is required."),
        ("x" * 300, "the limit is 256"),
        ("ok\x01", "cannot hold whitespace or control characters"),
        ("ok\x00", "Null characters"),
    ]:
        response = client.post(reverse(PURGE_PAGE), {"tags": tags, "cache": "default", "confirm": "yes"})
        assert response.status_code == 200
        assert error in response.content.decode()
    response = client.post(reverse(PURGE_PAGE), {"tags": "a", "cache": "dummy"})
    assert "Select a valid choice" in response.content.decode()
    assert not PurgeRecord.objects.exists()


def test_the_purge_page_reports_an_unreachable_redis(settings: Any) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "down": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://127.0.0.1:1"},
    }
    client = logged_in(staff(superuser=True))
    response = client.post(reverse(PURGE_PAGE), {"tags": "a", "cache": "down", "confirm": "yes"})
    assert response.status_code == 200
    failed, recorded = [str(m) for m in get_messages(response.wsgi_request)]
    assert failed.startswith("The purge failed: the cache could not be reached")
    assert recorded.startswith("The attempt is recorded in the purge log, marked as failed")
    assert "Could not invalidate 1 tag(s)" in PurgeRecord.objects.get().error


# --- the purge log -----------------------------------------------------------------------------------------


def test_the_purge_log_is_read_only_with_filters_and_search() -> None:
    record = PurgeRecord.objects.create(
        source="admin:purge_page", username="ann", tags=["promo", "x"], tag_count=2
    )
    PurgeRecord.objects.create(source="deploy", tags=["other"], tag_count=1)
    client = logged_in(staff(superuser=True))
    changelist = reverse("admin:django_tagcache_purgerecord_changelist")
    page = client.get(changelist)
    assert page.status_code == 200
    assert page.context["cl"].result_count == 2
    assert [f.title for f in page.context["cl"].filter_specs] == ["source", "cache", "namespace", "created"]
    assert client.get(changelist, {"q": "promo"}).context["cl"].result_count == 1
    assert client.get(changelist, {"source": "deploy"}).context["cl"].result_count == 1
    assert client.get(reverse("admin:django_tagcache_purgerecord_add")).status_code == 403
    detail = client.get(reverse("admin:django_tagcache_purgerecord_change", args=[record.pk]))
    assert detail.status_code == 200
    assert b'name="_save"' not in detail.content
    assert (
        client.post(reverse("admin:django_tagcache_purgerecord_delete", args=[record.pk])).status_code == 403
    )
    assert PurgeRecord.objects.count() == 2


def test_the_permission_is_the_only_one_besides_view() -> None:
    perms = set(
        Permission.objects.filter(content_type__app_label="django_tagcache").values_list(
            "codename", flat=True
        )
    )
    assert {"purge_cache", "view_purgerecord"} <= perms
    assert not {"add_purgerecord", "change_purgerecord", "delete_purgerecord"} & perms
