"""What the package says in its logs reads as sentences: no doubled full stops from nested errors."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from django.core.management import call_command

from django_tagcache import TagCache
from django_tagcache.core import metrics
from tests.testapp.models import Category

DOUBLED = re.compile(r"(?<!\.)\.\.(?!\.)")  # ".." but not an ellipsis

DOWN = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}}


@pytest.mark.django_db
def test_log_lines_about_an_unreachable_redis_end_once(
    settings: Any, caplog: pytest.LogCaptureFixture, django_capture_on_commit_callbacks: Any
) -> None:
    settings.CACHES = DOWN
    settings.TAGCACHE = {"RETRY": {"ATTEMPTS": 1}, "CIRCUIT_BREAKER": {"FAILURES": 0}}
    with django_capture_on_commit_callbacks(execute=True):
        Category.objects.create(name="c")  # the invalidation after the write fails: logged
    TagCache().get_or_set("k", 1, tags=["t"])  # the read fails open: logged
    messages = [record.getMessage() for record in caplog.records if record.name == "django_tagcache"]
    assert len(messages) >= 2
    assert [m for m in messages if DOUBLED.search(m)] == []


@pytest.mark.django_db
@pytest.mark.parametrize("dry_run", [False, True])
def test_prune_columns_line_up(dry_run: bool) -> None:
    TagCache().set("k", 1, tags=["t"])
    args = ["tagcache_prune", "--no-progress"] + (["--dry-run"] if dry_run else [])
    out = io.StringIO()
    call_command(*args, stdout=out)
    rows = [
        line for line in out.getvalue().splitlines() if line.startswith("  ") and line.rstrip()[-1].isdigit()
    ]
    assert len(rows) == 2
    assert len({row.rindex(" ") for row in rows}) == 1, rows  # the counts start in one column


@pytest.mark.django_db
def test_stats_in_a_fresh_process_prints_no_wall_of_zero_counters() -> None:
    out = io.StringIO()
    call_command("tagcache_stats", stdout=out)
    text = out.getvalue()
    assert not re.search(r"^ +hits +0$", text, re.MULTILINE)
    assert "no cache calls yet" in text
    assert "Prometheus" in text
    metrics.incr("hits", 3)
    out = io.StringIO()
    call_command("tagcache_stats", stdout=out)
    assert re.search(r"^ +hits +3$", out.getvalue(), re.MULTILINE)
    assert not re.search(r"^ +misses +0$", out.getvalue(), re.MULTILINE)  # only what happened
