"""The commands' exit status when Redis fails: 3 for unreachable and for an error reply alike."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from django_tagcache.orm.outbox import PendingInvalidation
from tests.faults import Faulty
from tests.testapp.models import Category

pytestmark = pytest.mark.django_db(transaction=True)


def restrict(settings: Any, faulty: Faulty) -> None:
    """Point the cache at an ACL user who may connect and read, and nothing else."""
    faulty.admin().acl_setuser(
        "reader", enabled=True, passwords=["+secret"], keys=["*"], commands=["-@all", "+@connection", "+get"]
    )
    settings.CACHES = {
        **settings.CACHES,
        "faulty": {
            **settings.CACHES["faulty"],
            "LOCATION": f"redis://reader:secret@127.0.0.1:{faulty.proxy.port}/0",
        },
    }


@pytest.mark.parametrize(
    "command",
    [("tagcache_invalidate", "t"), ("tagcache_scripts",), ("tagcache_inspect", "t"), ("tagcache_stats",)],
)
def test_an_error_reply_exits_3_with_a_message(
    settings: Any, faulty: Faulty, command: tuple[str, ...]
) -> None:
    restrict(settings, faulty)
    with pytest.raises(CommandError, match="refused") as failure:
        call_command(*command)
    assert failure.value.returncode == 3
    assert "NOPERM" in str(failure.value) or "NoPermission" in str(failure.value)


def test_drain_takes_cache_and_namespace(settings: Any, faulty: Faulty) -> None:
    PendingInvalidation.objects.create(tags=["a"], namespace="acme", cache="faulty")
    PendingInvalidation.objects.create(tags=["b"], namespace="", cache="faulty")
    out = StringIO()
    call_command("tagcache_drain", "--cache", "faulty", "--namespace", "acme", "--json", stdout=out)
    assert json.loads(out.getvalue()) == {"replayed": 1, "failing": 0, "pending": 0}
    assert list(PendingInvalidation.objects.values_list("tags", flat=True)) == [["b"]]


def test_drain_exits_3_while_redis_is_unreachable(settings: Any, faulty: Faulty) -> None:
    settings.TAGCACHE = {**settings.TAGCACHE, "OUTBOX": True}
    faulty.proxy.cut(refuse=True)
    Category.objects.create(name="c")
    with pytest.raises(CommandError, match="still") as failure:
        call_command("tagcache_drain")
    assert failure.value.returncode == 3
    assert PendingInvalidation.objects.count() == 1


def test_drain_rejects_an_unknown_cache(faulty: Faulty) -> None:
    with pytest.raises(CommandError, match="Unknown cache alias") as failure:
        call_command("tagcache_drain", "--cache", "nope")
    assert failure.value.returncode == 1
