"""Tags bubbling up: what a cached page or fragment depends on, collected while it renders.

A cached page (or an outer ``{% tagcache %}`` fragment) opens a collector; every fragment,
``get_or_set``/``@cached`` call and explicit :func:`add_tags` inside it adds its tags to every
open collector, so the page is stored under the tags of everything it contains. Collectors live
in a context variable: each request, thread and asyncio task has its own stack.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from .tags import normalize_tags

_stack: ContextVar[tuple[set[str], ...]] = ContextVar("django_tagcache_collectors", default=())


@contextmanager
def collect_tags() -> Iterator[set[str]]:
    """Open a collector: the yielded set receives every tag used inside the block (nested ones too)."""
    collected: set[str] = set()
    token = _stack.set((*_stack.get(), collected))
    try:
        yield collected
    finally:
        _stack.reset(token)


def collecting() -> bool:
    """Whether any collector is open in this context."""
    return bool(_stack.get())


def note_tags(tags: Iterable[str]) -> None:
    """Record already-normalized tags in every open collector (a no-op when none is open)."""
    stack = _stack.get()
    if stack:
        for collected in stack:
            collected.update(tags)


def add_tags(*sources: object) -> None:
    """Tag the page or fragment being cached with ``sources``, as if it had used data under them.

    Use it in a view or template helper whose output depends on data read without the tag
    cache. Outside a cached page or fragment it only validates its arguments.
    """
    note_tags(normalize_tags(list(sources)))
