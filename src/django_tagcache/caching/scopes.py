"""Render scopes: the tag collectors of cached fragments and pages, with proof that their content is fresh.

A fragment or page that misses renders inside a :class:`Scope`. Like any collector opened by
:func:`~django_tagcache.collect_tags`, it receives every tag used inside it. It also keeps, for
each tag, the generation token that was current **before** the data under that tag was read;
the entry is then written only if none of those tokens moved (guarantee 1). The tokens come
from, in this order of preference:

1. a token already known in this render (read or vouched for by an enclosing scope);
2. a cached fragment or page served inside the scope, which carries the tokens its own write was
   checked against: while such an entry exists, it is proof that no invalidation of its tags
   happened after those tokens (and any later invalidation moves them, refusing our write);
3. otherwise one batched ``generations()`` read at the moment the tags are first noted, which
   is before the data is read: ``get_or_set``/``@cached`` note their tags before their GET, a
   fragment or page notes its own tags before rendering, and ``add_tags`` is to be called
   before the data it stands for is read.

Two different tokens for one tag mean the render mixed data from both sides of an
invalidation; the entry is then not stored. Scopes nested in one render share their tokens,
per cache alias (generations live in that alias' Redis).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from ..core.bridge import run_sync, settle
from ..core.retry import RETRYABLE
from . import bubbling, fences
from .failopen import fail_open
from .stores import get_async_store, get_store
from .tags import normalize_tags

# The get_or_set/@cached computes open in this context, innermost last: one flag each, set when
# a value was served stale inside it (a soft purge, within its budget). Such a value may be shown,
# never stored: the enclosing entry would outlive the budget (see served_stale_inside()).
_computing: ContextVar[tuple[list[bool], ...]] = ContextVar("django_tagcache_computing", default=())


def served_stale_inside() -> None:
    """A stale value was served: no get_or_set/@cached computing around it now may store its result."""
    for flag in _computing.get():
        flag[0] = True


def computing_now() -> bool:
    """Whether a get_or_set/@cached compute is open around the caller."""
    return bool(_computing.get())


@contextmanager
def computing() -> Iterator[list[bool]]:
    """Open a get_or_set/@cached compute for the block; the yielded flag turns True if a stale
    value is served inside it (see :func:`served_stale`): its result may then be shown, not stored."""
    stale = [False]
    opened = _computing.set((*_computing.get(), stale))
    try:
        yield stale
    finally:
        _computing.reset(opened)


class Tokens:
    """Generation tokens known during one render, for one cache alias (None: a tag not provably fresh)."""

    def __init__(self, alias: str) -> None:
        self.alias = alias
        # The render's read fence (see django_tagcache.caching.fences): the request's start, or earlier.
        # Without one, the tokens read as tags are noted vouch for the data read after them.
        self.fence = fences.current()
        self.known: dict[str, str | None] = {}
        self.unavailable = False  # a read failed: nothing in this render is stored
        # (entry key, tags, tokens) of every cached entry that vouched for tokens in this render.
        self.vouchers: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = []

    def read(self, tags: Iterable[str]) -> None:
        """Read the current token of each tag not known yet: one script call, or none."""
        run_sync(self._read(get_store(self.alias), tags))

    async def aread(self, tags: Iterable[str]) -> None:
        """:meth:`read` on the event loop's own connection (``redis.asyncio``)."""
        await self._read(get_async_store(self.alias), tags)

    async def _read(self, store: Any, tags: Iterable[str]) -> None:
        missing = [tag for tag in dict.fromkeys(tags) if tag not in self.known]
        if not missing:
            return
        try:
            # A tag still draining gets None: what is read under it now may be an old entry.
            tokens = await settle(store.vouching_generations(missing))
        except RETRYABLE as exc:
            fail_open("generation read", exc)
            self.unavailable = True
            tokens = [None] * len(missing)
        self.known.update(zip(missing, tokens, strict=True))

    def vouch(self, entry: str, tags: tuple[str, ...], tokens: tuple[str, ...]) -> None:
        """Take the tokens a cached entry was written with; a tag seen with another token is poisoned."""
        self.vouchers.append((entry, tags, tokens))
        for tag, token in zip(tags, tokens, strict=True):
            if self.known.setdefault(tag, token) != token:
                self.known[tag] = None

    def expected(self, tags: Iterable[str]) -> list[str] | None:
        """The token of each tag, for a checked write; None if any tag cannot be proven fresh."""
        expected = [self.known.get(tag) for tag in tags]
        if any(token is None for token in expected):
            return None
        return expected  # type: ignore[return-value]  # no None left, checked above

    def heal(self) -> None:
        """After a refused write, delete the entries that vouched with tokens that are no longer current.

        Generation tokens expire (``GENERATION_TTL``) while entries may live longer; without this,
        an outer fragment or page built on such an inner entry would be refused until the inner
        entry expired. Deleting an entry is always safe: at worst it is rendered again.
        """
        run_sync(self.heal_with(get_store(self.alias)))

    async def heal_with(self, store: Any) -> None:
        """:meth:`heal` through ``store``, blocking or asyncio (see :mod:`django_tagcache.core.bridge`)."""
        if not self.vouchers:
            return
        tags = sorted({tag for _entry, tags, _tokens in self.vouchers for tag in tags})
        try:
            current = dict(zip(tags, await settle(store.generations(tags)), strict=True))
            for entry, entry_tags, tokens in self.vouchers:
                if any(current[tag] != token for tag, token in zip(entry_tags, tokens, strict=True)):
                    await settle(store.delete(entry))
        except RETRYABLE as exc:
            fail_open("check of inner entries", exc)
        self.vouchers.clear()


