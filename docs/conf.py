"""Sphinx configuration: Markdown pages (MyST) with the furo theme, autodoc for the API page."""

from __future__ import annotations

import html
import os
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from sphinx.util import logging

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
# The sentinels and typing-only names of the API, as a reader knows them: the default each stands
# for, and the class a ModelAdmin really is (see _public_names below).
PUBLIC_NAMES = {"_Default": "DEFAULT_TIMEOUT", "_Current": "CURRENT", "_ModelAdmin": "ModelAdmin"}

html_theme = "furo"
html_title = f"django-tagcache {release}"


# --- The API reference names public things only -------------------------------------------------
# A private name (``_Default``, ``module._Thing``) in a rendered signature or type is a warning,
# and so, built with -W, an error: users cannot import or look up what the reference shows them.
_PRIVATE = re.compile(r"(?<![\w.])_[A-Z]\w*|\b\w+\._[A-Z]\w*")


def _no_private_names(app: Any, exception: BaseException | None) -> None:
    if exception is not None or app.builder.name != "html":
        return
    page = Path(app.outdir) / "api.html"
    if not page.exists():
        return
    text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))
    found = sorted(set(_PRIVATE.findall(text)))
    if found:
        logging.getLogger(__name__).warning(
            "the API reference shows private names: %s", ", ".join(found), type="tagcache", subtype="private"
        )


def _public_names(app: Any, doctree: Any, docname: str) -> None:
    """Show the public spelling of private type names in the rendered parameter types."""
    from docutils import nodes

    for node in list(doctree.findall(nodes.Text)):
        text = str(node)
        for private, public in PUBLIC_NAMES.items():
            text = re.sub(rf"\b{private}\b", public, text)
        if text != str(node):
            node.parent.replace(node, nodes.Text(text))


def setup(app: Any) -> None:
    app.connect("doctree-resolved", _public_names)
    app.connect("build-finished", _no_private_names)
