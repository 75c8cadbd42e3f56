"""Settings of the example shop. For development only: DEBUG is on and the secret key is public.

Redis comes from ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``; ``./scripts/demo`` starts a
private server and sets it). The database is SQLite, ``example_project/var/db.sqlite3`` unless
``EXAMPLE_SQLITE`` names another file (the test suite uses a temporary one).
"""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = "django-tagcache-example-not-a-secret"
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    # The admin before django_tagcache: its ready() adds "Purge cached data" to the ModelAdmins
    # the admin has registered by then (check django_tagcache.W004).
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "example_project.store",
    "django_tagcache",
]

MIDDLEWARE = [
    # Outermost, so that it sees pages served from the cache too, and so that the panel it adds
    # to each response is never part of what the cache stores.
    "example_project.store.panel.PanelMiddleware",
    # Site-wide page caching (django_tagcache.middleware.TagCacheMiddleware) for CACHED_SECTIONS
    # only. First after the panel, like Django's CacheMiddleware, so a stored page carries the
    # headers (Vary included) that everything below adds.
    "example_project.store.sections.SectionCacheMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "example_project.store.context_processors.catalogue",
                "example_project.store.panel.panel_placeholder",
            ],
        },
    },
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_SQLITE") or BASE_DIR / "var" / "db.sqlite3",
    },
}

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        # Keeps the example's keys apart from anything else on a shared server.
        "KEY_PREFIX": "example",
        # Without socket timeouts a dead Redis could hold a request for ever (docs/resilience.md).
        "OPTIONS": {"SOCKET_TIMEOUT": 0.5, "SOCKET_CONNECT_TIMEOUT": 0.5},
    },
}
TAGCACHE = {
    "CACHE": "default",
    "DEFAULT_TIMEOUT": 600,
    # Stored pages carry their tags, as a CDN would want them: `curl -sI` shows what a page holds.
    "CDN_HEADER": "Surrogate-Key",
    # Redis runs on this machine, so the app and Redis read one clock: no skew to allow for. With
    # Redis on other hosts keep the default (0.1 s), or your clocks' worst skew (docs/concepts.md).
    "CLOCK_SKEW_MARGIN": 0,
    # The stale-read auditor (docs/observability.md): off unless EXAMPLE_AUDIT_RATE gives the share
    # of hits to recompute and compare, e.g. EXAMPLE_AUDIT_RATE=1 ./scripts/demo.
    "AUDIT": (
        {"SAMPLE_RATE": float(os.environ["EXAMPLE_AUDIT_RATE"]), "VERIFY_SAMPLES": 32}
        if os.environ.get("EXAMPLE_AUDIT_RATE")
        else {}
    ),
}

# The pages of the site-wide middleware (the /catalog/ section).
CACHED_SECTIONS = ["/catalog/"]
CACHE_MIDDLEWARE_SECONDS = 600
CACHE_MIDDLEWARE_KEY_PREFIX = "catalog"

STATIC_URL = "static/"
LOGIN_URL = "admin:login"