class Scope(set[str]):
    """A tag collector for one cached fragment or page, backed by the render's :class:`Tokens`."""

    def __init__(self, alias: str, sources: object = None) -> None:
        super().__init__()
        self.alias = alias
        enclosing = [s for s in bubbling._stack.get() if isinstance(s, Scope) and s.alias == alias]
        self.tokens: Tokens = enclosing[-1].tokens if enclosing else Tokens(alias)
        if sources is not None:  # instances shown here may have been loaded before the render
            self.tokens.fence = fences.earliest(self.tokens.fence, fences.loaded_at(sources))

    # bubbling.note_tags() feeds every open collector through update(); this is the moment the
    # tags are first seen, before the data under them is read, so it is when tokens are read.
    def update(self, *others: Iterable[str]) -> None:
        tags = [tag for other in others for tag in other]
        super().update(tags)
        self.tokens.read(tags)

    @contextmanager
    def entered(self) -> Iterator[Scope]:
        """Make this scope an open collector for the block (it may be entered several times)."""
        # bubbling owns the stack of open collectors; a Scope is a set, so it is pushed there
        # directly (collect_tags() only makes plain sets).
        token = bubbling._stack.set((*bubbling._stack.get(), self))
        try:
            yield self
        finally:
            bubbling._stack.reset(token)

    def begin(self, own_tags: tuple[str, ...]) -> None:
        """Record the scope's own tags, reading their tokens now: call it before rendering."""
        with self.entered():
            bubbling.note_tags(own_tags)

    def expected(self) -> tuple[tuple[str, ...], list[str] | None]:
        """The scope's tags, sorted, and the tokens a write must check (None: cannot be stored)."""
        tags = tuple(sorted(self))
        return tags, self.tokens.expected(tags)


async def aadd_tags(*sources: object) -> None:
    """:func:`~django_tagcache.add_tags` for async code: the generation tokens of tags new to the
    fragments and pages rendering now are read on the event loop's own connection, rather than
    by a blocking call. Call it, too, before the data it stands for is read."""
    await anote_tags(normalize_tags(list(sources)))


async def anote_tags(tags: tuple[str, ...]) -> None:
    """:func:`~django_tagcache.caching.bubbling.note_tags` for async code: the tokens of tags new
    to the fragments and pages rendering now are awaited on the event loop's own connection, so
    that noting them makes no blocking call (``aget_or_set`` and async ``@cached`` note theirs so)."""
    seen: set[int] = set()
    for collector in bubbling._stack.get():
        if isinstance(collector, Scope) and id(collector.tokens) not in seen:
            seen.add(id(collector.tokens))
            await collector.tokens.aread(tags)
    bubbling.note_tags(tags)  # every token is known now: no I/O left


def vouch(alias: str, entry: str, tags: tuple[str, ...], tokens: tuple[str, ...]) -> None:
    """A cached fragment or page was served: hand its tags and tokens to every open collector."""
    seen: set[int] = set()
    for collector in bubbling._stack.get():
        if isinstance(collector, Scope) and collector.alias == alias and id(collector.tokens) not in seen:
            seen.add(id(collector.tokens))
            collector.tokens.vouch(entry, tags, tokens)
    bubbling.note_tags(tags)


def served_stale(tags: Iterable[str]) -> None:
    """A value was served although ``tags`` were invalidated (a soft purge, within its budget).

    The fragments and pages rendering now contain it, so none of them may be stored: their
    tokens for ``tags`` are poisoned; nor may an enclosing ``get_or_set`` or ``@cached`` store
    what it computes. To be called by whatever serves such a value.
    """
    served_stale_inside()
    tags = tuple(tags)
    for collector in bubbling._stack.get():
        if isinstance(collector, Scope):
            collector.tokens.known.update(dict.fromkeys(tags))
    bubbling.note_tags(tags)
