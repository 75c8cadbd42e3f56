"""``manage.py tagcache_invalidate``: purge tags, a model's tag, or the tags of some rows; audited."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from ...caching import reach
from ...caching.tags import normalize_tags
from ...ops.audit import acting_as, os_username, purge_tags
from ...orm.api import resolve_model_source
from ...orm.registry import registry, tags_for
from ..base import TagCacheCommand

if TYPE_CHECKING:
    from django.db import models

SOURCE = "command:tagcache_invalidate"


class Command(TagCacheCommand):
    help = (
        "Invalidate cache tags and print how many entries were removed. Give TAGs, or --model "
        "app_label.ModelName for its model tag, with --pk for the instance tags of some rows "
        "(--all-tags: every tag of those rows). Each purge is recorded in the audit log."
    )

    def add_command_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("tags", nargs="*", metavar="TAG", help="Tags to invalidate.")
        parser.add_argument("--model", metavar="APP_LABEL.MODEL", help="A model with cache tags.")
        parser.add_argument(
            "--pk", action="append", default=[], metavar="PK", help="A primary key of --model (repeatable)."
        )
        parser.add_argument(
            "--all-tags",
            action="store_true",
            help="With --pk: load the rows and invalidate every tag they have (tags_for), not just their "
            "instance tags.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Print the tags; invalidate nothing.")

    def run(self, alias: str, options: dict[str, Any]) -> None:
        tags = self.tags(options)
        # Without --cache, every alias model writes invalidate, as a save of the rows would.
        pinned = alias if options["cache"] else None
        reached = (alias,) if pinned else reach.invalidated_aliases()
        removed = 0
        if not options["dry_run"]:
            with acting_as(username=os_username()):
                removed = purge_tags(tags, source=SOURCE, alias=pinned)
        verb = "Would invalidate" if options["dry_run"] else "Invalidated"
        where = f"cache {alias!r}" if len(reached) == 1 else "caches " + ", ".join(map(repr, reached))
        lines = [f"{verb} {len(tags)} tag(s) on {where}" + ("." if options["dry_run"] else ":")]
        if options["verbosity"] > 1 or options["dry_run"]:
            lines += [f"  {tag}" for tag in tags]
        if not options["dry_run"]:
            lines.append(f"{removed} cache {'entry' if removed == 1 else 'entries'} removed.")
        data = {"cache": alias, "tags": list(tags), "removed": removed, "dry_run": options["dry_run"]}
        self.emit(options, data, lines)

    def tags(self, options: dict[str, Any]) -> tuple[str, ...]:
        given, label, pks = options["tags"], options["model"], options["pk"]
        if given and label:
            raise CommandError("Give TAGs or --model, not both.")
        if not label and (pks or options["all_tags"]):
            raise CommandError("--pk and --all-tags need --model.")
        if options["all_tags"] and not pks:
            raise CommandError("--all-tags needs at least one --pk (it renders the tags of those rows).")
        if not given and not label:
            raise CommandError("Give at least one TAG, or --model app_label.ModelName.")
        try:
            return normalize_tags(list(given) if given else self.model_tags(label, pks, options["all_tags"]))
        except (TypeError, ValueError) as exc:
            raise CommandError(str(exc)) from exc

    def model_tags(self, label: str, raw_pks: list[str], all_tags: bool) -> list[str]:
        app_label, dot, name = label.partition(".")
        try:
            if not (app_label and dot and name) or "." in name:
                raise LookupError("give it as app_label.ModelName")
            model = apps.get_model(app_label, name)
        except LookupError as exc:
            tagged = ", ".join(sorted(m._meta.label for m in apps.get_models() if registry.chain(m)))
            reason = str(exc).rstrip(".")  # Django's LookupError messages end with one
            raise CommandError(
                f"Unknown model {label!r}: {reason}. Models with cache tags: {tagged or 'none'}."
            ) from exc
        chain = registry.chain(model)
        if not chain:
            raise CommandError(
                f"{model._meta.label} has no cache tags (no Meta.cache_tags, not registered with "
                "django_tagcache.register()), so no cache entry is tagged with it."
            )
        if not raw_pks:
            return resolve_model_source(model) or []
        pk_field = model._meta.pk
        assert pk_field is not None  # every concrete model has one
        try:
            pks = list(dict.fromkeys(pk_field.to_python(raw) for raw in raw_pks))
        except ValidationError as exc:
            raise CommandError(f"Bad --pk for {model._meta.label}: {'; '.join(exc.messages)}") from exc
        if not all_tags:
            # A row is also the row of the model's registered multi-table children (the same
            # primary key): a save of it invalidates their instance tags too, and so does this.
            configs = [*chain, *registry.descendants(model)]
            return [f"{config.label}:{pk}" for pk in pks for config in configs]
        return self.row_tags(model, pks)

    def row_tags(self, model: type[models.Model], pks: list[Any]) -> list[str]:
        # The base manager: a default manager that hides rows (soft deletion) must not hide them here.
        rows = {row.pk: row for row in model._base_manager.filter(pk__in=pks)}
        missing = [str(pk) for pk in pks if pk not in rows]
        if missing:
            raise CommandError(
                f"No {model._meta.label} row with pk {', '.join(missing)}: the tags of a missing row cannot "
                "be rendered (leave out --all-tags to invalidate its instance tag)."
            )
        return sorted({tag for row in rows.values() for tag in tags_for(row)})
