"""Settings of the test suite.

Redis: REDIS_URL if set (the tests flush that database), else a redis-server started for the run.
Database: DATABASE_URL if set (PostgreSQL in CI), else SQLite.
"""

from __future__ import annotations

import os
import sys

import dj_database_url

from tests.counting import CountingConnection
from tests.servers import test_redis_url

# Only a test run starts a server; type checking and the docs build import these settings too.
REDIS_URL = (
    test_redis_url() if "pytest" in sys.modules else os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
)

SECRET_KEY = "django-tagcache-tests"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django_tagcache",
    "tests.testapp",
]
DATABASES = {
    "default": (
        dj_database_url.parse(os.environ["DATABASE_URL"])
        if os.environ.get("DATABASE_URL")
        else {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    ),
    # A second database, for tests of per-alias batching.
    "other": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
}
_COUNTING = CountingConnection
CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "t1",
        "OPTIONS": {"CONNECTION_POOL_KWARGS": {"connection_class": _COUNTING}},
    },
    "builtin": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "t2",
        "OPTIONS": {"connection_class": _COUNTING},
    },
    "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
}
TAGCACHE = {"CACHE": "default"}
