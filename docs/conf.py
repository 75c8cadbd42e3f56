"""Sphinx configuration: Markdown pages (MyST) with the furo theme, autodoc for the API page."""

from __future__ import annotations

import os
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The repository root for tests.settings, src/ for the package when it is not installed.
sys.path[:0] = [str(ROOT), str(ROOT / "src")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

try:
    import django

    django.setup()
except Exception as exc:
    # Any failure here (no tests.settings yet, a broken import) must not stop pages that need no Django.
    # Not a Sphinx warning (the build runs with -W): pages without autodoc still build, and an autodoc
    # directive that needs Django fails loudly on its own.
    print(f"docs/conf.py: django.setup() failed, autodoc of Django code may fail: {exc!r}", file=sys.stderr)

project = "django-tagcache"
author = "django-tagcache developers"
copyright = "2026, django-tagcache developers"
try:
    release = metadata.version("django-tagcache")
except metadata.PackageNotFoundError:
    release = "unreleased"
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"

html_theme = "furo"
html_title = f"django-tagcache {release}"
