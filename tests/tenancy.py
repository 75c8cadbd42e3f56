"""The namespace callable of the namespace tests: the current tenant, from a context variable."""

from __future__ import annotations

from contextvars import ContextVar

current_tenant: ContextVar[str | None] = ContextVar("current_tenant", default=None)


def tenant() -> str | None:
    return current_tenant.get()
