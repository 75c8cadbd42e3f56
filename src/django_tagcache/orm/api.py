"""The ORM side of the public API: register models, the tags of instances, invalidate by model."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from django.apps import apps
from django.db import models

from ..caching import staleness
from ..caching.api import ainvalidate_tags, invalidate_tags
from . import handlers, sqlwatch
from .registry import ModelTags, registry, tags_for

__all__ = [
    "ainvalidate_model",
    "ainvalidate_objects",
    "invalidate_model",
    "invalidate_objects",
    "register",
    "resolve_model_source",
    "staleness_rules",
    "tags_for",
]


def register(model: type[models.Model], tags: Sequence[str] = (), staleness: str | None = None) -> None:
    """Give ``model`` cache tags, as ``Meta.cache_tags`` would: for models you don't own.

    Call it from an ``AppConfig.ready()``. ``tags`` are ``str.format`` templates over the
    instance's concrete fields (``{pk}``, ``{field}``, ``{fk_id}``); the model and instance tags
    are added automatically. Errors in templates are reported by the system check
    ``django_tagcache.E004`` at start-up, never raised inside a ``save()``. ``staleness`` names
    the staleness class of the model's tags, as ``Meta.cache_staleness`` would.
    """
    if isinstance(tags, str):
        raise TypeError(f"register({model.__name__}, tags=...) takes a list of templates, not one string.")
    registry.register(model, list(tags), staleness)
    connect_models()


def connect_models() -> None:
    """Connect receivers for every installed model whose rows have tags (idempotent)."""
    for model in apps.get_models():
        if registry.is_registered(model):
            handlers.connect(model)
    sqlwatch.forget_tables()
    staleness.reset()


def staleness_rules() -> staleness.ModelRules:
    """The staleness classes the registered models give their tags (``Meta.cache_staleness``)."""
    classes: dict[str, str] = {}
    for config in registry.configs():
        if config.staleness:
            classes.setdefault(config.label, config.staleness)
            for template in config.templates:
                prefix = template.text.split("{", 1)[0]
                if prefix:
                    classes.setdefault(prefix, config.staleness)
    return staleness.ModelRules(classes, frozenset(config.label for config in registry.configs()))


def register_from_meta() -> None:
    """Register every installed model that declares ``Meta.cache_tags``."""
    for model in apps.get_models():
        # original_attrs holds what the model's Meta (or an abstract parent's) declared.
        declared = model._meta.original_attrs.get("cache_tags")
        if declared is None:
            continue
        if isinstance(declared, str) or not isinstance(declared, (list, tuple)):
            registry.register(model).errors.append(
                f"{model._meta.label}: Meta.cache_tags must be a list of tag templates, not {declared!r}."
            )
            continue
        registry.register(model, list(declared), model._meta.original_attrs.get("cache_staleness"))
    connect_models()


def resolve_model_source(source: object) -> list[str] | None:
    """Tag resolver: an instance -> its instance tag; a model class or queryset -> its model tag."""
    if isinstance(source, models.Model):
        config = _config(type(source))
        if source.pk is None:
            raise ValueError(f"An unsaved {type(source).__name__} has no instance tag yet.")
        return [f"{config.label}:{source.pk}"]
    if isinstance(source, type) and issubclass(source, models.Model):
        return [_config(source).label]
    if isinstance(source, models.QuerySet):
        return [_config(source.model).label]
    return None


def _config(model: type[models.Model]) -> ModelTags:
    chain = registry.chain(model)
    if not chain:
        raise ValueError(
            f"{model._meta.label} has no cache tags, so nothing would invalidate entries tagged with it: "
            "add Meta.cache_tags (an empty list is enough) or call django_tagcache.register()."
        )
    return chain[0]


def invalidate_model(*models_: type[models.Model], source: str | None = None) -> int:
    """Invalidate the model tag of each model (for raw SQL and other writes the ORM cannot see)."""
    return invalidate_tags(*models_, source=source)


async def ainvalidate_model(*models_: type[models.Model], source: str | None = None) -> int:
    """:func:`invalidate_model`, awaited on ``redis.asyncio``."""
    return await ainvalidate_tags(*models_, source=source)


def invalidate_objects(objects: Iterable[models.Model], source: str | None = None) -> int:
    """Invalidate every tag of each object, as saving it would (e.g. after ``bulk_create``)."""
    return invalidate_tags(*_object_tags(objects), source=source)


async def ainvalidate_objects(objects: Iterable[models.Model], source: str | None = None) -> int:
    """:func:`invalidate_objects`, awaited on ``redis.asyncio`` (reads fields, sends no query)."""
    return await ainvalidate_tags(*_object_tags(objects), source=source)


def _object_tags(objects: Iterable[models.Model]) -> set[str]:
    tags: set[str] = set()
    for obj in objects:
        tags |= tags_for(obj)
    return tags
