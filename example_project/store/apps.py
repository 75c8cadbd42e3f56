"""Wiring of the shop's app: tags for a model it does not own, and the panel's receiver."""

from __future__ import annotations

from django.apps import AppConfig


class StoreConfig(AppConfig):
    name = "example_project.store"
    verbose_name = "Shop"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model

        from django_tagcache import register
        from django_tagcache.signals import tags_invalidated

        from . import panel

        # A seller's page shows its account's name and e-mail: changing the user in the admin
        # must invalidate it, so the user model (Django's, not ours) gets a tag too.
        register(get_user_model(), tags=["user:{pk}"])
        tags_invalidated.connect(panel.record_invalidation, dispatch_uid="store.panel.record_invalidation")
