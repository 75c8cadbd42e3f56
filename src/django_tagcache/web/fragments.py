"""Template fragments cached under tags: what ``{% tagcache %}`` does, in Django and Jinja2 templates."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from django.conf import settings
from django.db.models import Model
from django.utils.functional import Promise

from ..caching import bubbling, near
from ..caching.api import _ttl_ms
from ..caching.failopen import fail_open
from ..caching.recompute import jittered
from ..caching.rendering import read_entry, write_entry
from ..caching.scopes import Scope
from ..caching.singleflight import release, single_flight, wait_for
from ..caching.stores import get_store
from ..caching.tags import normalize_tags
from ..conf import conf
from ..core import metrics
from ..core.retry import RETRYABLE


def fragment_key(name: str, vary_on: list[object] | tuple[object, ...] | None = None) -> str:
    """The key ``{% tagcache ... name vary_on... %}`` caches under: ``tagcache.fragment.<name>.<hash>``.

    Unlike Django's fragment key, which joins the values with ``:`` (so that ``("a:b", "c")``
    and ``("a", "b:c")`` share an entry, as do ``None`` and ``"None"``), the hash is a SHA-256 of
    an unambiguous encoding: each value as its kind, its length and its text (see
    :func:`encode_vary_on`). ``tagcache.delete(fragment_key("sidebar", [user.pk]))`` (on the
    fragment's cache alias) forgets one fragment.
    """
    hasher = hashlib.sha256()
    for value in vary_on or ():
        hasher.update(encode_vary_on(value))
    return f"tagcache.fragment.{name}.{hasher.hexdigest()}"


def encode_vary_on(value: object) -> bytes:
    """One vary-on value as ``<kind><length>:<text>``, so that no two sequences of values meet.

    Kinds: ``n`` None, ``b`` a bool, ``i`` an int, ``f`` a float, ``s`` a string (a lazy string
    too), ``m`` a model instance (its label and the encoding of its pk), ``o`` anything else (its
    class and ``str()``). The length makes the concatenation of encodings decodable, hence
    collision-free before hashing.
    """
    kind: str
    if value is None:
        kind, text = "n", ""
    elif isinstance(value, bool):
        kind, text = "b", "1" if value else "0"
    elif isinstance(value, int):
        kind, text = "i", str(value)
    elif isinstance(value, float):
        kind, text = "f", repr(value)
    elif isinstance(value, (str, Promise)):
        kind, text = "s", str(value)
    elif isinstance(value, Model):
        kind, text = "m", value._meta.label_lower + ":" + encode_vary_on(value.pk).decode()
    else:
        kind, text = "o", f"{type(value).__module__}.{type(value).__qualname__}:{value}"
    data = text.encode("utf-8", "surrogatepass")
    return f"{kind}{len(data)}:".encode() + data


#: The alias Django's ``{% cache %}`` prefers when it has no ``using=``; so does ``{% tagcache %}``.
FRAGMENTS_ALIAS = "template_fragments"


def default_alias() -> str:
    """Where a fragment without ``using=`` is cached: ``template_fragments`` if CACHES has it, as
    Django's ``{% cache %}`` does, else ``TAGCACHE['CACHE']``."""
    return FRAGMENTS_ALIAS if FRAGMENTS_ALIAS in settings.CACHES else conf.CACHE


def fragment_tags(value: object) -> tuple[str, ...]:
    """The tags of a ``tags=`` argument: a string is split on whitespace, anything else is a tag source."""
    if isinstance(value, str):
        return normalize_tags(value.split())
    return normalize_tags(value)


def render_fragment(
    *,
    alias: str,
    key: str,
    timeout: float | None,
    tags: Callable[[], tuple[str, ...]],
    render: Callable[[], str],
    sources: Callable[[], object] | None = None,
    near: bool | None = None,
) -> str:
    """The text cached under ``key``; on a miss, ``render()`` it and cache it under its tags.

    ``timeout`` follows Django's ``{% cache %}``: seconds, None for ever, 0 or less for "render
    and do not store" (an existing entry is still served, and deleted once rendered, as
    Django's cache does). The entry's tags are ``tags()`` plus every tag used while rendering
    (nested fragments, ``get_or_set``/``@cached`` calls, ``add_tags``); a hit hands them to the
    enclosing fragment or page. The write is refused if any of them was invalidated after the
    miss, or after its read fence: the moment it started rendering, or earlier, the start of the
    request or :func:`~django_tagcache.caching.fences.fence` block, or the load time of a model instance
    among ``sources()`` (the raw ``tags=`` value). A hit is one GET; ``tags`` and ``sources``
    are only called on a miss. ``near`` overrides ``TAGCACHE['NEAR_CACHE']['DEFAULT']`` for this
    fragment, as for ``get_or_set`` (docs/near-cache.md).
    """
    entry = get_store(alias).keys.entry(key)
    try:
        hit = read_entry(alias, entry, near)
    except RETRYABLE as exc:
        fail_open("read", exc)
        bubbling.note_tags(tags())
        return render()
    if hit is not None:
        metrics.incr("hits")
        text: str = hit[0]
        return text
    metrics.incr("misses")
    own = tags()
    ttl = _ttl_ms(timeout)
    if ttl is None:
        # Not stored, but the text still ends up in any enclosing fragment or page.
        bubbling.note_tags(own)
        text = render()
        _delete(alias, entry)
        return text
    scope = Scope(alias, sources() if sources is not None else None)
    scope.begin(own)  # the tokens are read now, before any data the fragment shows
    owner = single_flight(alias, entry)
    if owner is None:  # another caller is rendering it: serve theirs if it comes in time
        served = wait_for(alias, entry)
        if served is not None:
            return str(served)
        owner = ""
    try:
        with scope.entered():
            text = render()
    except BaseException:
        release(alias, entry, owner)
        raise
    # Stored as a plain str: smaller to pickle and faster to load than Django's SafeString.
    # Shortened at random (TTL_JITTER), so that fragments rendered together expire apart.
    ttl = jittered(ttl, conf.TTL_JITTER)
    write_entry(alias, entry, "".join([text]), ttl, scope, owner)  # the write releases the lock
    return text


def _delete(alias: str, entry: str) -> None:
    store = get_store(alias)
    try:
        store.delete(entry)
    except RETRYABLE as exc:
        fail_open("delete", exc)
    finally:
        near.wrote(alias, store, entry)
