"""The plain redis-py example of docs/events.md runs, and speaks the same format as django-tagcache."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import redis
from django.conf import settings
from django.test import override_settings

from django_tagcache import invalidate_tags, tagcache
from django_tagcache.core.events import decode
from django_tagcache.events.consumer import Consumer

EXAMPLE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "events_without_django.py"


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("events_without_django", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_example_runs_as_documented() -> None:
    run = subprocess.run(
        [sys.executable, str(EXAMPLE), settings.REDIS_URL], capture_output=True, text=True, check=True
    )
    assert run.stdout.strip() == "applied 2 event(s): [['invoice:7', 'customer:3'], ['invoice:7']]"


def test_an_event_of_the_example_is_applied_by_django_tagcache() -> None:
    client: Any = redis.Redis.from_url(settings.REDIS_URL)
    example().publish(client, "billing:events", "billing", "eu-1", ["invoice:7"])
    ((_id, fields),) = client.xrange("billing:events")
    assert decode(fields).producer.startswith("billing@eu-1#")
    source = {"URL": settings.REDIS_URL, "STREAM": "billing:events"}
    events = {"SERVICE": "reports", "PUBLISH": False, "SOURCES": {"billing": source}, "BLOCK": 0.05}
    with override_settings(TAGCACHE={**settings.TAGCACHE, "EVENTS": events}):
        tagcache.set("invoice", 1, tags=["invoice:7"])
        Consumer(name="c").run(until_idle=True)
        assert tagcache.get("invoice") is None


def test_the_example_consumes_what_django_tagcache_publishes() -> None:
    client: Any = redis.Redis.from_url(settings.REDIS_URL)
    events = {"SERVICE": "shop", "STREAM": "shop:events"}
    with override_settings(TAGCACHE={**settings.TAGCACHE, "EVENTS": events}):
        invalidate_tags("product:1", "product:2")
        invalidate_tags("product:1")
    seen: list[list[str]] = []
    marks: dict[tuple[str, str], int] = {}
    assert example().consume(client, "shop:events", "reports", "w", seen.append, marks) == 2
    assert seen == [["product:1", "product:2"], ["product:1"]]
    assert json.loads(client.xrange("shop:events")[0][1][b"tags"]) == ["product:1", "product:2"]
