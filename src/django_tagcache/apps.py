"""App configuration: all wiring happens here."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.signals import request_started, setting_changed
from django.db import connections
from django.db.backends.signals import connection_created


class TagCacheConfig(AppConfig):
    name = "django_tagcache"
    verbose_name = "Tag cache"
    default_auto_field = "django.db.models.BigAutoField"

    def __init__(self, app_name: str, app_module: Any) -> None:
        super().__init__(app_name, app_module)
        from .registry import enable_meta_option

        # Must run before any models module is imported; Django creates every app config first.
        enable_meta_option()

    def ready(self) -> None:
        from . import checks, orm, sqlwatch, tags

        checks.register_checks()
        tags.register_resolver(orm.resolve_model_source)
        orm.register_from_meta()
        setting_changed.connect(_settings_changed, dispatch_uid="django_tagcache.settings_changed")
        connection_created.connect(sqlwatch.install, dispatch_uid="django_tagcache.sqlwatch")
        for connection in connections.all(initialized_only=True):
            sqlwatch.install(connection)
        request_started.connect(sqlwatch.reset, dispatch_uid="django_tagcache.sqlwatch_reset")


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("CACHES", "TAGCACHE"):
        from .api import reset_stores

        reset_stores()
