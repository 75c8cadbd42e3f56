"""Models -> tag templates: ``Meta.cache_tags``, ``register()``, and the tags of an instance.

Every registered model gets its model tag ``<app_label>.<model_name>`` and its instance tag
``<app_label>.<model_name>:<pk>``, plus its templates rendered over the instance. A proxy model
shares its concrete model's configuration (templates declared on a proxy add to it: they
describe the same rows). A multi-table child carries the tags of its registered parents too.
"""

from __future__ import annotations

import hashlib
import logging
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db.models import options

if TYPE_CHECKING:
    from django.db import models

logger = logging.getLogger("django_tagcache")
META_OPTION = "cache_tags"
META_OPTIONS = (META_OPTION, "cache_staleness")
# Likely slips of the two options: accepted by ``class Meta`` too, so that the system check
# django_tagcache.E006 can name the option meant, instead of Django's bare TypeError at import.
MISSPELLINGS = {
    "cache_tag": META_OPTION,
    "cachetags": META_OPTION,
    "cachetag": META_OPTION,
    "cache_tag_templates": META_OPTION,
    "cache_stalenes": "cache_staleness",
    "cachestaleness": "cache_staleness",
    "cache_stale": "cache_staleness",
}
_FORMATTER = string.Formatter()
# Characters a rendered value may not carry into a tag: they are percent-encoded instead.
_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f-\x9f%]")
_SPACE = re.compile(r"[\s\x00-\x1f\x7f-\x9f]")


def enable_meta_option() -> None:
    """Let ``class Meta`` accept ``cache_tags`` and ``cache_staleness`` (and their usual misspellings).

    Django rejects unknown Meta attributes when a model class is created, so the names must be
    in ``django.db.models.options.DEFAULT_NAMES`` before any model module is imported. The app
    config calls this when Django creates it, which is before models are imported. (Removing the
    option from ``Meta`` before Django reads it would need a metaclass, so a base class on every
    tagged model, which this app promises not to require.)
    """
    missing = tuple(name for name in (*META_OPTIONS, *MISSPELLINGS) if name not in options.DEFAULT_NAMES)
    if missing:
        options.DEFAULT_NAMES = (*options.DEFAULT_NAMES, *missing)


def misspelt_options(model: type[models.Model]) -> list[str]:
    """What is wrong with the Meta options ``model`` declared under a misspelt name (check E006)."""
    declared = model._meta.original_attrs
    return [
        f"{model._meta.label}: Meta.{name} is not an option of django-tagcache; did you mean {meant}?"
        for name, meant in MISSPELLINGS.items()
        if name in declared
    ]


class TemplateError(ValueError):
    """A tag template that cannot be rendered for its model."""


