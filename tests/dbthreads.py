"""Running database work in a thread of its own, as another editor's process would."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connections


def in_another_thread(work: Callable[[], None]) -> None:
    """Run ``work`` in a new thread, with connections of its own (closed after), and wait for it."""

    def run() -> None:
        try:
            work()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
