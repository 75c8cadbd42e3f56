"""Settings for mypy's Django plugin only: the test suite's, plus the example shop.

django-stubs reads one settings module for a whole mypy run and knows the models of its
INSTALLED_APPS only, so the tests and the example are typed together through this one. Nothing
runs with these settings.
"""

from __future__ import annotations

from example_project import settings as _example

# The one star import of the project: Django's usual way of layering settings, and the plugin
# types `settings.X` from what this module defines, so it must be all of the test settings.
from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS as _TEST_APPS

INSTALLED_APPS = [*_TEST_APPS, "example_project.store"]
CACHED_SECTIONS = _example.CACHED_SECTIONS