@dataclass(frozen=True)
class TagTemplate:
    """One ``str.format`` template and the instance attributes it reads."""

    text: str
    names: tuple[str, ...]

    @classmethod
    def parse(cls, model: type[models.Model], text: object) -> TagTemplate:
        if not isinstance(text, str) or not text:
            raise TemplateError(
                f"{model._meta.label}: a cache tag template must be a non-empty string, not {text!r}."
            )
        allowed = {"pk"} | {f.attname for f in model._meta.concrete_fields}
        relations = {f.name: f.attname for f in model._meta.concrete_fields if f.is_relation}
        names: list[str] = []
        try:
            parsed = list(_FORMATTER.parse(text))
        except ValueError as exc:
            raise TemplateError(
                f"{model._meta.label}: cache tag template {text!r} is malformed: {exc}."
            ) from exc
        for literal, name, _spec, _conversion in parsed:
            if _SPACE.search(literal):
                raise TemplateError(
                    f"{model._meta.label}: cache tag template {text!r} has whitespace or a control character "
                    "outside its fields, and tags cannot hold whitespace; use ':' or '-' to separate words."
                )
            if name is None:
                continue
            if name in relations:
                raise TemplateError(
                    f"{model._meta.label}: cache tag template {text!r} uses {{{name}}}, which would load the "
                    f"related row on every save; use {{{relations[name]}}}."
                )
            if name not in allowed:
                raise TemplateError(
                    f"{model._meta.label}: cache tag template {text!r} uses {{{name}}}, which is not a "
                    f"concrete field of the model; use pk or one of: {', '.join(sorted(allowed - {'pk'}))}."
                )
            names.append(name)
        return cls(text, tuple(dict.fromkeys(names)))

    def render(self, values: dict[str, Any]) -> str | None:
        """The tag for these values, or None when one of them is None (a null foreign key).

        Never raises: a save must not fail because of a tag. Values holding whitespace, control
        characters or ``%`` are percent-encoded; a template whose format spec does not fit its
        value (``{name:d}`` on text) is logged and renders nothing.
        """
        safe: dict[str, Any] = {}
        for name in self.names:
            value = values.get(name)
            if value is None:
                return None
            if isinstance(value, str) and _UNSAFE.search(value):
                value = _UNSAFE.sub(lambda m: f"%{ord(m.group()):02X}", value)
            safe[name] = value
        try:
            tag = self.text.format(**safe)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            logger.error("django-tagcache: tag template %r cannot render %r: %s", self.text, safe, exc)
            return None
        if _SPACE.search(tag):  # a non-string value whose text has spaces (parse() refuses them in literals)
            tag = _SPACE.sub(lambda m: f"%{ord(m.group()):02X}", tag)
        if len(tag) > 200:  # keep far below MAX_TAG_LENGTH, deterministically
            tag = tag[:150] + "~" + hashlib.sha1(tag.encode(), usedforsecurity=False).hexdigest()[:16]
        return tag


@dataclass
class ModelTags:
    """The tag configuration of one concrete model."""

    model: type[models.Model]
    templates: list[TagTemplate] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    staleness: str | None = None

    @property
    def label(self) -> str:
        return self.model._meta.label_lower

    @property
    def names(self) -> set[str]:
        return {name for template in self.templates for name in template.names}

    def add_templates(self, model: type[models.Model], texts: Iterable[object]) -> None:
        for text in texts:
            try:
                template = TagTemplate.parse(model, text)
            except TemplateError as exc:
                self.errors.append(str(exc))
            else:
                if template not in self.templates:
                    self.templates.append(template)


