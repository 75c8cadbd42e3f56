"""Deployment checks: W005 (the in-process store serving with DEBUG off) and W006 (no socket timeout)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks
from django.test import override_settings

from django_tagcache.ops.deploy_checks import check_in_process_store, check_socket_timeouts


def test_a_warning_when_the_in_process_store_serves_with_debug_off(settings: Any) -> None:
    settings.TAGCACHE = {"CACHE": "locmem"}
    settings.DEBUG = False
    assert [m.id for m in check_in_process_store()] == ["django_tagcache.W005"]
    assert "django_tagcache.W005" in [m.id for m in run_checks(include_deployment_checks=True)]
    # Not in a plain check: Django's test runner sets DEBUG = False before it runs them.
    assert "django_tagcache.W005" not in [m.id for m in run_checks()]
    settings.DEBUG = True
    assert check_in_process_store() == []
    settings.TAGCACHE = {"CACHE": "default"}
    settings.DEBUG = False
    assert check_in_process_store() == []


@pytest.mark.parametrize(
    ("options", "location", "warned"),
    [
        ({}, "redis://127.0.0.1:6379/0", True),
        ({"SOCKET_TIMEOUT": 0.25}, "redis://127.0.0.1:6379/0", False),
        ({"CONNECTION_POOL_KWARGS": {"socket_timeout": 1}}, "redis://127.0.0.1:6379/0", False),
        ({}, "redis://127.0.0.1:6379/0?socket_timeout=0.5", False),
        ({}, "redis://a:6379/0?socket_timeout=0.5,redis://b:6379/0", True),
    ],
)
def test_a_warning_when_redis_has_no_socket_timeout(options: Any, location: str, warned: bool) -> None:
    cache = {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": location, "OPTIONS": options}
    with override_settings(CACHES={"default": cache}, TAGCACHE={"CACHE": "default"}):
        ids = [m.id for m in check_socket_timeouts()]
    assert ids == (["django_tagcache.W006"] if warned else [])


def test_the_builtin_backends_spelling_of_the_timeout() -> None:
    cache: dict[str, Any] = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://h:6379",
    }
    with override_settings(CACHES={"default": cache}, TAGCACHE={"CACHE": "default"}):
        (warning,) = check_socket_timeouts()
        assert '"socket_timeout": 0.25' in str(warning.hint)
        cache["OPTIONS"] = {"socket_timeout": 0.25}
    with override_settings(CACHES={"default": cache}, TAGCACHE={"CACHE": "default"}):
        assert check_socket_timeouts() == []
