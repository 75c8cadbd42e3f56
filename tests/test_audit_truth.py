"""The audit log tells the truth: a purge that fails half way, a failing receiver, ATOMIC_REQUESTS,
namespaces, and a purge whose record could not be written."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.urls import reverse

from django_tagcache import TagCache, TagCacheUnavailable, invalidate_tags, tagcache
from django_tagcache.caching.api import get_store
from django_tagcache.caching.namespaces import in_namespace
from django_tagcache.models import PurgeRecord
from django_tagcache.ops.audit import purge_tags
from django_tagcache.signals import tags_invalidated
from tests.proxy import Proxy
from tests.servers import RedisServer
from tests.testapp.models import Category, Product

pytestmark = pytest.mark.django_db

PURGE_PAGE = "admin:django_tagcache_purgerecord_purge"


# --- 6. A purge that touched Redis always leaves a true row -----------------------------------------


@pytest.fixture
def cut_during_drain(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Cache "own" behind a proxy; the connection is cut when the drain of a big tag starts."""
    server = RedisServer.start()
    proxy = Proxy(server.port)
    settings.CACHES = {
        **settings.CACHES,
        "own": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": f"redis://127.0.0.1:{proxy.port}"},
    }
    settings.TAGCACHE = {"CACHE": "default", "CHUNK_SIZE": 10, "RETRY": {"ATTEMPTS": 1}}
    for n in range(50):
        TagCache("own").set(f"k{n}", n, tags=["big"])
    store = get_store("own")
    drain = store._drain  # the step both faces of the store run (core/steps.py)

    async def cut_then_drain(*args: Any, **kwargs: Any) -> int:
        proxy.cut()  # the index is renamed aside and the generation moved: Redis was touched
        return await drain(*args, **kwargs)

    monkeypatch.setattr(store, "_drain", cut_then_drain)
    try:
        yield "own"
    finally:
        proxy.close()
        server.stop()


def test_a_purge_cut_during_its_drain_is_recorded_as_failed(cut_during_drain: str) -> None:
    with pytest.raises(TagCacheUnavailable):
        purge_tags(["big"], source="command:test", alias=cut_during_drain)
    record = PurgeRecord.objects.get()
    assert (record.source, record.tags, record.cache) == ("command:test", ["big"], cut_during_drain)
    assert "Could not invalidate" in record.error


def test_an_api_purge_cut_during_its_drain_is_recorded_as_failed(cut_during_drain: str) -> None:
    with pytest.raises(TagCacheUnavailable):
        TagCache(cut_during_drain).invalidate_tags("big", source="deploy:7")
    record = PurgeRecord.objects.get()
    assert (record.source, record.tags) == ("deploy:7", ["big"])
    assert record.error


def test_a_completed_purge_records_no_error() -> None:
    tagcache.set("k", 1, tags=["a"])
    purge_tags(["a"], source="command:test")
    assert PurgeRecord.objects.get().error == ""


@pytest.fixture
def raising_receiver() -> Iterator[None]:
    def receiver(**kwargs: object) -> None:
        raise RuntimeError("a receiver's bug")

    tags_invalidated.connect(receiver, dispatch_uid="test-raising-receiver")
    yield
    tags_invalidated.disconnect(dispatch_uid="test-raising-receiver")


@pytest.mark.usefixtures("raising_receiver")
def test_a_raising_receiver_neither_fails_nor_shrinks_a_purge(caplog: pytest.LogCaptureFixture) -> None:
    tagcache.set("k", 1, tags=["t0999"])
    tags = [f"t{n:04}" for n in range(1000)]
    assert purge_tags(tags, source="command:test") == 1
    record = PurgeRecord.objects.get()
    assert (record.tag_count, record.removed, record.error) == (1000, 1, "")
    assert "a receiver's bug" in caplog.text
    assert invalidate_tags("x", source="api") == 0  # the API too: logged, not raised


def _root() -> Client:
    client = Client()
    client.force_login(User.objects.create(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.mark.usefixtures("raising_receiver")
@pytest.mark.parametrize("atomic_requests", [False, True])
def test_a_raising_receiver_does_not_undo_the_purge_pages_record(
    monkeypatch: pytest.MonkeyPatch, atomic_requests: bool
) -> None:
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", atomic_requests)
    tagcache.set("a", 1, tags=["promo"])
    posted = {"tags": "promo", "cache": "default", "confirm": "yes"}
    response = _root().post(reverse(PURGE_PAGE), posted)
    assert response.status_code == 302
    record = PurgeRecord.objects.get()
    assert (record.tags, record.removed, record.username) == (["promo"], 1, "root")


@pytest.mark.usefixtures("raising_receiver")
@pytest.mark.parametrize("atomic_requests", [False, True])
def test_a_raising_receiver_does_not_undo_the_admin_actions_record(
    monkeypatch: pytest.MonkeyPatch, atomic_requests: bool
) -> None:
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", atomic_requests)
    product = Product.objects.create(name="p", category=Category.objects.create(name="c"))
    response = _root().post(
        reverse("admin:shop_product_changelist"),
        {"action": "purge_cached_data", "_selected_action": [product.pk]},
    )
    assert response.status_code == 302
    assert PurgeRecord.objects.get().source == "admin:action:shop.product"


# --- 7. Rows record the namespace -------------------------------------------------------------------


def test_a_record_says_which_namespace_was_purged(settings: Any) -> None:
    settings.TAGCACHE = {"CACHE": "default", "NAMESPACE": "tests.tenancy.tenant"}
    with in_namespace("acme"):
        invalidate_tags("menu", source="api")
    with in_namespace("globex"):
        purge_tags(["menu"], source="command:test")
    invalidate_tags("menu", source="api")
    rows = [(r.source, r.namespace) for r in PurgeRecord.objects.order_by("pk")]
    assert rows == [("api", "acme"), ("command:test", "globex"), ("api", "")]


# --- 8. The purge page says whether the purge was recorded ------------------------------------------


@pytest.fixture
def audit_refused() -> None:
    """The database refuses every new audit record: a real error, raised by a trigger."""
    table = PurgeRecord._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(
                f"CREATE TRIGGER refuse_audit BEFORE INSERT ON {table} "
                "BEGIN SELECT RAISE(ABORT, 'audit refused'); END"
            )
        elif connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION refuse_audit() RETURNS trigger AS "
                "$$ BEGIN RAISE EXCEPTION 'audit refused'; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                f"CREATE TRIGGER refuse_audit BEFORE INSERT ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION refuse_audit()"
            )
        else:
            pytest.skip(f"no refusing trigger written for {connection.vendor}")
    # The test's transaction is rolled back afterwards, trigger included.


@pytest.mark.usefixtures("audit_refused")
def test_the_purge_page_says_when_the_purge_could_not_be_recorded() -> None:
    tagcache.set("a", 1, tags=["promo"])
    response = _root().post(reverse(PURGE_PAGE), {"tags": "promo", "cache": "default", "confirm": "yes"})
    assert tagcache.get("a") is None
    messages = " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert "could not be recorded" in messages
    assert "recorded under your name" not in messages
    assert not PurgeRecord.objects.exists()


@pytest.mark.usefixtures("audit_refused")
def test_the_admin_action_says_when_the_purge_could_not_be_recorded() -> None:
    product = Product.objects.create(name="p", category=Category.objects.create(name="c"))
    response = _root().post(
        reverse("admin:shop_product_changelist"),
        {"action": "purge_cached_data", "_selected_action": [product.pk]},
    )
    messages = " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert "could not be recorded" in messages
