"""Payloads this package did not write, or cannot write: a miss, never an exception.

A deploy may leave entries of an older payload format, or pickles of a class that no longer
exists; another program may write under our keys. Each is read as a miss (and counted), and a
value that cannot be pickled is served uncached without keeping the recompute lock.
"""

from __future__ import annotations

import pickle
import sys
import threading
from typing import Any

import pytest
import redis
from django.template import Context, Template

from django_tagcache import TagCache
from django_tagcache.caching.api import get_store
from django_tagcache.core import metrics, serialization
from django_tagcache.web.fragments import fragment_key
from tests.counting import count


class _Gone:
    """Pickled, then removed from this module: what a deploy that deletes a class leaves behind."""


def _foreign_payloads() -> dict[str, bytes]:
    good = serialization.dumps({"a": 1})
    return {
        "empty": b"",
        "not a pickle": b"hello, world",
        "truncated": good[: len(good) // 2],
        "a pickle of our format without its header": pickle.dumps({"a": 1}, pickle.HIGHEST_PROTOCOL),
        "a number Redis incremented": b"42",
    }


FOREIGN = _foreign_payloads()


def _put(alias: str, key: str, raw: bytes) -> None:
    """Store ``raw`` as the payload of ``key``, as another program (or version) would."""
    store = get_store(alias)
    store.write(store.keys.entry(key), raw, 60_000, [])


@pytest.mark.parametrize("kind", list(FOREIGN))
def test_a_foreign_payload_is_a_miss_for_get_and_get_or_set(tc: TagCache, kind: str) -> None:
    _put(tc._alias or "default", "k", FOREIGN[kind])
    assert tc.get("k", "default") == "default"
    assert tc.get_or_set("k", lambda: "fresh", timeout=60, tags=["t"]) == "fresh"
    assert tc.get("k") == "fresh"
    assert metrics.snapshot()["unreadable"] >= 2


def test_a_pickle_of_a_class_removed_by_a_deploy_is_a_miss(
    tc: TagCache, alias: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = serialization.dumps(_Gone())
    monkeypatch.delattr(sys.modules[__name__], "_Gone")  # what a deploy that deletes it does
    _put(alias, "k", raw)
    assert tc.get("k", "default") == "default"
    assert tc.get_or_set("k", lambda: "fresh", timeout=60) == "fresh"


@pytest.mark.parametrize("kind", list(FOREIGN))
def test_a_foreign_payload_under_a_fragments_key_is_a_miss(alias: str, kind: str, settings: Any) -> None:
    settings.TAGCACHE = {"CACHE": alias}
    _put(alias, fragment_key("f"), FOREIGN[kind])
    template = Template('{% load tagcache %}{% tagcache 600 "f" %}{{ text }}{% endtagcache %}')
    assert template.render(Context({"text": "one"})) == "one"
    assert template.render(Context({"text": "two"})) == "one"


def test_a_payload_of_another_format_version_is_a_miss(tc: TagCache, alias: str) -> None:
    """What a deploy that changes the payload format reads: the old entries, as misses."""
    tc.set("k", "v")
    current = serialization.dumps("v")
    assert current[0] == serialization.FORMAT_VERSION
    _put(alias, "k", bytes([serialization.FORMAT_VERSION + 1]) + current[1:])
    assert tc.get("k", "default") == "default"


@pytest.mark.usefixtures("raw")  # counts Redis round trips
def test_a_hit_is_still_one_get(tc: TagCache) -> None:
    tc.set("k", "v", tags=["t"])
    with count() as tally:
        assert tc.get("k") == "v"
    assert (tally.round_trips, tally.commands) == (1, ["GET"])


def test_a_value_that_cannot_be_pickled_is_returned_and_the_lock_released(
    tc: TagCache, raw: redis.Redis
) -> None:
    lock = threading.Lock()  # cannot be pickled
    assert tc.get_or_set("k", lambda: lock, timeout=60, tags=["t"]) is lock
    assert not list(raw.scan_iter(match="*:lock", count=100))
    assert metrics.snapshot()["unpicklable"] == 1
    # The next caller computes at once instead of waiting for a lock nobody will release.
    assert tc.get_or_set("k", lambda: "v", timeout=60, tags=["t"]) == "v"
    assert metrics.snapshot()["stampede_timeouts"] == 0
