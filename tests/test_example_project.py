"""The example shop (example_project/) works end to end, in its own settings.

Its system checks, migrations and demo data; its pages through Django's test client, served from
the cache on a second visit and recomputed after a model write; the panel that reports it; the
admin's purge action; and this app's management commands. Each step runs in a subprocess, since
this process is configured with the test suite's settings. Redis is the test run's (REDIS_URL; the
example's keys have their own prefix), SQLite a temporary file: no port, no machine-wide Redis.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

REPO = Path(__file__).resolve().parent.parent
MANAGE = str(REPO / "example_project" / "manage.py")

# Runs in the example's settings: pages and the admin through the test client; prints JSON.
VISITS = """
import json, django
django.setup()
from django.contrib.auth import get_user_model
from django.test import Client
from example_project.store.models import Product

client = Client()

def visit(url, **kwargs):
    response = client.get(url, **kwargs) if not kwargs.get("data") else client.post(url, **kwargs)
    return {"status": response.status_code, "html": response.content.decode(),
            "surrogate_key": response.get("Surrogate-Key", "")}

out = {"pages": {url: visit(url) for url in ("/", "/category/1/", "/catalog/", "/catalog/sellers/1/")}}
product = Product.objects.order_by("pk").first()
out["pk"] = product.pk
url = product.get_absolute_url()
out["first"], out["second"] = visit(url), visit(url)
product.price = 99
product.save()
out["after_save"] = visit(url)

admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "admin")
client.force_login(admin)
out["changelist"] = visit("/admin/store/product/")
data = {"action": "purge_cached_data", "_selected_action": [str(product.pk)]}
out["purged"] = visit("/admin/store/product/", data=data, follow=True)
print(json.dumps(out))
"""


def panel(html: str) -> dict[str, Any]:
    """What the panel of a page says: its counters, and the tags of each of its rows."""
    found = re.search(r'<section class="tc-panel">(.*?)</section>', html, re.S)
    assert found, "no panel on the page"
    text = found.group(1)
    counts = {name: int(n) for name, n in re.findall(r"([a-z ]+): <b>(\d+)</b>", text)}
    rows = dict(re.findall(r"<dt>(\w+)</dt>\s*<dd[^>]*>(.*?)</dd>", text, re.S))
    tags = {row: set(re.findall(r"<code>([^<]+)</code>", body)) for row, body in rows.items()}
    return {"counts": counts, "tags": tags, "text": text}


def run(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{args[1:]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture
def example_env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "REDIS_URL": settings.REDIS_URL,
        "EXAMPLE_SQLITE": str(tmp_path / "db.sqlite3"),
        "PYTHONPATH": str(REPO),
    }


@pytest.mark.slow
def test_example_project_end_to_end(example_env: dict[str, str]) -> None:
    python = sys.executable
    # --database runs the checks that ask Redis too (maxmemory-policy).
    assert "no issues" in run(example_env, python, MANAGE, "check", "--database", "default")
    run(example_env, python, MANAGE, "migrate", "--verbosity", "0")
    assert "Demo data loaded: 4 categories" in run(example_env, python, MANAGE, "load_demo_data")
    assert "nothing changed" in run(example_env, python, MANAGE, "load_demo_data")

    out = json.loads(run(example_env, python, "-c", VISITS))
    pk = out["pk"]

    for url, page in out["pages"].items():
        assert page["status"] == 200, url
        assert panel(page["html"])["counts"]["misses"] > 0, url
    # Tags bubbled up from the cards to the pages, decorated (/category/) or cached by the
    # section middleware (/catalog/), and the pages carry them in their CDN header.
    assert "store.product:1" in out["pages"]["/category/1/"]["surrogate_key"].split()
    assert {"store.product", "store.product:1"} <= panel(out["pages"]["/catalog/"]["html"])["tags"]["Read"]
    assert "user:1" in panel(out["pages"]["/catalog/sellers/1/"]["html"])["tags"]["Read"]

    first, second, after_save = (panel(out[name]["html"]) for name in ("first", "second", "after_save"))
    assert first["counts"]["stores"] > 0
    assert f"store.product:{pk}" in first["tags"]["Written"]
    # The second visit is one hit, the whole page from the cache, which still says what it read.
    assert second["counts"] == {**second["counts"], "hits": 1, "misses": 0, "stores": 0}
    assert f"store.product:{pk}" in second["tags"]["Read"]
    assert not second["tags"]["Written"]
    # A save invalidated the product's tags: the page is computed again, with the new price.
    assert after_save["counts"]["misses"] > 0
    assert after_save["counts"]["stores"] > 0
    assert "€99.00" in out["after_save"]["html"]
    assert {f"store.product:{pk}", "category:1"} <= after_save["tags"]["Recently"]

    # The admin has the automatic purge action, and shows the panel too.
    changelist = out["changelist"]["html"]
    assert 'value="purge_cached_data"' in changelist
    assert panel(changelist)["counts"]["hits"] == 0
    purged = out["purged"]["html"]
    assert "Purged the cached data of 1 product" in purged
    assert "by <em>admin:action:store.product</em>" in panel(purged)["text"]
    # The purge answered with a redirect, whose page is never seen: the page it led to says what
    # the purge invalidated under "Invalidated", not "nothing".
    assert f"store.product:{pk}" in panel(purged)["tags"]["Invalidated"]
    assert "the request that redirected here" in panel(purged)["text"]
    # Why a page that missed stores more entries than it missed is said on the panel.
    assert first["counts"]["stores"] > first["counts"]["misses"]
    assert "the list of headers it varies on" in first["text"]

    # This app's commands work in the example project.
    stats = json.loads(run(example_env, python, MANAGE, "tagcache_stats", "--json"))
    assert stats["redis"]["entries"] > 0
    assert "members:" in run(example_env, python, MANAGE, "tagcache_inspect", "store.category")
    removed = run(example_env, python, MANAGE, "tagcache_invalidate", "--model", "store.Product")
    assert "cache entries removed" in removed
