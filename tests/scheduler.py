"""A seeded scheduler: actor threads run one at a time, and switch only at controlled points.

Each actor is a real thread (its own database connection, real Redis calls). An actor runs
until it reaches a point (:meth:`Scheduler.point`: every Redis round trip the tag store makes,
plus the points an actor names itself, such as "loaded the row"); there it stops, and the
scheduler picks, with its seeded random generator, which waiting actor goes next. The same seed
gives the same interleaving: no sleeps, no timing.

The choice follows probabilistic concurrency testing (PCT): actors get random priorities, the
highest-priority waiting actor runs, and at a few random steps the running actor drops below
all others. Races that need one actor to stop at a point while another runs a whole sequence
(a miss, then a commit and a drained invalidation, then the write) come up often, where a fair
coin at every point would almost never give one actor that many turns in a row.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from django.db import connections

T = TypeVar("T")

#: How long the scheduler waits for an actor to reach its next point: only a deadlock takes it.
STUCK_AFTER = 30.0


class Stuck(AssertionError):
    """An actor neither reached a point nor finished: something blocked outside the scheduler."""


class Scheduler:
    """Runs actors one at a time and picks the next one at every point."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.steps = 0
        self._cv = threading.Condition()
        self._actors: set[threading.Thread] = set()
        self._waiting: list[threading.Thread] = []
        self._done: set[threading.Thread] = set()
        self._turn: threading.Thread | None = None
        self.errors: list[BaseException] = []
        self._priority: dict[threading.Thread, float] = {}
        # The steps at which the running actor drops to the lowest priority (PCT's change points).
        self._changes = {rng.randrange(1, 12) for _ in range(rng.randint(1, 3))}

    def point(self) -> None:
        """Let the scheduler pick who runs next (a no-op outside an actor)."""
        me = threading.current_thread()
        if me not in self._actors:
            return
        with self._cv:
            self._waiting.append(me)
            self._turn = None
            self._cv.notify_all()
            if not self._cv.wait_for(lambda: self._turn is me, timeout=STUCK_AFTER):
                raise Stuck(f"{me.name} was never scheduled again")

    def run(self, actors: list[tuple[str, Callable[[], object]]]) -> None:
        """Run ``actors`` (name, body) to the end, interleaved; re-raises the first error of one."""
        threads = [threading.Thread(target=self._body, args=(body,), name=name) for name, body in actors]
        self._actors = set(threads)
        self._priority = {thread: self.rng.random() for thread in threads}
        for thread in threads:
            thread.start()
        with self._cv:
            while True:
                ready = self._cv.wait_for(
                    lambda: self._turn is None and len(self._waiting) + len(self._done) == len(threads),
                    timeout=STUCK_AFTER,
                )
                if not ready:
                    raise Stuck(f"an actor blocked outside the scheduler after {self.steps} steps")
                if not self._waiting:
                    break
                chosen = max(self._waiting, key=lambda t: self._priority[t])
                if self.steps in self._changes:
                    self._priority[chosen] = min(self._priority.values()) - 1
                    chosen = max(self._waiting, key=lambda t: self._priority[t])
                self._waiting.remove(chosen)
                self._turn = chosen
                self.steps += 1
                self._cv.notify_all()
        for thread in threads:
            thread.join()
        if self.errors:
            raise self.errors[0]

    def _body(self, body: Callable[[], object]) -> None:
        me = threading.current_thread()
        try:
            self.point()  # wait for a first turn
            body()
        except BaseException as exc:  # handed to run(), which raises it in the test
            self.errors.append(exc)
        finally:
            connections.close_all()
            with self._cv:
                self._done.add(me)
                self._turn = None
                self._cv.notify_all()


@contextmanager
def hooked(store: Any, scheduler: Scheduler) -> Iterator[None]:
    """Within the block, every Redis call ``store`` makes is a point of ``scheduler``."""
    original: Callable[[Callable[[], Any]], Any] = store._call

    def call(func: Callable[[], T]) -> T:
        scheduler.point()
        result: T = original(func)
        return result

    store._call = call
    try:
        yield
    finally:
        del store._call
