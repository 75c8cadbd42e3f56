"""System checks, ids ``django_tagcache.E0xx`` (errors) and ``W0xx`` (warnings)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import InvalidCacheBackendError, caches
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .backends import SUPPORTED, backend_kind
from .caching import reach
from .conf import DEFAULTS, conf
from .ops import deploy_checks

W001 = "django_tagcache.W001"


def register_checks() -> None:
    """Register the checks (from AppConfig.ready(), never at import)."""
    register(check_settings, Tags.caches)
    register(check_tag_templates, Tags.models)
    # Asks Redis, so it runs where database checks run: `manage.py check --database default`, migrate.
    register(check_eviction_policy, Tags.database)
    register(check_admin_order, Tags.admin)
    register(check_invalidated_aliases, Tags.caches)
    # A deployment check, as Django's own DEBUG-based ones: the test runner sets DEBUG = False
    # before it runs the checks, and tests are where the in-process store belongs.
    register(deploy_checks.check_in_process_store, Tags.caches, deploy=True)
    register(deploy_checks.check_socket_timeouts, Tags.caches)


def check_tag_templates(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E004: a tag template that cannot be rendered; E005: an unknown staleness class on a model;
    E006: a misspelt Meta option."""
    from django.apps import apps

    from .orm.registry import misspelt_options, registry

    messages: list[CheckMessage] = [
        Error(
            error,
            hint="Tag templates may use {pk} and the model's concrete field attnames.",
            id="django_tagcache.E004",
        )
        for config in registry.configs()
        for error in config.errors
    ]
    messages += [
        Error(error, hint="Rename the Meta attribute.", id="django_tagcache.E006")
        for model in apps.get_models()
        for error in misspelt_options(model)
    ]
    try:
        classes = conf.STALENESS.classes
    except ImproperlyConfigured:
        return messages  # reported by E001
    messages += [
        Error(
            f"{config.model._meta.label}: unknown staleness class {config.staleness!r}.",
            hint=f"Use one of: {', '.join(sorted(classes))}, or add it to TAGCACHE['STALENESS']['CLASSES'].",
            id="django_tagcache.E005",
        )
        for config in registry.configs()
        if config.staleness is not None and config.staleness not in classes
    ]
    return messages


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E001 bad TAGCACHE value, E002 unknown alias, E003 unsupported backend, W001 unknown key."""
    messages: list[CheckMessage] = []
    try:
        for name in DEFAULTS:
            getattr(conf, name)
        _namespace_callable()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="django_tagcache.E001")]
    messages += [
        Warning(
            f"Unknown TAGCACHE key {key!r}; it has no effect.",
            hint="Check its spelling.",
            id="django_tagcache.W001",
        )
        for key in conf.unknown_keys()
    ]
    alias = conf.CACHE
    if alias not in settings.CACHES:
        messages.append(
            Error(
                f"TAGCACHE['CACHE'] is {alias!r}, which is not an alias in CACHES.",
                hint=f"Use one of: {', '.join(sorted(settings.CACHES))}.",
                id="django_tagcache.E002",
            )
        )
        return messages
    cache = caches[alias]
    if backend_kind(cache) is None:
        messages.append(
            Error(
                f"Cache {alias!r} uses {type(cache).__module__}.{type(cache).__qualname__}, which "
                "django-tagcache does not support.",
                hint=f"Use one of: {', '.join(SUPPORTED)}.",
                id="django_tagcache.E003",
            )
        )
    return messages


def _namespace_callable() -> None:
    """Import ``NAMESPACE`` now: a path that does not import would otherwise fail every request."""
    path = conf.NAMESPACE
    if path is None:
        return
    try:
        found = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"TAGCACHE['NAMESPACE'] {path!r} cannot be imported: {exc}") from exc
    if not callable(found):
        raise ImproperlyConfigured(
            f"TAGCACHE['NAMESPACE'] {path!r} is a {type(found).__name__}, "
            "not a callable returning the namespace."
        )


def check_eviction_policy(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """W002: Redis may evict (``maxmemory`` set, a policy other than ``noeviction``); W003: unknown.

    Every evicting policy can remove a tag index while entries it lists stay: ``allkeys-*`` any
    key, and ``volatile-*`` too, because indexes carry TTLs (so that the index of a tag whose
    entries all expired goes away by itself) and sit idle while their entries are read, which
    makes them the first keys an LRU, LFU or TTL policy picks. An entry whose index is gone is
    never invalidated. Under ``noeviction`` a full Redis refuses writes instead (reads go on;
    writes fail open; invalidations reach the outbox), and nothing is lost.

    Like Django's own database checks it only runs when asked for databases (``check --database``,
    ``migrate``): it talks to a server, which a plain ``check`` or ``runserver`` should not wait on.
    """
    from redis.exceptions import RedisClusterException, RedisError

    from .backends import is_cluster, raw_client

    if databases is None:
        return []
    try:
        alias = conf.CACHE
    except ImproperlyConfigured:
        return []  # E001 says why
    if alias not in settings.CACHES or backend_kind(caches[alias]) in (None, "locmem"):
        return []  # E002 / E003, or the in-process store: no Redis to ask
    try:
        client = raw_client(alias)
        # A cluster answers per node: ask every primary, each may be configured differently.
        options = {"target_nodes": "primaries"} if is_cluster(client) else {}
        # "maxmemory*": one pattern, which Redis 6.2 needs too.
        reply: Any = client.config_get("maxmemory*", **options)
    except (RedisError, RedisClusterException, OSError) as exc:
        return [
            Warning(
                f"Could not check the maxmemory-policy of the Redis behind cache {alias!r}: {exc}",
                hint="Make sure it runs with maxmemory-policy noeviction (see django_tagcache.W002), or "
                "run the check where Redis can be reached and CONFIG GET is allowed.",
                id="django_tagcache.W003",
            )
        ]
    answers = [reply] if "maxmemory-policy" in reply else list(reply.values())
    unsafe = sorted(
        {
            str(answer.get("maxmemory-policy", ""))
            for answer in answers
            if answer.get("maxmemory-policy") != "noeviction" and int(answer.get("maxmemory") or 0) > 0
        }
    )
    if not unsafe:
        return []
    return [
        Warning(
            f"The Redis behind cache {alias!r} evicts with maxmemory-policy {', '.join(unsafe)}: under "
            "memory pressure it may evict a tag index while the entries it lists stay, and nothing "
            "would invalidate those entries any more. Tag indexes carry TTLs and sit idle while "
            "their entries are read, so volatile-* policies pick them first too.",
            hint="Use maxmemory-policy noeviction: a full Redis then refuses writes, which django-tagcache "
            "handles like an outage (reads go on, writes fail open, invalidations reach the outbox), "
            "and size maxmemory for the entries; or give the cache its own Redis without maxmemory.",
            id="django_tagcache.W002",
        )
    ]


def check_admin_order(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W004: the admin's ModelAdmins were not registered yet when the purge action was installed."""
    from django.apps import apps

    try:
        wanted = conf.ADMIN_ACTION
    except ImproperlyConfigured:
        return []  # E001 says why
    if not wanted or not apps.is_installed("django.contrib.admin"):
        return []
    names = [config.name for config in apps.get_app_configs()]
    if names.index("django.contrib.admin") < names.index("django_tagcache"):
        return []
    return [
        Warning(
            "'django_tagcache' comes before 'django.contrib.admin' in INSTALLED_APPS, so the admin had not "
            'registered its ModelAdmins when django_tagcache added the "Purge cached data" action.',
            hint="List 'django_tagcache' after 'django.contrib.admin', or mix "
            "django_tagcache.admin.PurgeCacheMixin into your ModelAdmins.",
            id="django_tagcache.W004",
        )
    ]


