"""The admin: a "Purge cached data" action for models with cache tags, and the read-only purge log.

Models with cache tags get the action without admin code: ``AppConfig.ready()`` calls
:func:`install_purge_action`, which re-registers each ModelAdmin of ``admin.site`` with
:class:`PurgeCacheMixin` mixed in (``unregister`` + ``register``, the admin's documented way to
replace a ModelAdmin; nothing is patched). It covers every registered ModelAdmin, not only those
of models tagged at that moment, because ``register()`` may still give a model tags from a later
app's ``ready()``: the mixin decides per request whether the model has tags.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR
from django.db import router, transaction
from django.urls import URLPattern, path

from .models import PurgeRecord
from .ops.admin_views import NOT_RECORDED, purge_tags_view
from .ops.audit import purge
from .orm.registry import registry, tags_for

if TYPE_CHECKING:
    from django.contrib.admin import AdminSite
    from django.db.models import Model, QuerySet
    from django.http import HttpRequest, HttpResponse

    _ModelAdmin = admin.ModelAdmin[Any]
else:
    _ModelAdmin = admin.ModelAdmin

PERMISSION = "django_tagcache.purge_cache"


@admin.action(description="Purge cached data", permissions=["purge_cache"])
def purge_cached_data(modeladmin: _ModelAdmin, request: HttpRequest, queryset: QuerySet[Any]) -> None:
    """Invalidate every tag of the selected rows (``tags_for``), as one audited purge."""
    tags: set[str] = set()
    rows = 0
    for row in queryset.iterator(chunk_size=2000):
        tags |= tags_for(row)
        rows += 1
    opts = modeladmin.model._meta
    done = purge(tags, source=f"admin:action:{opts.label_lower}", user=request.user)
    if done.error is not None:
        modeladmin.message_user(
            request, f"The purge failed: the cache could not be reached ({done.error}).", messages.ERROR
        )
    else:
        name = opts.verbose_name if rows == 1 else opts.verbose_name_plural
        modeladmin.message_user(
            request,
            f"Purged the cached data of {rows} {name}: {len(tags)} tag(s), {done.removed} cache entries "
            "removed.",
            messages.SUCCESS,
        )
    if done.record is None:
        modeladmin.message_user(request, NOT_RECORDED, messages.WARNING)
    elif done.error is not None:
        modeladmin.message_user(
            request, "It is recorded in the purge log, marked as failed.", messages.WARNING
        )


class PurgeCacheMixin(_ModelAdmin):
    """Adds the "Purge cached data" action to a ModelAdmin, for users with ``django_tagcache.purge_cache``.

    Mix it in first: ``class ProductAdmin(PurgeCacheMixin, admin.ModelAdmin)``. The action shows
    only if the model has cache tags and the ModelAdmin has actions (``actions = None`` wins).
    """

    def has_purge_cache_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm(PERMISSION))

    def get_actions(self, request: HttpRequest, action_location: Any = None) -> dict[str, Any]:
        # Django 6.1 says where the actions are shown (the change list or a change form) and
        # warns about overrides without the argument; earlier versions do not pass it.
        location = () if action_location is None else (action_location,)
        actions = super().get_actions(request, *location)
        if (
            self.actions is None
            or IS_POPUP_VAR in request.GET
            or "purge_cached_data" in actions
            or not registry.is_registered(self.model)
            or not self.has_purge_cache_permission(request)
        ):
            return actions
        action = self.get_action(purge_cached_data, *location)
        if action is not None:
            # Django 6.1 returns an Action with named attributes; earlier versions a tuple.
            name = getattr(action, "name", None) or action[1]
            actions[name] = action
        return actions


def install_purge_action(site: AdminSite | None = None) -> list[type[Model]]:
    """Mix :class:`PurgeCacheMixin` into every ModelAdmin of ``site`` (default ``admin.site``).

    Called from ``AppConfig.ready()`` unless ``TAGCACHE['ADMIN_ACTION']`` is False; call it
    yourself for another AdminSite, or after registering ModelAdmins later than that. Skips
    ModelAdmins that already have the mixin or have ``actions = None``. Returns the models
    whose ModelAdmin was replaced.
    """
    site = site if site is not None else admin.site
    replaced: list[type[Model]] = []
    for model in apps.get_models():
        if model is PurgeRecord or not site.is_registered(model):
            continue
        model_admin = site.get_model_admin(model)
        if isinstance(model_admin, PurgeCacheMixin) or model_admin.actions is None:
            continue
        original = type(model_admin)
        # Same name and module: admin checks and error messages still name the project's class.
        with_purge = type(
            original.__name__,
            (PurgeCacheMixin, original),
            {
                "__module__": original.__module__,
                "__qualname__": original.__qualname__,
                "__doc__": original.__doc__,
            },
        )
        site.unregister(model)
        site.register(model, with_purge)
        replaced.append(model)
    return replaced


@admin.register(PurgeRecord)
class PurgeRecordAdmin(_ModelAdmin):
    """The purge log, read-only; superusers get a page to purge arbitrary tags from its list."""

    list_display = ("created", "source", "username", "namespace", "tag_count", "removed", "failed")
    list_filter = ("source", "cache", "namespace", "created")
    search_fields = ("source", "username", "tags")
    date_hierarchy = "created"
    fields = (
        "created",
        "source",
        "user",
        "username",
        "cache",
        "namespace",
        "tag_count",
        "removed",
        "error",
        "tags",
    )
    readonly_fields = fields
    change_list_template = "django_tagcache/admin/purgerecord_change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(boolean=True, description="failed")
    def failed(self, obj: PurgeRecord) -> bool:
        return bool(obj.error)

    def get_urls(self) -> list[URLPattern]:
        def purge_view(request: HttpRequest) -> HttpResponse:
            return self.purge_view(request)

        # Under ATOMIC_REQUESTS the purge's record would share the request's transaction, and a
        # failure after the purge would roll it back: the page commits it on its own instead.
        view = self.admin_site.admin_view(
            transaction.non_atomic_requests(using=router.db_for_write(PurgeRecord))(purge_view)
        )
        return [path("purge/", view, name="django_tagcache_purgerecord_purge"), *super().get_urls()]

    def purge_view(self, request: HttpRequest) -> HttpResponse:
        return purge_tags_view(self, request)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {**(extra_context or {}), "can_purge_tags": request.user.is_superuser}
        return super().changelist_view(request, extra)
