"""The tagcache_* management commands against real Redis servers (one run per backend)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.management import call_command
from django.core.management.base import CommandError

from django_tagcache import TagCache
from django_tagcache.caching.api import get_store
from django_tagcache.core import metrics
from django_tagcache.core.scripts import SCRIPT_NAMES, source
from django_tagcache.models import PurgeRecord
from django_tagcache.ops import pruning
from tests import keyspace
from tests.testapp.models import Category, Product, Restaurant, Untagged

pytestmark = pytest.mark.django_db

COMMANDS = ["tagcache_invalidate", "tagcache_inspect", "tagcache_stats", "tagcache_prune", "tagcache_scripts"]
ROOT = Path(__file__).resolve().parent.parent


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as stderr is when a person runs the command."""

    def isatty(self) -> bool:
        return True


def run(*args: str, stderr: io.StringIO | None = None) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=stderr or io.StringIO())
    return out.getvalue()


def run_json(*args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(run(*args, "--json"))
    return data


def fails(*args: str, match: str, code: int = 1) -> None:
    with pytest.raises(CommandError, match=match) as info:
        run(*args)
    assert info.value.returncode == code


@pytest.fixture
def down(settings: Any) -> str:
    """A cache alias whose Redis is a closed port."""
    settings.CACHES = {
        **settings.CACHES,
        "down": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "redis://127.0.0.1:1"},
    }
    return "down"


def entry_exists(alias: str, key: str) -> bool:
    store = get_store(alias)
    return bool(store.client.exists(store.keys.entry(key)))


# --- tagcache_invalidate -----------------------------------------------------------------------------------


def test_invalidate_tags_prints_entries_removed_and_is_audited(tc: TagCache, alias: str) -> None:
    tc.set("a", 1, tags=["red"])
    tc.set("b", 2, tags=["red", "blue"])
    tc.set("c", 3, tags=["green"])
    data = run_json("tagcache_invalidate", "red", "blue", "--cache", alias)
    assert data == {"cache": alias, "tags": ["blue", "red"], "removed": 2, "dry_run": False}
    assert tc.get("a") is None
    assert tc.get("b") is None
    assert tc.get("c") == 3
    record = PurgeRecord.objects.get()
    assert record.source == "command:tagcache_invalidate"
    assert record.username.startswith("os:")
    assert record.user is None
    assert (record.tags, record.tag_count, record.removed, record.cache) == (["blue", "red"], 2, 2, alias)
    assert run("tagcache_invalidate", "green", "--cache", alias).splitlines() == [
        f"Invalidated 1 tag(s) on cache {alias!r}:",
        "1 cache entry removed.",
    ]


def test_invalidate_a_model_its_rows_or_all_their_tags(tc: TagCache, alias: str) -> None:
    cat = Category.objects.create(name="c")
    p1, p2 = (Product.objects.create(name=n, category=cat) for n in ("p1", "p2"))
    tc.set("list", 1, tags=[Product])
    tc.set("one", 1, tags=[p1])
    tc.set("cat", 1, tags=[f"category:{cat.pk}"])
    assert run_json("tagcache_invalidate", "--model", "shop.Product", "--cache", alias)["tags"] == [
        "shop.product"
    ]
    assert tc.get("list") is None
    assert tc.get("one") == 1
    data = run_json(
        "tagcache_invalidate",
        "--model",
        "shop.product",
        "--pk",
        str(p1.pk),
        "--pk",
        str(p2.pk),
        "--cache",
        alias,
    )
    assert data["tags"] == sorted([f"shop.product:{p1.pk}", f"shop.product:{p2.pk}"])  # sorted as text
    assert data["removed"] == 1
    assert tc.get("cat") == 1  # instance tags only...
    data = run_json(
        "tagcache_invalidate", "--model", "shop.product", "--pk", str(p1.pk), "--all-tags", "--cache", alias
    )
    assert f"category:{cat.pk}" in data["tags"]
    assert tc.get("cat") is None
    # A multi-table child: its rows are rows of the parent too.
    place = Restaurant.objects.create(name="r", city="x", cuisine="y")
    data = run_json("tagcache_invalidate", "--model", "shop.restaurant", "--pk", str(place.pk), "--dry-run")
    assert data["tags"] == [f"shop.place:{place.pk}", f"shop.restaurant:{place.pk}"]


def test_invalidate_the_rows_of_a_parent_reaches_its_childrens_entries(tc: TagCache, alias: str) -> None:
    """A parent's row is its child's row too (same primary key): saving it invalidates the child's
    instance tag, and so must purging the instance tags of that row."""
    restaurant = Restaurant.objects.create(name="r", city="x", cuisine="y")
    tc.set("restaurant card", "r in x", tags=[restaurant])  # its instance tag: shop.restaurant:<pk>
    data = run_json(
        "tagcache_invalidate", "--model", "shop.Place", "--pk", str(restaurant.pk), "--cache", alias
    )
    assert data["tags"] == [f"shop.place:{restaurant.pk}", f"shop.restaurant:{restaurant.pk}"]
    assert tc.get("restaurant card") is None


def test_invalidate_dry_run_changes_nothing(tc: TagCache, alias: str) -> None:
    tc.set("a", 1, tags=["red"])
    out = run("tagcache_invalidate", "red", "--dry-run", "--cache", alias)
    assert "Would invalidate 1 tag(s)" in out
    assert "  red" in out
    assert tc.get("a") == 1
    assert not PurgeRecord.objects.exists()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((), "Give at least one TAG"),
        (("red", "--model", "shop.product"), "not both"),
        (("--pk", "1"), "need --model"),
        (("--model", "shop.product", "--all-tags"), "needs at least one --pk"),
        (("--model", "shop.nope"), "Unknown model 'shop.nope'"),
        (("--model", "product"), "Unknown model 'product'"),
        (("--model", "shop.untagged"), "shop.Untagged has no cache tags"),
        (("--model", "shop.product", "--pk", "abc"), "Bad --pk for shop.Product"),
        (("--model", "shop.product", "--pk", "999", "--all-tags"), "No shop.Product row with pk 999"),
        (("bad tag",), "cannot hold whitespace"),
        (("x" * 300,), "the limit is 256"),
        (("red", "--cache", "nope"), "Unknown cache alias 'nope'"),
        (("red", "--cache", "dummy"), "does not support"),
    ],
)
def test_invalidate_rejects_bad_input(args: tuple[str, ...], match: str) -> None:
    Untagged.objects.create(name="u")
    fails("tagcache_invalidate", *args, match=match)
    assert not PurgeRecord.objects.exists()


@pytest.mark.parametrize(
    "args",
    [
        ("tagcache_invalidate", "red"),
        ("tagcache_inspect", "red"),
        ("tagcache_stats",),
        ("tagcache_prune",),
        ("tagcache_scripts",),
        ("tagcache_scripts", "--check"),
    ],
)
def test_unreachable_redis_is_a_clear_error(down: str, args: tuple[str, ...]) -> None:
    fails(*args, "--cache", down, match="Redis behind cache 'down' is unreachable", code=3)
    # A purge that failed is recorded as failed (it cannot tell whether it reached Redis).
    assert all(record.error for record in PurgeRecord.objects.all())


def test_exit_codes_on_the_command_line() -> None:
    """A real manage.py process: usage errors exit 2, an unreachable Redis 3."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "REDIS_URL": "redis://127.0.0.1:1"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "django", *args]
        return subprocess.run(
            command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
        )

    usage = cli("tagcache_inspect")
    assert usage.returncode == 2
    assert "the following arguments are required: TAG" in usage.stderr
    unreachable = cli("tagcache_invalidate", "red")
    assert unreachable.returncode == 3, unreachable.stderr
    assert "CommandError: Redis behind cache 'default' is unreachable" in unreachable.stderr


# --- tagcache_inspect --------------------------------------------------------------------------------------


def test_inspect_lists_members_ttls_and_memory(tc: TagCache, alias: str) -> None:
    keyspace.skip_in_process(alias, "reads Redis keys; on the in-process store the command refuses (below)")
    tc.set("k1", 1, tags=["t"], timeout=600)
    tc.set("gone", 1, tags=["t"], timeout=600)
    tc.delete("gone")  # the index keeps its member until it would have expired
    tc.get_or_set("k2", lambda: 2, timeout=None, tags=["t"])  # no expiry; reads the generation
    data = run_json("tagcache_inspect", "t", "--cache", alias)
    assert data["members"] == 3
    assert data["shown"] == 3
    rows = {row["key"]: row for row in data["entries"]}
    assert rows["k1"]["exists"]
    assert 0 < rows["k1"]["pttl_ms"] <= 600_000
    assert 0 < rows["k1"]["index_ttl_ms"] <= 600_000
    assert rows["k1"]["expires_at"].endswith("+00:00")
    assert not rows["gone"]["exists"]
    assert rows["gone"]["pttl_ms"] is None
    assert rows["k2"]["exists"]
    assert rows["k2"]["expires_at"] is None
    assert rows["k2"]["pttl_ms"] is None
    assert len(data["generation"]) == 32
    assert data["generation_pttl_ms"] > 0
    assert data["index_pttl_ms"] is None  # an index with a member that never expires never expires
    assert data["index_memory_bytes"] > 0
    assert data["pending_drains"] == []
    text = run("tagcache_inspect", "t", "--cache", alias, "--limit", "1")
    assert "members:     3" in text
    assert "2 more (raise --limit" in text
    assert run_json("tagcache_inspect", "t", "--cache", alias, "--limit", "0")["entries"] == []


def test_inspect_shows_the_generation_token_of_an_invalidated_tag(alias: str) -> None:
    keyspace.skip_in_process(alias, "reads Redis keys; on the in-process store the command refuses (below)")
    tc = TagCache(alias)
    tc.set("k", 1, tags=["t"])
    tc.invalidate_tags("t")
    assert len(run_json("tagcache_inspect", "t", "--cache", alias)["generation"]) == 32


def test_inspect_a_tag_nothing_uses(alias: str) -> None:
    keyspace.skip_in_process(alias, "reads Redis keys; on the in-process store the command refuses (below)")
    data = run_json("tagcache_inspect", "unused", "--cache", alias)
    assert (data["members"], data["generation"], data["index_memory_bytes"]) == (0, None, None)
    assert "(no index)" in run("tagcache_inspect", "unused", "--cache", alias)


def test_inspect_shows_an_interrupted_invalidation() -> None:
    store = get_store("default")
    base = store.keys.tag("t")
    store.client.zadd(base + ":i:tok", {store.keys.entry("x"): 1e15})
    store.client.sadd(base + ":p", base + ":i:tok")
    data = run_json("tagcache_inspect", "t")
    assert data["pending_drains"] == [{"index": base + ":i:tok", "members": 1}]
    assert "pending drain:" in run("tagcache_inspect", "t")


def test_inspect_rejects_bad_input() -> None:
    fails("tagcache_inspect", "a b", match="whitespace")
    fails("tagcache_inspect", "t", "--limit", "-1", match="--limit must be 0 or more")


# --- tagcache_stats ----------------------------------------------------------------------------------------


def test_stats_counts_tags_and_entries_and_shows_the_counters(
    tc: TagCache, alias: str, raw: redis.Redis
) -> None:
    for n in range(5):
        tc.set(f"k{n}", n, tags=["all", "even"] if n % 2 == 0 else ["all"])
    raw.set("someone-else", 1)
    tc.get("k1")
    metrics.observe_duration("get", 0.25)
    data = run_json("tagcache_stats", "--cache", alias)
    stats = data["redis"]
    assert stats["method"] == "full scan"
    assert stats["exact_counts"]
    assert (stats["entries"], stats["tags"], stats["pending_drains"]) == (5, 2, 0)
    assert stats["indexes_measured"] == 2
    assert stats["index_memory_bytes"] > 0
    assert stats["index_members"] == 8
    assert stats["members_per_entry"] == 1.6
    counters = data["process"]["counters"]
    assert counters["hits"] == 1
    assert counters["stores"] == 5
    assert set(metrics.COUNTERS) == set(counters)
    assert data["process"]["timings"]["get"]["seconds"] >= 0.25
    assert "this process's own" in data["process"]["note"]
    whole = run_json("tagcache_stats", "--cache", alias, "--sample", "100000")["redis"]
    assert whole["method"] == "sample (whole keyspace)"
    assert (whole["entries"], whole["tags"]) == (5, 2)
    text = run("tagcache_stats", "--cache", alias)
    assert "extrapolated" in text
    assert "This process:" in text
    assert "Prometheus" in text


def test_stats_sample_extrapolates(tc: TagCache, alias: str) -> None:
    keyspace.skip_in_process(alias, "reads Redis keys; on the in-process store the command refuses (below)")
    for n in range(50):
        tc.set(f"k{n}", n, tags=[f"t{n}"])
    stats = run_json("tagcache_stats", "--cache", alias, "--sample", "10")["redis"]
    assert stats["method"] == "sample"
    assert not stats["exact_counts"]
    assert stats["keys_scanned"] == 10
    assert stats["dbsize"] >= 100
    assert "~" in run("tagcache_stats", "--cache", alias, "--sample", "10")


def test_stats_rejects_bad_input() -> None:
    fails("tagcache_stats", "--sample", "0", match="--sample must be 1 or more")
    fails("tagcache_stats", "--memory-sample", "-1", match="--memory-sample must be 0 or more")


# --- tagcache_prune ----------------------------------------------------------------------------------------


def test_prune_removes_members_of_missing_entries(tc: TagCache, alias: str) -> None:
    keyspace.skip_in_process(alias, "reads Redis keys; on the in-process store the command refuses (below)")
    tc.set("a1", 1, tags=["a", "b"])
    tc.set("a2", 2, tags=["a", "b"])
    tc.set("b1", 3, tags=["b"])
    tc.invalidate_tags("a")  # a1 and a2 are gone, but b's index still lists them
    index = tc.store.keys.index("b")
    dry = run_json("tagcache_prune", "--cache", alias, "--dry-run")
    assert dry["dry_run"]
    assert tc.store.client.zcard(index) == 3
    report = run_json("tagcache_prune", "--cache", alias)
    if alias == "cluster":  # there a missing entry may be one being written: only expiry counts
        assert not report["checks_entries"]
        assert report["dead_members"] == 0
        assert "not checked on Redis Cluster" in run("tagcache_prune", "--cache", alias)
        return
    assert dry["dead_members"] == report["dead_members"] == 2
    assert report["indexes"] == 1
    assert tc.store.client.zcard(index) == 1
    assert tc.get("b1") == 3
    tc.invalidate_tags("b")
    assert tc.get("b1") is None


def test_prune_removes_expired_members_in_bounded_steps(tc: TagCache, alias: str) -> None:
    keyspace.skip_in_process(alias, "reads Redis keys; on the in-process store the command refuses (below)")
    tc.set("live", 1, tags=["c"])
    index = tc.store.keys.index("c")
    tc.store.client.zadd(index, {f"ghost{n}": 1000 + n for n in range(5)})  # expired in 1970
    assert run_json("tagcache_prune", "--cache", alias, "--dry-run")["expired_members"] == 5
    report = run_json("tagcache_prune", "--cache", alias, "--batch", "2")
    assert report["expired_members"] == 5
    assert report["dead_members"] == 0
    assert tc.store.client.zrange(index, 0, -1) == [tc.store.keys.entry("live").encode()]
    assert tc.get("live") == 1


def test_prune_finishes_interrupted_invalidations() -> None:
    store = get_store("default")
    base, entry = store.keys.tag("t"), store.keys.entry("orphan")
    store.client.set(entry, b"stale")
    store.client.zadd(base + ":i:tok", {entry: 1e15})
    store.client.sadd(base + ":p", base + ":i:tok")
    assert run_json("tagcache_prune", "--dry-run")["drains"] == 1
    assert store.client.exists(entry)
    report = run_json("tagcache_prune")
    assert (report["drains"], report["drained_entries"]) == (1, 1)
    assert not store.client.exists(entry, base + ":p", base + ":i:tok")


def test_prune_never_removes_a_member_rewritten_meanwhile(monkeypatch: pytest.MonkeyPatch) -> None:
    """A write to the index between the entry check and the removal aborts the removal (WATCH)."""
    tc = TagCache("default")
    tc.set("a1", 1, tags=["a", "b"])
    tc.invalidate_tags("a")
    check = pruning._missing
    writes = iter(range(100))

    def check_then_write(client: redis.Redis, members: list[bytes]) -> list[bytes]:
        missing = check(client, members)
        tc.set(f"concurrent{next(writes)}", 1, tags=["b"])  # another process writing under "b"
        return missing

    monkeypatch.setattr(pruning, "_missing", check_then_write)
    report = run_json("tagcache_prune")
    assert report["dead_members"] == 0
    assert report["busy_chunks"] == 1
    assert tc.store.keys.entry("a1").encode() in tc.store.client.zrange(tc.store.keys.index("b"), 0, -1)
    assert "chunk(s) skipped" in run("tagcache_prune")


def test_prune_draws_a_progress_bar_on_a_terminal() -> None:
    tc = TagCache("default")
    for n in range(3):
        tc.set(f"k{n}", n, tags=[f"t{n}"])
    terminal = Terminal()
    run("tagcache_prune", stderr=terminal)
    assert "[" + "#" * 30 + "] 100% 3/3 tag keys" in terminal.getvalue()
    terminal = Terminal()
    run("tagcache_prune", "--no-progress", stderr=terminal)
    assert terminal.getvalue() == ""
    fails("tagcache_prune", "--batch", "0", match="--batch must be 1 or more")


# --- tagcache_scripts --------------------------------------------------------------------------------------


def test_scripts_load_and_verify(alias: str, raw: redis.Redis) -> None:
    data = run_json("tagcache_scripts", "--cache", alias)
    mode = get_store(alias).scripts.mode
    assert data["mode"] == mode
    assert data["command"] == {"function": "FCALL", "eval": "EVALSHA"}[mode]
    assert set(data["scripts"]) == set(SCRIPT_NAMES)
    assert all(s["loaded"] for s in data["scripts"].values())
    assert data["server_version"][0].isdigit()
    assert "All scripts present." in run("tagcache_scripts", "--check", "--cache", alias)


@pytest.mark.parametrize("mode", ["eval", "function"])
def test_scripts_check_fails_when_the_server_lost_them(settings: Any, mode: str) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "SCRIPT_MODE": mode}
    run("tagcache_scripts")
    client = get_store("default").client
    client.function_flush() if mode == "function" else client.script_flush()
    fails("tagcache_scripts", "--check", match="Scripts missing on the server: write, ", code=4)
    data = run_json("tagcache_scripts")
    assert all(info["loaded"] for info in data["scripts"].values())
    if mode == "eval":
        assert data["scripts"]["write"]["id"] == hashlib.sha1(source("write").encode()).hexdigest()
        assert data["library"] is None
    else:
        assert data["scripts"]["write"]["id"] == f"{data['library']}_write"
    assert "EVALSHA" in run("tagcache_scripts") if mode == "eval" else "FCALL" in run("tagcache_scripts")


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        call_command(name, "--help")
    assert "--cache ALIAS" in capsys.readouterr().out


def test_commands_work_in_one_namespace() -> None:
    from django_tagcache.caching.namespaces import in_namespace

    tc = TagCache("default")
    with in_namespace("tenant1"):
        tc.set("a", 1, tags=["red"])
        tc.set("b", 1, tags=["red"])
    tc.set("a", 2, tags=["red"])
    assert run_json("tagcache_stats", "--namespace", "tenant1")["redis"]["entries"] == 2
    assert run_json("tagcache_inspect", "red", "--namespace", "tenant1")["members"] == 2
    assert run_json("tagcache_invalidate", "red", "--namespace", "tenant1")["removed"] == 2
    assert tc.get("a") == 2  # the other namespace is untouched
    fails("tagcache_stats", "--namespace", "no spaces", match="Cache namespace 'no spaces' is invalid")


@pytest.mark.parametrize(
    "command", ["tagcache_inspect", "tagcache_stats", "tagcache_prune", "tagcache_scripts"]
)
def test_commands_that_read_redis_refuse_the_in_process_store_clearly(command: str) -> None:
    args = ("t",) if command == "tagcache_inspect" else ()
    fails(command, *args, "--cache", "locmem", match=f"in-process store.*{command} reads Redis")


def test_invalidate_works_on_the_in_process_store() -> None:
    TagCache("locmem").set("k", 1, tags=["t"])
    assert "1 cache entry removed" in run("tagcache_invalidate", "t", "--cache", "locmem")
    assert TagCache("locmem").get("k") is None


@pytest.mark.parametrize("label", ["nope", "shop", "a.b.c", ".product"])
def test_a_model_label_without_its_app_gets_a_clear_message(label: str) -> None:
    with pytest.raises(CommandError) as info:
        run("tagcache_invalidate", "--model", label)
    message = str(info.value)
    assert "unpack" not in message
    assert f"Unknown model {label!r}: give it as app_label.ModelName" in message
    assert "Models with cache tags: " in message
    assert "shop.Product" in message
    assert info.value.returncode == 1
