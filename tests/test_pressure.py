"""Redis under memory pressure: a full Redis (maxmemory + noeviction) is trouble like an outage.

Reads fail open, invalidations reach the outbox (or raise TagCacheUnavailable where there is
none), and a committed save never raises. The servers are the tests' own, filled for real.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.template import Context, Template
from redis.exceptions import OutOfMemoryError

from django_tagcache import TagCacheUnavailable
from django_tagcache.core import metrics
from django_tagcache.orm.outbox import PendingInvalidation
from tests.faults import Faulty
from tests.testapp.models import Category, Product

pytestmark = pytest.mark.django_db(transaction=True)


def fill(server: Faulty) -> None:
    """Fill the server with data, then cap maxmemory below what it holds, with noeviction.

    Every write is then refused with OOM. (Capping right at the limit is not enough: a closed
    connection frees its buffers, and the server has room again.)
    """
    with server.admin() as admin:
        pipe = admin.pipeline(transaction=False)
        for i in range(64):
            pipe.set(f"filler:{i}", b"x" * 8192)
        pipe.execute()
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", used - 256 * 1024)
        with pytest.raises(OutOfMemoryError):
            admin.set("one-more", b"x")


def relieve(server: Faulty) -> None:
    server.admin().config_set("maxmemory", 0)


def test_reads_and_writes_fail_open_when_redis_is_full(faulty: Faulty) -> None:
    tc = faulty.tc
    assert tc.set("hot", "v", tags=["t"]) is True
    fill(faulty)
    assert tc.get("hot") == "v"  # a full Redis still answers reads
    assert tc.get_or_set("cold", lambda: "computed", tags=["t"]) == "computed"
    assert tc.set("new", "v", tags=["t"]) is False
    template = Template('{% load tagcache %}{% tagcache 60 "box" tags="t" %}box{% endtagcache %}')
    assert template.render(Context({})) == "box"
    assert metrics.snapshot()["failures"] >= 3


def test_an_invalidation_refused_by_a_full_redis_is_never_dropped(faulty: Faulty) -> None:
    tc = faulty.tc
    tc.set("hot", "v", tags=["t"])
    fill(faulty)
    with pytest.raises(TagCacheUnavailable):
        tc.invalidate_tags("t")


def test_a_committed_save_never_raises_and_reaches_the_outbox(faulty: Faulty, settings: Any) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "OUTBOX": True}
    tc = faulty.tc
    category = Category.objects.create(name="c")
    tc.set("page", "old", tags=[f"category:{category.pk}"])
    fill(faulty)
    product = Product.objects.create(name="p", category=category)  # autocommit: must not raise
    assert [f"category:{category.pk}" in row.tags for row in PendingInvalidation.objects.all()] == [True]
    relieve(faulty)
    assert faulty.tc.store.breaker is not None
    faulty.tc.store.breaker.record_success()  # as the next successful call would
    from django.core.management import call_command

    call_command("tagcache_drain", verbosity=0)
    assert PendingInvalidation.objects.count() == 0
    assert tc.get("page") is None
    assert Product.objects.get(pk=product.pk).name == "p"


def test_a_committed_save_without_outbox_never_raises(faulty: Faulty) -> None:
    category = Category.objects.create(name="c")
    fill(faulty)
    Product.objects.create(name="p", category=category)
    assert metrics.snapshot()["lost_invalidations"] == 1


def test_under_noeviction_no_tag_index_is_lost(faulty: Faulty) -> None:
    # The one policy W002 accepts: a full Redis refuses writes instead of evicting an index.
    tc = faulty.tc
    for i in range(50):
        assert tc.set(f"k{i}", i, tags=[f"t{i}", "all"]) is True
    fill(faulty)
    assert tc.set("late", 1, tags=["all"]) is False
    assert [tc.get(f"k{i}") for i in range(50)] == list(range(50))
    relieve(faulty)
    assert faulty.tc.store.breaker is not None
    faulty.tc.store.breaker.record_success()
    assert tc.invalidate_tags(*[f"t{i}" for i in range(25)]) == 25
    assert tc.invalidate_tags("all") == 25
    assert [tc.get(f"k{i}") for i in range(50)] == [None] * 50


@pytest.mark.cluster
def test_a_full_cluster_is_trouble_too(settings: Any) -> None:
    from django_tagcache import tagcache
    from django_tagcache.backends.cluster import _reset_clusters
    from tests.cluster import start_cluster

    cluster = start_cluster(shards=3)  # its own: every primary is filled
    try:
        _reset_clusters()
        options = {"CLIENT_CLASS": "django_tagcache.cluster.RedisClusterClient"}
        cache = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": cluster.location, "OPTIONS": options}
        settings.CACHES = {**settings.CACHES, "full": cache}
        settings.TAGCACHE = {"CACHE": "full"}
        assert tagcache.set("hot", 1, tags=["t"]) is True
        for port in cluster.primaries():
            node = cluster.node(port)
            node.config_set("maxmemory-policy", "noeviction")
            node.config_set("maxmemory", int(node.info("memory")["used_memory"]) - 256 * 1024)
        assert tagcache.get("hot") == 1
        assert tagcache.get_or_set("cold", lambda: "computed", tags=["t"]) == "computed"
        assert tagcache.set("new", 2, tags=["t"]) is False
        with pytest.raises(TagCacheUnavailable, match="OutOfMemoryError"):
            tagcache.invalidate_tags("t")
    finally:
        _reset_clusters()
        cluster.stop()
