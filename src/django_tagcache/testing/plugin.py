"""pytest fixtures of django-tagcache, registered through the ``pytest11`` entry point.

Nothing here runs unless a test asks for a fixture, so installing the package changes no other
project's test run. To start every test clean, add to your ``conftest.py``::

    @pytest.fixture(autouse=True)
    def _clean_cache(tagcache_reset): ...
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the plugin loads in every pytest run: import Django-side code only when used
    from . import Invalidations


@pytest.fixture
def tagcache_reset() -> Iterator[None]:
    """Empty the in-process store and zero the counters before and after the test."""
    from . import reset_tagcache

    reset_tagcache()
    yield
    reset_tagcache()


@pytest.fixture
def tagcache_invalidations() -> Iterator[Invalidations]:
    """Every invalidation made during the test (see :func:`django_tagcache.testing.capture_invalidations`)."""
    from . import capture_invalidations

    with capture_invalidations() as captured:
        yield captured
