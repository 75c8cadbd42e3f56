"""Context for every shop template."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .models import Category

if TYPE_CHECKING:
    from django.db.models import QuerySet
    from django.http import HttpRequest


def catalogue(request: HttpRequest) -> dict[str, QuerySet[Category]]:
    """The categories of the sidebar: a lazy queryset, read only when the sidebar's fragment misses."""
    return {"categories": Category.objects.all()}
