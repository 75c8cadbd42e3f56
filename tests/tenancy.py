"""The namespace callable of the namespace tests (the tenant, from a context variable), and its middleware."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

from django.http import HttpRequest, HttpResponseBase

current_tenant: ContextVar[str | None] = ContextVar("current_tenant", default=None)


def tenant() -> str | None:
    return current_tenant.get()


class TenantMiddleware:
    """Sets the tenant from the X-Tenant request header for the request, and resets it after."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        token = current_tenant.set(request.headers.get("X-Tenant"))
        try:
            return self.get_response(request)
        finally:
            current_tenant.reset(token)
