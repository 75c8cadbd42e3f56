"""Hits of cached fragments and pages, against Django's: ``{% cache %}`` and ``cache_page``.

    python -m benchmarks.fragments_and_pages [--rounds 500] [--repeat 41]

Both sides use the same Redis through django-redis. Each run times ``rounds`` hits of one side
then of the other; the ratio is the median over ``repeat`` runs of each run's ratio, so that a
change of load on the machine affects both sides of a ratio alike. Bars: each ratio <= 1.10.
The Redis commands of one hit are counted too (tests/counting.py): that figure does not depend
on the machine.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from benchmarks._setup import configure_django, paired, redis_url, result

BODY = "".join(f"<li>product {i}: <b>{i * 3} EUR</b></li>" for i in range(40))


def configure(url: str) -> None:
    configure_django(
        url,
        counting=True,
        extra={
            "TEMPLATES": [{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
            "ALLOWED_HOSTS": ["testserver"],
        },
    )


def fragment_hits(using: str = "") -> tuple[Callable[[], object], Callable[[], object]]:
    """Render functions for a warm ``{% cache %}`` and a warm ``{% tagcache %}`` fragment."""
    from django.template import Context, Template

    theirs = Template(
        f'{{% load cache %}}{{% cache 600 "bench" pk {using} %}}<ul>{{{{ body }}}}</ul>{{% endcache %}}'
    )
    ours = Template(
        '{% load tagcache %}{% tagcache 600 "bench" pk tags="shop.product:1 category:7 promo" %}'
        "<ul>{{ body }}</ul>{% endtagcache %}"
    )
    context = {"pk": 1, "body": BODY}
    assert theirs.render(Context(context)) == ours.render(Context(context))
    return (lambda: theirs.render(Context(context))), (lambda: ours.render(Context(context)))


def page_hits() -> tuple[Callable[[], object], Callable[[], object]]:
    """Calls of a warm ``cache_page`` view and a warm ``cache_page_tagged`` view."""
    from django.http import HttpRequest, HttpResponse
    from django.test import RequestFactory
    from django.views.decorators.cache import cache_page

    from django_tagcache.views import cache_page_tagged

    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(f"<html><body><ul>{BODY * 4}</ul></body></html>")

    theirs = cache_page(600, key_prefix="theirs")(view)
    ours = cache_page_tagged(600, tags=["shop.product:1", "category:7", "promo"], key_prefix="ours")(view)
    factory = RequestFactory()
    for decorated in (theirs, ours):
        decorated(factory.get("/product/1/"))
        assert decorated(factory.get("/product/1/")).content == view(factory.get("/")).content
    return (lambda: theirs(factory.get("/product/1/"))), (lambda: ours(factory.get("/product/1/")))


def per_call_us(func: Callable[[], object], rounds: int) -> float:
    started = time.perf_counter()
    for _ in range(rounds):
        func()
    return (time.perf_counter() - started) / rounds * 1e6


def commands(func: Callable[[], object]) -> list[str]:
    from tests.counting import count

    with count() as tally:
        func()
    return tally.commands


def compare(
    name: str, theirs: Callable[[], object], ours: Callable[[], object], rounds: int, repeat: int
) -> float:
    """Median time per hit of each side, and the median of the per-run ratios (see _setup.paired)."""
    for func in (theirs, ours):
        per_call_us(func, rounds)  # warm-up
    ours_us, theirs_us, ratio = paired(ours, theirs, rounds=rounds, repeat=repeat)
    print(f"{name}")
    print(f"  Django   {theirs_us:8.1f} us/hit   Redis: {' '.join(commands(theirs))}")
    print(f"  tagcache {ours_us:8.1f} us/hit   Redis: {' '.join(commands(ours))}")
    print(f"  ratio    {ratio:8.3f}   (median of {repeat} paired runs; bar: <= 1.10)")
    result(name, ours_us, theirs_us, ratio, "<= 1.10")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=41)
    args = parser.parse_args()

    with redis_url() as url:
        configure(url)
        from django_tagcache.caching.api import get_store

        get_store().client.flushdb()
        compare("{% tagcache %} hit vs {% cache %} hit", *fragment_hits(), args.rounds, args.repeat)
        # Without using=, Django first looks for a "template_fragments" cache and pays for the
        # exception; naming the cache takes that cost out of the comparison.
        compare(
            '{% tagcache %} hit vs {% cache ... using="default" %} hit',
            *fragment_hits('using="default"'),
            args.rounds,
            args.repeat,
        )
        compare("cache_page_tagged hit vs cache_page hit", *page_hits(), args.rounds, args.repeat)


if __name__ == "__main__":
    main()
