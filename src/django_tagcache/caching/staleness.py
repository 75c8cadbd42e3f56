"""Staleness budgets: how long an invalidated entry may still be served while it is recomputed.

A tag's class comes from the longest prefix in ``TAGCACHE['STALENESS']['TAGS']`` (prefix -> class
name) that matches it; failing that, from the longest matching rule of the models
(``Meta.cache_staleness`` or ``register(..., staleness=...)`` give the class to the model's tags
and its templates' prefixes); else ``DEFAULT``. A class with budget 0 (``critical``) deletes entries at once.

The models' rules come from the ORM integration, which hands them in with :func:`use_model_rules`
(``AppConfig.ready()``): this module knows tags, not models.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from ..conf import conf


class ModelRules(NamedTuple):
    """The staleness rules of the registered models."""

    #: Tag prefix (a model's label, or the fixed start of one of its templates) -> class name.
    classes: dict[str, str]
    #: Every registered model's label: such a prefix covers only its model and instance tags.
    labels: frozenset[str]


def _no_models() -> ModelRules:
    return ModelRules({}, frozenset())


# Where the models' rules come from; set once by AppConfig.ready(), like the tag resolvers.
_model_rules: Callable[[], ModelRules] = _no_models
# Per process: budgets asked on every invalidation, computed once per tag. Cleared by reset().
_cache: dict[str, int] = {}
_rules_cache: list[tuple[str, str]] = []
_labels_cache: frozenset[str] | None = None


def use_model_rules(source: Callable[[], ModelRules]) -> None:
    """Take the models' rules from ``source`` (called again after each :func:`reset`)."""
    global _model_rules
    _model_rules = source
    reset()


def reset() -> None:
    """Forget computed budgets (settings or registrations changed)."""
    global _labels_cache
    _cache.clear()
    _rules_cache.clear()
    _labels_cache = None


def _rules() -> list[tuple[str, str]]:
    """(prefix, class) pairs in the order they are tried: TAGS longest first, then the models'."""
    if _rules_cache:
        return _rules_cache
    for rules in (conf.STALENESS.tags, _model_rules().classes):
        _rules_cache.extend(sorted(rules.items(), key=lambda rule: len(rule[0]), reverse=True))
    return _rules_cache


def _matches(prefix: str, tag: str) -> bool:
    """A rule's prefix covers ``tag``; a model's label covers its model and instance tags only.

    ``shop.item`` must not reach ``shop.itemprice``, another model's tags.
    """
    if not tag.startswith(prefix):
        return False
    return prefix not in _labels() or len(tag) == len(prefix) or tag[len(prefix)] == ":"


def _labels() -> frozenset[str]:
    global _labels_cache
    if _labels_cache is None:
        _labels_cache = _model_rules().labels
    return _labels_cache


def class_of(tag: str) -> str:
    """The name of ``tag``'s staleness class (an unknown class name counts as the default one)."""
    settings = conf.STALENESS
    name = next((cls for prefix, cls in _rules() if _matches(prefix, tag)), settings.default)
    return name if name in settings.classes else settings.default


def budget_ms(tag: str) -> int:
    """The staleness budget of ``tag``, in milliseconds (0: delete its entries at once)."""
    budget = _cache.get(tag)
    if budget is None:
        # An unknown class (reported by check E005) counts as the default one.
        budget = int(conf.STALENESS.classes[class_of(tag)] * 1000)
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[tag] = budget
    return budget
