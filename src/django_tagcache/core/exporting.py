"""One Prometheus collector registered at most once: the install/uninstall pair of each exporter.

prometheus-client is optional and imported only when a collector is installed. No Django in here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry


class Registration:
    """Registers the collector ``make()`` builds with a registry, once, until :meth:`uninstall`."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._installed: tuple[Any, CollectorRegistry] | None = None

    def install(self, registry: CollectorRegistry | None = None) -> bool:
        """Register (with prometheus-client's default registry unless given); idempotent.
        False, and nothing done, when prometheus-client is not installed."""
        try:
            from prometheus_client import REGISTRY
        except ImportError:
            return False
        if self._installed is None:
            collector, target = self._make(), registry or REGISTRY
            target.register(collector)
            self._installed = (collector, target)
        return True

    def uninstall(self) -> None:
        """Unregister what :meth:`install` registered, if anything."""
        if self._installed is not None:
            collector, target = self._installed
            target.unregister(collector)
            self._installed = None
