"""``{% tagcache %}`` for Jinja2 templates.

Add ``"django_tagcache.jinja2.TagCacheExtension"`` to the environment's extensions, then::

    {% tagcache 600, "product-card", product.pk, tags=product, using="other" %} ... {% endtagcache %}

The arguments are those of the Django tag, separated by commas: timeout, name, vary-on values,
then the optional ``tags=`` and ``using=``. It caches, tags and bubbles exactly as the Django tag
does (both are :func:`django_tagcache.web.fragments.render_fragment`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jinja2 import Undefined, nodes
from jinja2.exceptions import TemplateRuntimeError, TemplateSyntaxError
from jinja2.ext import Extension
from markupsafe import Markup

from .fragments import default_alias, fragment_key, fragment_tags, render_fragment

if TYPE_CHECKING:
    from jinja2.parser import Parser
    from jinja2.runtime import Context

_KEYWORDS = ("tags", "using", "near")


class TagCacheExtension(Extension):
    """The ``{% tagcache timeout, name[, vary_on...][, tags=...][, using=...][, near=...] %}`` block."""

    tags = {"tagcache"}  # noqa: RUF012 - how jinja2.ext.Extension declares it

    def parse(self, parser: Parser) -> nodes.Node:
        lineno = next(parser.stream).lineno
        timeout = parser.parse_expression()
        parser.stream.expect("comma")
        name = parser.parse_expression()
        vary_on: list[nodes.Expr] = []
        keywords: dict[str, nodes.Expr] = {}
        while parser.stream.skip_if("comma"):
            if parser.stream.current.type == "name" and parser.stream.look().type == "assign":
                keyword = next(parser.stream)
                if keyword.value not in _KEYWORDS or keyword.value in keywords:
                    raise TemplateSyntaxError(
                        f"tagcache takes tags=, using= and near= once each, not {keyword.value}=",
                        keyword.lineno,
                        parser.name,
                        parser.filename,
                    )
                parser.stream.expect("assign")
                keywords[keyword.value] = parser.parse_expression()
            elif keywords:
                parser.fail("tagcache: vary-on values come before tags=, using= and near=", lineno)
            else:
                vary_on.append(parser.parse_expression())
        body = parser.parse_statements(("name:endtagcache",), drop_needle=True)
        args = [
            timeout,
            name,
            nodes.List(vary_on),
            keywords.get("tags", nodes.Const(None)),
            keywords.get("using", nodes.Const(None)),
            keywords.get("near", nodes.Const(None)),
            nodes.ContextReference(),
        ]
        return nodes.CallBlock(self.call_method("_render", args), [], [], body).set_lineno(lineno)

    def _render(
        self,
        timeout: Any,
        name: Any,
        vary_on: list[Any],
        tags: Any,
        using: Any,
        near: Any,
        context: Context,
        caller: Callable[[], str],
    ) -> Markup:
        if timeout is not None:
            timeout = int(timeout)
        for value in vary_on:
            if isinstance(value, Undefined):
                # Rendered as "", it would give every caller the entry of the first one.
                name = value._undefined_name
                raise TemplateRuntimeError(f"tagcache got an undefined vary-on value: {name!r}")
        if near is not None and not isinstance(near, bool):
            raise TemplateRuntimeError(f"tagcache got near={near!r}: it takes True or False")
        text = render_fragment(
            alias=using or default_alias(),
            key=fragment_key(str(name), vary_on),
            timeout=timeout,
            tags=lambda: fragment_tags(tags),
            render=caller,
            # The request (Django's Jinja2 backend puts it in the context) bounds the read fence
            # by its start, as it does for the Django tag.
            sources=lambda: (tags, context.get("request")),
            near=near,
        )
        return Markup(text)
