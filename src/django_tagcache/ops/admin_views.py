"""The superuser's purge page in the admin: tags -> confirmation -> purge -> the purge log.

Reached from the purge log's list ("Purge tags..."). Three steps, each a CSRF-protected POST of
the admin: the form, a confirmation page that lists the tags, and the purge itself, which is
recorded in the log like every other purge.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.cache import caches
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from ..backends import backend_kind
from ..caching import reach
from ..caching.tags import normalize_tags
from ..conf import conf
from .audit import purge
from .records import PurgeRecord

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

SOURCE = "admin:purge_page"
#: Said when the database refused the audit record of a purge (the error is in the server log).
NOT_RECORDED = "The purge could not be recorded in the purge log (see the server log)."
#: Said after a purge that failed: it may have invalidated part of its tags.
RECORDED_AS_FAILED = (
    "The attempt is recorded in the purge log, marked as failed: part of it may have been done."
)
MAX_TAGS = 1000


def _cache_choices() -> list[tuple[str, str]]:
    # First, and chosen unless changed: every alias a save of the rows would invalidate.
    reached = reach.invalidated_aliases()
    every = [("", f"All that model writes invalidate ({', '.join(reached)})")] if len(reached) > 1 else []
    return every + [
        (alias, alias) for alias in sorted(settings.CACHES) if backend_kind(caches[alias]) is not None
    ]


class PurgeTagsForm(forms.Form):
    tags = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 8, "cols": 60}),
        help_text=f"Tags separated by spaces or new lines; at most {MAX_TAGS}.",
    )
    cache = forms.ChoiceField(required=False, help_text="The cache whose entries are purged.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["cache"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = _cache_choices()
        field.initial = field.choices[0][0] if field.choices else conf.CACHE

    def clean_tags(self) -> tuple[str, ...]:
        given = self.cleaned_data["tags"].split()
        if not given:
            raise forms.ValidationError("Give at least one tag.")
        if len(set(given)) > MAX_TAGS:
            raise forms.ValidationError(
                f"At most {MAX_TAGS} tags at a time; use tagcache_invalidate for more."
            )
        try:
            return normalize_tags(given)
        except (TypeError, ValueError) as exc:
            raise forms.ValidationError(str(exc)) from exc


def purge_tags_view(model_admin: ModelAdmin[Any], request: HttpRequest) -> HttpResponse:
    """Superusers only. GET: the form; POST: the confirmation; POST with ``confirm=yes``: the purge."""
    if not request.user.is_superuser:
        raise PermissionDenied
    opts = PurgeRecord._meta
    context: dict[str, Any] = {
        **model_admin.admin_site.each_context(request),
        "opts": opts,
        "title": "Purge cache tags",
    }
    form = PurgeTagsForm(request.POST if request.method == "POST" else None)
    if request.method != "POST" or not form.is_valid():
        return TemplateResponse(request, "django_tagcache/admin/purge_form.html", {**context, "form": form})
    tags: tuple[str, ...] = form.cleaned_data["tags"]
    chosen: str = form.cleaned_data["cache"]
    alias = chosen or ", ".join(reach.invalidated_aliases())  # as shown; "" purges every one
    if request.POST.get("confirm") != "yes":
        context.update(
            form=form,
            tags=tags,
            cache=alias,
            cache_choice=chosen,
            tags_text=" ".join(tags),
            title="Confirm the purge",
        )
        return TemplateResponse(request, "django_tagcache/admin/purge_confirm.html", context)
    done = purge(tags, source=SOURCE, user=request.user, alias=chosen or None)
    if done.error is not None:
        messages.error(request, f"The purge failed: the cache could not be reached ({done.error}).")
        messages.warning(
            request,
            NOT_RECORDED if done.record is None else RECORDED_AS_FAILED,
        )
        return TemplateResponse(request, "django_tagcache/admin/purge_form.html", {**context, "form": form})
    messages.success(
        request, f"Purged {len(tags)} tag(s) on cache {alias!r}: {done.removed} cache entries removed."
    )
    if done.record is None:
        messages.warning(request, NOT_RECORDED)
    return HttpResponseRedirect(
        reverse(f"{model_admin.admin_site.name}:{opts.app_label}_{opts.model_name}_changelist")
    )
