"""RedisClusterClient under failure behaves like django-redis' own clients.

With ``IGNORE_EXCEPTIONS`` every cache call returns django-redis' "miss" answer; without it, the
error raised is a redis-py ``ConnectionError``, as with the default client. Both for a cluster
that was never reachable (the client connects on first use) and for one that dies after use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import caches
from redis.exceptions import ConnectionError as RedisConnectionError

from django_tagcache import TagCacheUnavailable, tagcache
from django_tagcache.backends.cluster import _reset_clusters
from tests.cluster import LocalCluster, start_cluster
from tests.servers import free_port

pytestmark = pytest.mark.cluster

CALLS: dict[str, Callable[[Any], object]] = {
    "get": lambda cache: cache.get("k1", "DEFAULT"),
    "get_many": lambda cache: cache.get_many(["a", "b", "c"]),
    "set": lambda cache: cache.set("k2", 2),
    "delete": lambda cache: cache.delete("k1"),
    "incr": lambda cache: cache.incr("k1"),
    "keys": lambda cache: cache.keys("*"),
    "delete_pattern": lambda cache: cache.delete_pattern("*"),
    "clear": lambda cache: cache.clear(),
}


def use(
    settings: Any, location: str, ignore: bool, client: str = "django_tagcache.cluster.RedisClusterClient"
) -> Any:
    _reset_clusters()
    settings.CACHES = {
        **settings.CACHES,
        "gone": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": location,
            "OPTIONS": {
                "CLIENT_CLASS": client,
                "IGNORE_EXCEPTIONS": ignore,
                "SOCKET_TIMEOUT": 0.25,
                "SOCKET_CONNECT_TIMEOUT": 0.25,
            },
        },
    }
    return caches["gone"]


@pytest.fixture
def expected(settings: Any) -> dict[str, object]:
    """What django-redis' own DefaultClient answers on an unreachable server with IGNORE_EXCEPTIONS."""
    cache = use(
        settings, f"redis://127.0.0.1:{free_port()}", ignore=True, client="django_redis.client.DefaultClient"
    )
    return {name: call(cache) for name, call in CALLS.items()}


@pytest.fixture
def dead_cluster() -> Iterator[LocalCluster]:
    """A cluster of the test's own, every node stopped after the test has used it."""
    cluster = start_cluster(shards=3)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.parametrize("call", list(CALLS))
def test_a_cluster_never_reached_is_a_miss_with_ignore_exceptions(
    settings: Any, call: str, expected: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    cache = use(settings, f"redis://127.0.0.1:{free_port()}", ignore=True)
    with caplog.at_level(logging.ERROR):
        assert CALLS[call](cache) == expected[call]
    assert expected["get"] == "DEFAULT"


@pytest.mark.parametrize("call", list(CALLS))
def test_a_cluster_never_reached_raises_a_connection_error_without(settings: Any, call: str) -> None:
    cache = use(settings, f"redis://127.0.0.1:{free_port()}", ignore=False)
    with pytest.raises(RedisConnectionError):
        CALLS[call](cache)


def test_a_cluster_that_dies_after_use_is_a_miss_with_ignore_exceptions(
    settings: Any, dead_cluster: LocalCluster, expected: dict[str, object]
) -> None:
    cache = use(settings, dead_cluster.location, ignore=True)
    cache.set("k1", 1)
    cache.set_many({"a": 1, "b": 2, "c": 3})
    assert (cache.get("k1"), cache.get_many(["a", "b", "c"])) == (1, {"a": 1, "b": 2, "c": 3})
    for server in dead_cluster.servers:
        server.kill()
    for name, call in CALLS.items():
        assert call(cache) == expected[name], name


def test_the_tag_cache_fails_open_on_a_cluster_never_reached(settings: Any) -> None:
    use(settings, f"redis://127.0.0.1:{free_port()}", ignore=False)
    settings.TAGCACHE = {"CACHE": "gone", "RETRY": {"ATTEMPTS": 1}}
    assert tagcache.get("k") is None
    assert tagcache.get_or_set("k", lambda: "computed", tags=["t"]) == "computed"
    assert tagcache.set("k", 1, tags=["t"]) is False
    with pytest.raises(TagCacheUnavailable):
        tagcache.invalidate_tags("t")


def test_raw_keys_asks_every_primary(settings: Any, redis_cluster: Any) -> None:
    cache: Any = caches["cluster"]
    names = [f"spread-{i}" for i in range(30)]  # over several slots, so over every primary
    for name in names:
        cache.set(name, 1)
    raw = cache.client.get_client(write=False)
    assert {cache.client.reverse_key(key.decode()) for key in raw.keys("t3:*spread-*")} == set(names)


def test_close_connection_closes_the_cluster_connections(settings: Any, redis_cluster: Any) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "cluster": {
            **settings.CACHES["cluster"],
            "OPTIONS": {**settings.CACHES["cluster"]["OPTIONS"], "CLOSE_CONNECTION": True},
        },
    }
    cache: Any = caches["cluster"]
    cache.set("k", 1)
    cluster = cache.client.get_client()

    def open_sockets() -> int:
        pools = [
            node.redis_connection.connection_pool for node in cluster.get_nodes() if node.redis_connection
        ]
        return sum(conn._sock is not None for pool in pools for conn in pool._available_connections)

    assert open_sockets() > 0
    cache.close()  # what Django does at the end of each request
    assert open_sockets() == 0
    assert cache.get("k") == 1  # connections reopen on their next use


def test_a_cross_slot_command_is_a_bug_not_an_outage(settings: Any, redis_cluster: Any) -> None:
    # Several keys of different slots in one command: redis-py refuses it before sending. That is a
    # programming error, which must not pass for a connection error (and be ignored as one).
    from redis.exceptions import RedisClusterException

    raw: Any = caches["cluster"].client.get_client()  # type: ignore[attr-defined]
    with pytest.raises(RedisClusterException) as refused:
        raw.sunion("{a}x", "{b}y")
    assert not isinstance(refused.value, RedisConnectionError)
    with pytest.raises(RedisClusterException) as refused:
        raw.pipeline().sunion("{a}x", "{b}y").execute()
    assert not isinstance(refused.value, RedisConnectionError)
