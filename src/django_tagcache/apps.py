"""App configuration: all wiring happens here."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.core.signals import request_finished, request_started, setting_changed
from django.db import connections
from django.db.backends.signals import connection_created


class TagCacheConfig(AppConfig):
    name = "django_tagcache"
    verbose_name = "Tag cache"
    default_auto_field = "django.db.models.BigAutoField"

    def __init__(self, app_name: str, app_module: Any) -> None:
        super().__init__(app_name, app_module)
        from .orm.registry import enable_meta_option

        # Must run before any models module is imported; Django creates every app config first.
        enable_meta_option()

    def ready(self) -> None:
        from . import checks
        from .caching import budget, fences, loadtimes, requestcache, staleness, tags
        from .orm import api as orm
        from .orm import manual, sqlwatch
        from .web import cdn

        checks.register_checks()
        tags.register_resolver(orm.resolve_model_source)
        staleness.use_model_rules(orm.staleness_rules)
        orm.register_from_meta()
        setting_changed.connect(_settings_changed, dispatch_uid="django_tagcache.settings_changed")
        cdn.install()  # connects the CDN_PURGE hook, if set
        connection_created.connect(sqlwatch.install, dispatch_uid="django_tagcache.sqlwatch")
        # When each query starts: the moment the instances built from its rows date from.
        connection_created.connect(loadtimes.install, dispatch_uid="django_tagcache.loadtimes")
        for connection in connections.all(initialized_only=True):
            sqlwatch.install(connection)
            loadtimes.install(connection)
        request_started.connect(sqlwatch.reset, dispatch_uid="django_tagcache.sqlwatch_reset")
        request_finished.connect(sqlwatch.reset, dispatch_uid="django_tagcache.sqlwatch_reset_end")
        request_finished.connect(manual.check_all, dispatch_uid="django_tagcache.manual_commits")
        # One Redis time budget per request, shared by every call the request makes.
        request_started.connect(budget.on_request_started, dispatch_uid="django_tagcache.budget")
        request_finished.connect(budget.on_request_finished, dispatch_uid="django_tagcache.budget")
        # A request's data is read after it starts: the read fence of what it caches.
        request_started.connect(fences.request_started, dispatch_uid="django_tagcache.fence_start")
        request_finished.connect(fences.request_finished, dispatch_uid="django_tagcache.fence_end")
        # The request cache (L0, REQUEST_CACHE): one map of entries per request.
        request_started.connect(requestcache.request_started, dispatch_uid="django_tagcache.l0_start")
        request_finished.connect(requestcache.request_finished, dispatch_uid="django_tagcache.l0_end")
        self._ready_operations()

    def _ready_operations(self) -> None:
        """Audit receiver, Prometheus collector and the admin's purge action."""
        from django.apps import apps

        from .conf import conf
        from .ops import audit, prometheus
        from .signals import invalidation_failed, tags_invalidated

        tags_invalidated.connect(audit.on_tags_invalidated, dispatch_uid="django_tagcache.audit")
        invalidation_failed.connect(audit.on_invalidation_failed, dispatch_uid="django_tagcache.audit")
        if conf.PROMETHEUS:
            prometheus.install()  # a no-op without prometheus-client
            _install_event_lag(conf)
        if conf.ADMIN_ACTION and apps.is_installed("django.contrib.admin"):
            from .admin import install_purge_action

            install_purge_action()


def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in ("CACHES", "TAGCACHE", "MIDDLEWARE", "CACHE_MIDDLEWARE_ALIAS"):
        from .caching import reach

        reach.forget()
    if setting in ("CACHES", "TAGCACHE"):
        from .caching import namespaces, shadow, staleness
        from .caching.api import reset_stores

        namespaces.reset()
        reset_stores()
        staleness.reset()
        shadow.reset_rate()


def _install_event_lag(conf: Any) -> None:
    """The consumer groups' lag, for Prometheus, when this service consumes other services' events."""
    from django.core.exceptions import ImproperlyConfigured

    try:
        events = conf.EVENTS
    except ImproperlyConfigured:
        return  # django_tagcache.E001 says why
    if events is not None and events.sources:
        from .events import prometheus as event_prometheus

        event_prometheus.install()