class Registry:
    """Which models have cache tags. One per process (see ``registry``); tests may build their own."""

    def __init__(self) -> None:
        self._configs: dict[type[models.Model], ModelTags] = {}
        # Per-model answers, asked on every write: computed once, dropped on any registration.
        self._chains: dict[type[models.Model], tuple[ModelTags, ...]] = {}
        self._names: dict[type[models.Model], tuple[str, ...]] = {}
        self._children: dict[type[models.Model], tuple[str, ...]] = {}
        # (model, the values, in snapshot_names order) -> the tags they render: a save renders
        # the same row's tags up to three times (the row as stored, as expected, as saved).
        self._rendered: dict[tuple[Any, ...], frozenset[str]] = {}

    def register(
        self, model: type[models.Model], templates: Sequence[object] = (), staleness: str | None = None
    ) -> ModelTags:
        concrete = model._meta.concrete_model or model
        config = self._configs.get(concrete)
        if config is None:
            config = self._configs[concrete] = ModelTags(concrete)
        config.add_templates(model, templates)
        if staleness is not None:
            config.staleness = staleness
        self._forget()
        return config

    def unregister(self, model: type[models.Model]) -> None:
        self._configs.pop(model._meta.concrete_model or model, None)
        self._forget()

    def _forget(self) -> None:
        self._chains.clear()
        self._names.clear()
        self._children.clear()
        self._rendered.clear()

    def configs(self) -> list[ModelTags]:
        return list(self._configs.values())

    def chain(self, model: type[models.Model]) -> tuple[ModelTags, ...]:
        """The configurations that apply to rows of ``model``: its own and its registered parents'."""
        chain = self._chains.get(model)
        if chain is None:
            concrete = model._meta.concrete_model or model
            candidates = [concrete, *concrete._meta.get_parent_list()]
            chain = self._chains[model] = tuple(self._configs[m] for m in candidates if m in self._configs)
        return chain

    def is_registered(self, model: type[models.Model]) -> bool:
        return bool(self.chain(model))

    def descendants(self, model: type[models.Model]) -> list[ModelTags]:
        """Registered multi-table children of ``model`` (their rows share its primary key)."""
        concrete = model._meta.concrete_model or model
        return [
            c for m, c in self._configs.items() if m is not concrete and concrete in m._meta.get_parent_list()
        ]

    def snapshot_names(self, model: type[models.Model]) -> tuple[str, ...]:
        """Attributes whose loaded values give the row's tags before a change."""
        names = self._names.get(model)
        if names is None:
            found = {"pk"}
            for config in self.chain(model):
                found |= config.names
            names = self._names[model] = tuple(sorted(found))
        return names

    def tags(self, model: type[models.Model], values: dict[str, Any]) -> set[str]:
        """Tags of a row of ``model`` whose attributes have ``values`` (``pk`` included)."""
        key = _render_key(model, values, self.snapshot_names(model))
        if key is None:
            return self._render(model, values)
        rendered = self._rendered.get(key)
        if rendered is None:
            if len(self._rendered) >= _RENDERED_MAX:
                self._rendered.clear()
            rendered = self._rendered[key] = frozenset(self._render(model, values))
        return set(rendered)  # callers add to it

    def _render(self, model: type[models.Model], values: dict[str, Any]) -> set[str]:
        tags: set[str] = set()
        pk = values.get("pk")
        for config in self.chain(model):
            tags.add(config.label)
            if pk is not None:
                tags.add(f"{config.label}:{pk}")
            for template in config.templates:
                tag = template.render(values)
                if tag is not None:
                    tags.add(tag)
        if pk is not None:
            # A parent row saved on its own may be a child's row too: same primary key.
            children = self._children.get(model)
            if children is None:
                children = self._children[model] = tuple(child.label for child in self.descendants(model))
            tags.update(f"{label}:{pk}" for label in children)
        return tags


# Rendered tag sets kept per process; past this many, the memo starts again empty.
_RENDERED_MAX = 4096
# Only int, str and None values make a memo key: their equal values always render the same
# text, where 1 == 1.0 == True, and equal Decimals or datetimes can print differently.


def _render_key(
    model: type[models.Model], values: dict[str, Any], names: tuple[str, ...]
) -> tuple[Any, ...] | None:
    """The memo key of ``values`` for :meth:`Registry.tags`, or None where it cannot have one
    (``values`` not holding exactly ``names``, in that order, or a value of another type or a
    long text)."""
    if tuple(values) != names:  # values_of() and storedrow.read() keep the order of names
        return None
    for value in values.values():
        kind = type(value)
        if kind is str:
            if len(value) > 200:  # kept small: the memo holds its keys
                return None
        elif kind is not int and value is not None:  # bool is not int here
            return None
    return (model, *values.values())


#: The process-wide registry filled from ``Meta.cache_tags`` and :func:`register`.
registry = Registry()


def throughs(model: type[models.Model]) -> list[type[models.Model]]:
    """Intermediate models of every many-to-many relation of ``model``, from either side."""
    found = [f.remote_field.through for f in model._meta.many_to_many]
    found += [rel.through for rel in model._meta.related_objects if rel.many_to_many]  # type: ignore[attr-defined]
    return [through for through in found if isinstance(through, type)]


def values_of(instance: models.Model, names: Iterable[str]) -> dict[str, Any]:
    """Current values of ``names`` on ``instance``, skipping deferred fields (never a query)."""
    loaded = instance.__dict__
    values: dict[str, Any] = {}
    for name in names:
        if name == "pk":
            values["pk"] = instance.pk
        elif name in loaded:
            values[name] = loaded[name]
    return values


def tags_for(obj: models.Model) -> set[str]:
    """Every tag of a model instance: model tag, instance tag and rendered templates."""
    model = type(obj)
    return registry.tags(model, values_of(obj, registry.snapshot_names(model)))
