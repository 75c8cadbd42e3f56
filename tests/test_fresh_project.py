"""A new project that uses the package, tested the way docs/testing.md says: LocMemCache, no Redis.

The project is written into a temporary directory and its commands and its own pytest run in
subprocesses (this process is configured with the suite's settings), with no REDIS_URL and the
package's pytest plugin found through its entry point.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SETTINGS = """
SECRET_KEY = "fresh"
DEBUG = True
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_tagcache", "shop"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
TAGCACHE = {"CACHE": "default"}
"""

MODELS = """
from django.db import models


class Category(models.Model):
    name = models.CharField(max_length=50)


class Product(models.Model):
    name = models.CharField(max_length=50)
    category = models.ForeignKey(Category, on_delete=models.CASCADE)

    class Meta:
        cache_tags = ["category:{category_id}"]
"""

SHOP_CODE = """
from django_tagcache import cached

from .models import Product


@cached(timeout=600, tags=lambda category_id: [f"category:{category_id}"])
def names_in(category_id):
    return sorted(p.name for p in Product.objects.filter(category_id=category_id))
"""

TESTS = """
import pytest
from django.test import TestCase

from django_tagcache.testing import assert_no_invalidations, assert_tags_invalidated, reset_tagcache
from shop.models import Category, Product
from shop.queries import names_in


@pytest.fixture(autouse=True)
def _clean(tagcache_reset):
    pass


class ShopTests(TestCase):
    def setUp(self):
        reset_tagcache()

    def test_a_new_product_invalidates_its_category(self):
        category = Category.objects.create(name="c")
        assert names_in(category.pk) == []
        with assert_tags_invalidated(f"category:{category.pk}", Product):
            with self.captureOnCommitCallbacks(execute=True):
                Product.objects.create(name="p", category=category)
        assert names_in(category.pk) == ["p"]

    def test_a_read_invalidates_nothing(self):
        with assert_no_invalidations():
            names_in(1)


@pytest.mark.django_db
def test_with_pytest_django(django_capture_on_commit_callbacks, tagcache_invalidations):
    category = Category.objects.create(name="c")
    assert names_in(category.pk) == []
    with django_capture_on_commit_callbacks(execute=True):
        Product.objects.create(name="q", category=category)
    assert f"category:{category.pk}" in tagcache_invalidations.tags
    assert names_in(category.pk) == ["q"]
"""


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    _write(
        tmp_path,
        {
            "mysite/__init__.py": "",
            "mysite/settings.py": SETTINGS,
            "shop/__init__.py": "",
            "shop/models.py": MODELS,
            "shop/queries.py": SHOP_CODE,
            "tests/__init__.py": "",
            "tests/test_shop.py": TESTS,
            "pytest.ini": "[pytest]\nDJANGO_SETTINGS_MODULE = mysite.settings\n",
        },
    )
    return tmp_path


def _run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("REDIS", "DJANGO", "PYTEST"))
    }
    env.update(PYTHONPATH=str(project), DJANGO_SETTINGS_MODULE="mysite.settings")
    return subprocess.run(
        [sys.executable, *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_fresh_project_runs_its_commands_and_tests_without_redis(project: Path) -> None:
    for command in (
        ["check"],
        ["makemigrations", "shop"],
        ["migrate"],
        ["tagcache_invalidate", "category:1"],
    ):
        done = _run(project, "-m", "django", *command)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert "System check identified no issues" in _run(project, "-m", "django", "check").stdout
    done = _run(project, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout
