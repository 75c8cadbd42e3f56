"""tagcache_verify and tagcache_stats --slo, from a correct cache and from one with a fault."""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from django_tagcache import cached, invalidate_tags
from django_tagcache.caching import background, shadow
from django_tagcache.caching.api import get_store
from django_tagcache.core import observations, serialization, shadow_records
from django_tagcache.ops.verify import reread
from tests.testapp.models import Category, Product

PRICES = {1: 10, 2: 20, 3: 30}


@cached(tags=lambda pk: [f"price:{pk}"])
def price(pk: int) -> int:
    return PRICES[pk]


@pytest.fixture(autouse=True)
def _audited(settings: Any, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    settings.TAGCACHE = {"AUDIT": {"SAMPLE_RATE": 1.0, "BUDGET": 0, "LOG_INTERVAL": 0, "VERIFY_SAMPLES": 32}}
    observations.reset()
    shadow.reset()
    shadow_records.reset_local()
    PRICES.update({1: 10, 2: 20, 3: 30})
    yield
    assert background.wait(30)
    assert not [r for r in caplog.records if "audit task failed" in r.getMessage()]


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def overwrite(pk: int, value: int) -> None:
    """A fault: the entry rewritten behind the package's back, its TTL kept."""
    store = get_store("default")
    entry = store.keys.entry(price.cache_key(pk))
    assert store.client.set(entry, serialization.dumps_stamped(value, 0.0, 0), keepttl=True, xx=True)


def test_verify_passes_on_a_correct_cache() -> None:
    for pk in PRICES:
        price(pk)
    assert background.wait(30)
    PRICES[2] = 21
    invalidate_tags("price:2")  # a change, invalidated as a save would
    data = json.loads(run("tagcache_verify", "--json"))
    assert data["passed"] is True
    [row] = data["functions"]
    assert row["function"] == "tests.test_consistency_commands.price"
    assert (row["checked"], row["stale"], row["expired"]) == (2, 0, 1)


def test_verify_fails_past_the_threshold_and_names_the_stale_entry() -> None:
    for pk in PRICES:
        price(pk)
    assert background.wait(30)
    overwrite(3, 99)
    out = StringIO()
    with pytest.raises(CommandError) as failure:
        call_command("tagcache_verify", stdout=out)
    assert failure.value.returncode == 4
    assert "1 of 3 checked entries are stale" in str(failure.value)
    text = out.getvalue()
    assert "tests.test_consistency_commands.price        3      1" in text
    assert f"stale: {get_store('default').keys.entry(price.cache_key(3))}" in text
    run("tagcache_verify", "--max-stale", "0.5")  # a looser gate passes


def test_verify_bad_input() -> None:
    with pytest.raises(CommandError, match="--max-stale"):
        run("tagcache_verify", "--max-stale", "2")


def test_slo_report_met_then_missed() -> None:
    price(1)
    for _ in range(9):
        price(1)
    assert background.wait(30)
    data = json.loads(run("tagcache_stats", "--slo", "--json"))["slo"]
    assert data["critical"]["fresh"] == 9
    assert data["critical"]["share"] == 1.0
    assert data["met"] is True
    overwrite(1, 11)
    price(1)
    assert background.wait(30)
    text = run("tagcache_stats", "--slo")
    assert text.splitlines()[0] == (
        "Consistency SLO, last 24 h: 90.000% of critical reads reflected committed data within 0 s "
        "(target 99.900%): MISSED"
    )
    assert "  critical              9        0        1        0     90.000%" in text


def test_slo_report_without_samples() -> None:
    text = run("tagcache_stats", "--slo", "--hours", "2")
    assert "no critical reads sampled" in text
    assert "(no audited reads in the window)" in text


@pytest.mark.parametrize("alias", ["default", "locmem"])
def test_the_kept_argument_sets_are_bounded(alias: str, settings: Any) -> None:
    settings.TAGCACHE = {"CACHE": alias, "AUDIT": {"VERIFY_SAMPLES": 2}}
    for pk in range(1, 30):
        PRICES[pk] = pk
        price(pk)
    assert background.wait(30)
    store = get_store(alias)
    kept = shadow_records.calls(store, "tests.test_consistency_commands.price")
    assert len(kept) == 2
    assert len({repr(call) for _, _, call in kept}) == 2  # two distinct calls
    data = json.loads(run("tagcache_verify", "--json", "--cache", alias))
    assert (data["checked"], data["stale"]) == (2, 0)


@cached(tags=lambda product: [product])
def product_label(product: Product) -> str:
    return f"{product.name} ({product.price})"


def _behind_the_back(sql: str, *params: object) -> None:
    """Run ``sql`` on the driver's own connection: no signal, no statement watcher sees it."""
    connection.ensure_connection()
    raw = connection.connection
    placeholder = "?" if connection.vendor == "sqlite" else "%s"
    cursor = raw.cursor()
    try:
        cursor.execute(sql.replace("%s", placeholder), params)
    finally:
        cursor.close()
    if not connection.get_autocommit():
        raw.commit()


@pytest.mark.django_db(transaction=True)
def test_verify_recomputes_from_the_row_not_from_the_instance_kept_with_the_call(settings: Any) -> None:
    """A kept call holds the instance as it was when the entry was written: recomputed from that
    copy, a row changed behind the cache's back gives the cached value again, and the stale entry
    passes. The instance has to be read again."""
    settings.TAGCACHE = {**settings.TAGCACHE, "CLOCK_SKEW_MARGIN": 0}  # the entry is written at once
    category = Category.objects.create(name="c")
    product = Product.objects.create(name="old", price=1, category=category)
    assert product_label(Product.objects.get(pk=product.pk)) == "old (1)"
    assert background.wait(30)
    _behind_the_back(f"UPDATE {Product._meta.db_table} SET name = %s WHERE id = %s", "new", product.pk)
    out = StringIO()
    with pytest.raises(CommandError) as failure:
        call_command(
            "tagcache_verify", "--function", "tests.test_consistency_commands.product_label", stdout=out
        )
    assert failure.value.returncode == 4
    assert "1 of 1 checked entries are stale" in str(failure.value)


@pytest.mark.django_db(transaction=True)
def test_verify_counts_a_kept_call_whose_row_is_gone_as_an_error(settings: Any) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "CLOCK_SKEW_MARGIN": 0}
    category = Category.objects.create(name="c")
    product = Product.objects.create(name="old", price=1, category=category)
    assert product_label(Product.objects.get(pk=product.pk)) == "old (1)"
    assert background.wait(30)
    _behind_the_back(f"DELETE FROM {Product._meta.db_table} WHERE id = %s", product.pk)
    data = json.loads(run("tagcache_verify", "--json"))
    [row] = [r for r in data["functions"] if r["function"].endswith(".product_label")]
    assert (row["checked"], row["stale"], row["errors"]) == (0, 0, 1)


@pytest.mark.django_db
def test_reread_reads_every_instance_of_a_call_again() -> None:
    category = Category.objects.create(name="c")
    product = Product.objects.create(name="old", price=1, category=category)
    Product.objects.filter(pk=product.pk).update(name="new")
    unsaved = Product(name="draft", category=category)
    args, kwargs = reread(((product, [product], {"x": (product,)}), {"p": product, "u": unsaved, "n": 3}))
    assert args[0].name == args[1][0].name == args[2]["x"][0].name == kwargs["p"].name == "new"
    assert args[0] is not product
    assert kwargs["u"] is unsaved
    assert kwargs["n"] == 3
