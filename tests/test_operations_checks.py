"""The operational system checks: Redis' eviction policy (W002/W003) and the admin's order (W004)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.checks import Warning, run_checks
from django.core.management import call_command
from django.test import override_settings

from django_tagcache.checks import check_admin_order, check_eviction_policy
from tests.servers import RedisServer


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """A Redis of our own: these tests change its configuration."""
    started = RedisServer.start(extra_args=("--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"))
    yield started
    started.stop()


@pytest.fixture
def own(settings: Any, server: RedisServer) -> RedisServer:
    settings.CACHES = {
        **settings.CACHES,
        "own": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": server.url},
    }
    settings.TAGCACHE = {"CACHE": "own"}
    return server


EVICTING = [
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
]


@pytest.mark.parametrize("policy", EVICTING)
def test_every_evicting_policy_is_a_warning(own: RedisServer, policy: str) -> None:
    # volatile-* too: tag indexes carry TTLs, and sit idle while their entries are read.
    own.client().config_set("maxmemory", "100mb")
    own.client().config_set("maxmemory-policy", policy)
    [warning] = check_eviction_policy(databases=["default"])
    assert isinstance(warning, Warning)
    assert warning.id == "django_tagcache.W002"
    assert f"maxmemory-policy {policy}" in warning.msg
    assert "evict a tag index" in warning.msg
    assert "noeviction" in str(warning.hint)


def test_noeviction_passes(own: RedisServer) -> None:
    own.client().config_set("maxmemory", "100mb")
    own.client().config_set("maxmemory-policy", "noeviction")
    assert check_eviction_policy(databases=["default"]) == []


@pytest.mark.parametrize("policy", EVICTING)
def test_any_policy_passes_without_maxmemory(own: RedisServer, policy: str) -> None:
    own.client().config_set("maxmemory", 0)  # Redis never evicts then
    own.client().config_set("maxmemory-policy", policy)
    assert check_eviction_policy(databases=["default"]) == []


def test_an_unreachable_redis_is_a_warning_not_a_crash(settings: Any) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "down": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://127.0.0.1:1"},
    }
    settings.TAGCACHE = {"CACHE": "down"}
    [warning] = check_eviction_policy(databases=["default"])
    assert warning.id == "django_tagcache.W003"
    assert "Could not check the maxmemory-policy of the Redis behind cache 'down'" in warning.msg


def test_the_policy_check_leaves_bad_settings_to_the_other_checks(settings: Any) -> None:
    settings.TAGCACHE = {"CACHE": "nope"}
    assert check_eviction_policy(databases=["default"]) == []
    settings.TAGCACHE = {"CACHE": "locmem"}
    assert check_eviction_policy(databases=["default"]) == []
    settings.TAGCACHE = {"CACHE": 3}
    assert check_eviction_policy(databases=["default"]) == []


@pytest.mark.cluster
def test_the_policy_of_every_cluster_primary_is_checked(settings: Any, redis_cluster: Any) -> None:
    settings.TAGCACHE = {"CACHE": "cluster"}
    assert (
        check_eviction_policy(databases=["default"]) == []
    )  # the test cluster runs with the default, noeviction


@pytest.mark.django_db
@pytest.mark.django_db(databases=["default", "other"])  # Django 6.1's database checks query them
def test_it_runs_with_the_database_checks_only(own: RedisServer) -> None:
    own.client().config_set("maxmemory", "100mb")
    own.client().config_set("maxmemory-policy", "allkeys-lru")
    assert "django_tagcache.W002" not in [m.id for m in run_checks()]
    assert "django_tagcache.W002" in [m.id for m in run_checks(databases=["default"])]


@pytest.mark.django_db
def test_manage_py_check_database_shows_it(own: RedisServer, capsys: pytest.CaptureFixture[str]) -> None:
    own.client().config_set("maxmemory", "100mb")
    own.client().config_set("maxmemory-policy", "allkeys-lru")
    call_command("check", "--database", "default")
    assert "(django_tagcache.W002)" in capsys.readouterr().err


def test_admin_order() -> None:
    assert check_admin_order() == []
    apps_after_us = [app for app in django_settings.INSTALLED_APPS if app != "django.contrib.admin"]
    apps_after_us.append("django.contrib.admin")
    with override_settings(INSTALLED_APPS=apps_after_us):
        [warning] = check_admin_order()
    assert warning.id == "django_tagcache.W004"
    assert "PurgeCacheMixin" in str(warning.hint)
    with override_settings(TAGCACHE={"ADMIN_ACTION": False}, INSTALLED_APPS=apps_after_us):
        assert check_admin_order() == []


@pytest.mark.parametrize("key", ["ADMIN_ACTION", "PROMETHEUS"])
def test_the_operations_switches_must_be_booleans(settings: Any, key: str) -> None:
    from django_tagcache.checks import check_settings
    from django_tagcache.conf import conf

    assert getattr(conf, key) is True
    settings.TAGCACHE = {key: False}
    assert getattr(conf, key) is False
    settings.TAGCACHE = {key: "yes"}
    [error] = check_settings()
    assert error.id == "django_tagcache.E001"
    assert f"TAGCACHE['{key}'] must be True or False, not 'yes'." in error.msg
