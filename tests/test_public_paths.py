"""The documented import paths keep working, wherever the code behind them lives (docs/architecture.md)."""

from __future__ import annotations

import importlib

import pytest
from django.template import engines
from django.utils.module_loading import import_string

# Every path the docs tell a project to type, with the names it must offer.
DOCUMENTED = {
    "django_tagcache": [
        "DEFAULT_TIMEOUT",
        "TagCache",
        "TagCacheError",
        "TagCacheUnavailable",
        "add_tags",
        "cached",
        "collect_tags",
        "fence",
        "invalidate_model",
        "invalidate_objects",
        "invalidate_tags",
        "normalize_tags",
        "redis_budget",
        "register",
        "register_resolver",
        "tagcache",
        "tags_for",
    ],
    "django_tagcache.views": ["cache_page_tagged"],
    "django_tagcache.middleware": [
        "FetchFromTagCacheMiddleware",
        "ReadFenceMiddleware",
        "RedisBudgetMiddleware",
        "TagCacheMiddleware",
        "UpdateTagCacheMiddleware",
    ],
    "django_tagcache.cluster": ["ClusterUnreachable", "GuardedCluster", "RedisClusterClient"],
    "django_tagcache.jinja2": ["TagCacheExtension"],
    "django_tagcache.signals": ["tags_invalidated"],
    "django_tagcache.testing": ["assert_tags_invalidated", "capture_invalidations", "reset_tagcache"],
    "django_tagcache.models": ["PendingInvalidation", "PurgeRecord"],
    "django_tagcache.admin": ["PurgeCacheMixin", "install_purge_action", "purge_cached_data"],
}


@pytest.mark.parametrize(("module", "names"), sorted(DOCUMENTED.items()))
def test_documented_path(module: str, names: list[str]) -> None:
    imported = importlib.import_module(module)
    missing = [name for name in names if not hasattr(imported, name)]
    assert not missing, f"{module} no longer offers {missing}"


def test_dotted_paths_of_settings() -> None:
    """Settings name classes by dotted path: CACHES' CLIENT_CLASS and MIDDLEWARE."""
    assert import_string("django_tagcache.cluster.RedisClusterClient").__name__ == "RedisClusterClient"
    for name in ("TagCacheMiddleware", "RedisBudgetMiddleware", "ReadFenceMiddleware"):
        assert import_string(f"django_tagcache.middleware.{name}").__name__ == name


def test_template_library() -> None:
    """``{% load tagcache %}`` finds the tag library."""
    template = engines["django"].from_string("{% load tagcache %}ok")
    assert template.render({}) == "ok"