def check_invalidated_aliases(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E007: ``TAGCACHE['CACHES']`` names an alias that cannot be invalidated; W007: it leaves out
    an alias this package caches fragments or pages in by default, so that model writes would not
    reach them (``template_fragments``, and ``CACHE_MIDDLEWARE_ALIAS`` under the middleware)."""
    try:
        main, listed = conf.CACHE, conf.CACHES
    except ImproperlyConfigured:
        return []  # E001 says why
    if listed is None:
        return []  # the default list holds them: see reach.defaults()
    wrong = [alias for alias in listed if alias not in settings.CACHES or not _supported(alias)]
    if wrong:
        return [
            Error(
                f"TAGCACHE['CACHES'] names {alias!r}, which is not an alias in CACHES with a backend "
                "django-tagcache supports: model writes could not invalidate it.",
                hint="List only aliases of CACHES that hold tagged entries (Redis or LocMemCache).",
                id="django_tagcache.E007",
            )
            for alias in wrong
        ]
    why = {reach.FRAGMENTS_ALIAS: "{% tagcache %} without using= caches fragments in it"}
    return [
        Warning(
            f"TAGCACHE['CACHES'] leaves out {alias!r}, and "
            f"{why.get(alias, 'TagCacheMiddleware caches pages in it (CACHE_MIDDLEWARE_ALIAS)')}: "
            "model writes do not invalidate it, so those entries are not removed when the rows they "
            "show change.",
            hint=f"Add {alias!r} to TAGCACHE['CACHES'], or leave TAGCACHE['CACHES'] out: it is reached by "
            "default.",
            id="django_tagcache.W007",
        )
        for alias in reach.defaults()
        if alias != main and alias not in listed
    ]


def _supported(alias: str) -> bool:
    try:
        return backend_kind(caches[alias]) is not None
    except (InvalidCacheBackendError, ImproperlyConfigured, ImportError):  # the fragment tag names it
        return False
