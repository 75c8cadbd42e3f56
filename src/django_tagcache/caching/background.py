"""One background thread for the auditor's work, fed by a bounded queue that drops when full.

Requests only ever hand work over (:func:`submit`, which never blocks); the thread runs it, each
task when it falls due, and closes the database connections it opened after each one (they are
the thread's own: a task never sees a request's open transaction). A task that raises is logged,
never re-raised. The thread starts with the first task, and again in a forked child.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable

from django.db import connections

logger = logging.getLogger("django_tagcache")

# Process-global by nature: one queue and one thread per process. Reset after a fork (the
# child has no thread) and by tests through wait().
_cond = threading.Condition()
_heap: list[tuple[float, int, Callable[[], None]]] = []
_order = itertools.count()
_running = 0
_thread: threading.Thread | None = None


def submit(task: Callable[[], None], *, limit: int, delay: float = 0.0) -> bool:
    """Queue ``task`` to run in ``delay`` seconds; False (and nothing queued) if ``limit`` are waiting."""
    global _thread
    with _cond:
        if len(_heap) >= limit:
            return False
        heapq.heappush(_heap, (time.monotonic() + delay, next(_order), task))
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_loop, name="django-tagcache-audit", daemon=True)
            _thread.start()
        _cond.notify()
    return True


def pending() -> int:
    """Tasks waiting or running."""
    with _cond:
        return len(_heap) + _running


def wait(timeout: float = 10.0) -> bool:
    """Block until no task waits or runs (delayed ones included); False on timeout. For tests and commands."""
    with _cond:
        return _cond.wait_for(lambda: not _heap and not _running, timeout)


def _next() -> Callable[[], None]:
    global _running
    with _cond:
        while True:
            if not _heap:
                _cond.wait()
                continue
            delay = _heap[0][0] - time.monotonic()
            if delay > 0:
                _cond.wait(delay)
                continue
            _running += 1
            return heapq.heappop(_heap)[2]


def _loop() -> None:
    global _running
    while True:
        task = _next()
        try:
            task()
        except Exception:
            logger.exception("django-tagcache: a background audit task failed")
        finally:
            try:
                connections.close_all()  # this thread's connections only: they are per thread
            except Exception:
                logger.exception("django-tagcache: the audit thread could not close its connections")
            with _cond:
                _running -= 1
                _cond.notify_all()


def _after_fork() -> None:
    global _cond, _thread, _running
    _cond = threading.Condition()
    _heap.clear()
    _running = 0
    _thread = None


os.register_at_fork(after_in_child=_after_fork)
