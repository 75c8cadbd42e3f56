"""``{% tagcache %}``: Django's ``{% cache %}`` with tags.

::

    {% load tagcache %}
    {% tagcache 600 "product-card" product.pk tags=product %} ... {% endtagcache %}
    {% tagcache 600 sidebar request.user.pk tags="category:7 promo" using="other" %} ... {% endtagcache %}
    {% tagcache 600 menu tags="catalog:menu" near=True %} ... {% endtagcache %}
"""

from __future__ import annotations

from typing import Any

from django.core.cache import InvalidCacheBackendError
from django.core.exceptions import ImproperlyConfigured
from django.template import Context, Library, Node, NodeList, TemplateSyntaxError, VariableDoesNotExist
from django.template.base import FilterExpression, Parser, Token, Variable
from django.utils.safestring import SafeString, mark_safe

from ..caching.api import get_store
from ..web.fragments import FRAGMENTS_ALIAS, default_alias, fragment_key, fragment_tags, render_fragment

register = Library()

_KEYWORDS = ("tags=", "using=", "near=")


class TagCacheNode(Node):
    def __init__(
        self,
        nodelist: NodeList,
        expire_time_var: FilterExpression,
        fragment_name: str,
        vary_on: list[FilterExpression],
        tags: FilterExpression | None,
        cache_name: FilterExpression | None,
        near: FilterExpression | None = None,
    ) -> None:
        self.nodelist = nodelist
        self.expire_time_var = expire_time_var
        self.fragment_name = fragment_name
        self.vary_on = vary_on
        self.tags = tags
        self.cache_name = cache_name
        self.near = near

    def render(self, context: Context) -> SafeString:
        # Timeout and cache name are resolved, and rejected, exactly as Django's {% cache %} does.
        try:
            expire_time = self.expire_time_var.resolve(context)
        except VariableDoesNotExist as exc:
            raise TemplateSyntaxError(
                f'"tagcache" tag got an unknown variable: {self.expire_time_var.var!r}'
            ) from exc
        if expire_time is not None:
            try:
                expire_time = int(expire_time)
            except (ValueError, TypeError) as exc:
                raise TemplateSyntaxError(
                    f'"tagcache" tag got a non-integer timeout value: {expire_time!r}'
                ) from exc
        alias = self._alias(context)
        vary_on = [self._resolve_strictly(var, context, "a vary-on value") for var in self.vary_on]
        resolved: list[Any] = []

        def tag_value() -> Any:  # resolved on a miss only, at most once
            if not resolved:
                resolved.append(self._tag_value(context))
            return resolved[0]

        text = render_fragment(
            alias=alias,
            key=fragment_key(self.fragment_name, vary_on),
            timeout=expire_time,
            tags=lambda: self._tags(tag_value()),
            render=lambda: self.nodelist.render(context),
            # The request (if the context has it) bounds the read fence by its start.
            sources=lambda: (tag_value(), getattr(context, "request", None)),
            near=self._near(context),
        )
        return mark_safe(text)

    def _alias(self, context: Context) -> str:
        if self.cache_name is None:
            alias: object = default_alias()
            if alias != FRAGMENTS_ALIAS:
                return str(alias)  # TAGCACHE['CACHE']: the system checks vouch for it
        else:
            try:
                alias = self.cache_name.resolve(context)
            except VariableDoesNotExist as exc:
                raise TemplateSyntaxError(
                    f'"tagcache" tag got an unknown variable: {self.cache_name.var!r}'
                ) from exc
        try:
            if not isinstance(alias, str) or not alias:
                raise InvalidCacheBackendError("not an alias")
            get_store(alias)
        except (InvalidCacheBackendError, ImproperlyConfigured) as exc:
            raise TemplateSyntaxError(f"Invalid cache name for tagcache tag: {alias!r} ({exc})") from exc
        return alias

    @staticmethod
    def _resolve_strictly(expression: FilterExpression, context: Context, what: str) -> Any:
        """The value of ``expression``; a variable that does not exist is an error, not ``""``.

        Django's ``{% cache %}`` resolves a misspelt vary-on variable to ``""``, so that every
        user shares one entry; a misspelt ``tags=`` would cache the fragment under no tags.
        """
        if not isinstance(expression.var, Variable):
            return expression.resolve(context)  # a literal
        try:
            value = expression.var.resolve(context)
        except VariableDoesNotExist as exc:
            raise TemplateSyntaxError(
                f'"tagcache" tag got an unknown variable in {what}: {expression.var.var!r}'
            ) from exc
        return expression.resolve(context) if expression.filters else value

    def _near(self, context: Context) -> bool | None:
        """``near=``: True or False (a literal or a variable), like ``get_or_set``'s; absent: None."""
        if self.near is None:
            return None
        value = self._resolve_strictly(self.near, context, "near=")
        if not isinstance(value, bool):
            raise TemplateSyntaxError(f'"tagcache" tag got near={value!r}: it takes True or False')
        return value

    def _tag_value(self, context: Context) -> Any:
        if self.tags is None:
            return None
        return self._resolve_strictly(self.tags, context, "tags=")

    def _tags(self, value: Any) -> tuple[str, ...]:
        if self.tags is None:
            return ()
        try:
            return fragment_tags(value)
        except (TypeError, ValueError) as exc:
            raise TemplateSyntaxError(f'"tagcache" tag got bad tags: {exc}') from exc


@register.tag("tagcache")
def do_tagcache(parser: Parser, token: Token) -> TagCacheNode:
    """Cache a template fragment under tags.

    Usage::

        {% load tagcache %}
        {% tagcache timeout name [vary_on ...] [tags=...] [using="alias"] [near=True|False] %}
        ... {% endtagcache %}

    The same arguments as Django's ``{% cache %}`` (``timeout`` in seconds or None; ``name`` is
    literal, surrounding quotes are dropped), plus ``tags=``: a space-separated string, a list,
    or any tag source. The fragment is also tagged with everything used while it renders.
    ``near=`` overrides ``TAGCACHE['NEAR_CACHE']['DEFAULT']`` for this fragment.
    """
    nodelist = parser.parse(("endtagcache",))
    parser.delete_first_token()
    tokens = token.split_contents()
    if len(tokens) < 3:
        raise TemplateSyntaxError(f"{tokens[0]!r} tag requires at least 2 arguments.")
    keywords: dict[str, FilterExpression] = {}
    while len(tokens) > 3 and tokens[-1].startswith(_KEYWORDS):
        name, _, expression = tokens.pop().partition("=")
        if name in keywords:
            raise TemplateSyntaxError(f"{tokens[0]!r} tag got {name}= twice.")
        keywords[name] = parser.compile_filter(expression)
    name = tokens[2]
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "\"'":
        name = name[1:-1]
    return TagCacheNode(
        nodelist,
        parser.compile_filter(tokens[1]),
        name,  # like Django's, the fragment name cannot be a variable
        [parser.compile_filter(t) for t in tokens[3:]],
        keywords.get("tags"),
        keywords.get("using"),
        keywords.get("near"),
    )
