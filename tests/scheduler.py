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
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TypeVar

from django.db import connections

from django_tagcache.core.memory import MemoryStore
from django_tagcache.orm import storedrow

# A save's read of the row it overwrites runs in one transaction with its UPDATE, holding the
# row (SELECT ... FOR UPDATE, or SQLite's BEGIN IMMEDIATE). An actor paused there would make
# every other writer of that row wait on a database lock, outside any switch point, which this
# scheduler cannot tell from a deadlock. So none is taken there.
_STORED_ROW_READ = storedrow.read.__code__

T = TypeVar("T")

#: How long the scheduler waits for an actor to reach its next point: only a deadlock takes it.
STUCK_AFTER = 30.0


class Stuck(AssertionError):
    """An actor neither reached a point nor finished: something blocked outside the scheduler."""


class Scheduler:
    """Runs actors one at a time and picks the next one at every point."""

    def __init__(
        self,
        rng: random.Random,
        *,
        select_points: bool = False,
        on_step: Callable[[Scheduler], None] | None = None,
    ) -> None:
        self.rng = rng
        self.steps = 0
        #: Statements other than SELECT the actors ran so far (writes, savepoints, SET ...).
        self.writes = 0
        #: Called in the scheduler's thread before each choice, while every actor waits at a
        #: point or is done (no write transaction is open then: none spans a point).
        self.on_step = on_step
        #: Also switch right after each SELECT of the shop's products runs, before its rows are
        #: built into instances (outside atomic blocks, where no lock is held).
        self.select_points = select_points
        #: A clock that moves only when an actor sleeps (see :func:`virtual_time`).
        self.clock = 0.0
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

    def step_aside(self) -> None:
        """Let every other actor that waits go first: a change point of PCT that the running actor
        takes itself, standing for a long computation or a wait for another actor's work."""
        me = threading.current_thread()
        if me not in self._actors:
            return
        with self._cv:
            self._priority[me] = min(self._priority.values()) - 1
        self.point()

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
                    raise Stuck(
                        f"an actor blocked outside the scheduler after {self.steps} steps (waiting: "
                        f"{[t.name for t in self._waiting]}, done: {[t.name for t in self._done]}, "
                        f"running: {self._turn and self._turn.name})"
                    )
                if not self._waiting:
                    break
                if self.on_step is not None:
                    self.on_step(self)
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
            with connections["default"].execute_wrapper(self._after_statement):
                body()
        except BaseException as exc:  # handed to run(), which raises it in the test
            self.errors.append(exc)
        finally:
            connections.close_all()
            with self._cv:
                self._done.add(me)
                self._turn = None
                self._cv.notify_all()

    def _after_statement(
        self, execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]
    ) -> Any:
        """An execute wrapper: counts the writes, and takes a point between a SELECT's snapshot and
        the instances built from it (with ``select_points``)."""
        result = execute(sql, params, many, context)
        select = sql.lstrip()[:6].upper() == "SELECT"
        if not select:
            self.writes += 1
        connection = context["connection"]
        if (
            self.select_points
            and select
            and "shop_product" in sql
            and "FOR UPDATE" not in sql.upper()
            and not connection.in_atomic_block
            and not _reading_stored_row()
        ):
            cursor = context["cursor"]
            raw = getattr(cursor, "cursor", cursor)
            if getattr(raw, "name", None) is None:  # never a server-side cursor
                _buffer(raw)  # SQLite holds a lock on a table until its rows are all read
                self.point()
        return result

    def sleep(self, seconds: float) -> None:
        """An actor waits: the virtual clock moves on, and someone else may run."""
        self.clock += seconds
        self.point()


def _reading_stored_row() -> bool:
    """Whether the query running now is a save's read of the row it overwrites."""
    frame: FrameType | None = sys._getframe(1)
    for _ in range(12):  # storedrow.read -> Django's cursor wrappers -> this execute wrapper
        if frame is None:
            return False
        if frame.f_code is _STORED_ROW_READ:
            return True
        frame = frame.f_back
    return False


def _buffer(raw: Any) -> None:
    """Read every row of ``raw`` now, and serve them from memory afterwards (if the cursor allows)."""
    if not hasattr(raw, "__dict__"):  # a driver cursor without attributes of its own reads all rows anyway
        return
    rows = list(raw.fetchall())

    def fetchmany(size: int = 1) -> list[Any]:
        taken = rows[:size]
        del rows[:size]
        return taken

    def fetchone() -> Any:
        return rows.pop(0) if rows else None

    def fetchall() -> list[Any]:
        taken = rows[:]
        rows.clear()
        return taken

    raw.fetchmany, raw.fetchone, raw.fetchall = fetchmany, fetchone, fetchall


class _VirtualTime:
    """Stands for the ``time`` module where waits are timed: sleeping is a scheduler point."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def monotonic(self) -> float:
        # Each reading moves the clock a little too: a waiter whose sleep is not this module's
        # still reaches its deadline after a counted number of polls.
        self.scheduler.clock += 0.01
        return self.scheduler.clock

    def sleep(self, seconds: float) -> None:
        self.scheduler.sleep(seconds)

    def __getattr__(self, name: str) -> Any:
        import time

        return getattr(time, name)


@contextmanager
def virtual_time(module: Any, scheduler: Scheduler) -> Iterator[None]:
    """Within the block, ``module``'s waits (``time.monotonic``/``time.sleep``) run on the
    scheduler's clock: a stampede waiter polls a counted number of times, never a timed one."""
    original = module.time
    module.time = _VirtualTime(scheduler)
    try:
        yield
    finally:
        module.time = original


#: The in-process store's calls that stand for a Redis round trip.
MEMORY_CALLS = (
    "get",
    "write",  # finish_miss() and set() write through it
    "prepare_miss",
    "generations",
    "vouching_generations",
    "invalidate",
    "delete",
    "unlock",
    "lock",
)


@contextmanager
def hooked(store: Any, scheduler: Scheduler) -> Iterator[None]:
    """Within the block, every Redis call ``store`` makes is a point of ``scheduler`` (for the
    in-process store, every call that would be a round trip)."""
    if isinstance(store, MemoryStore):
        for name in MEMORY_CALLS:
            setattr(store, name, _pointed(getattr(store, name), scheduler))
        try:
            yield
        finally:
            for name in MEMORY_CALLS:
                store.__dict__.pop(name, None)
        return
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


def _pointed(method: Callable[..., T], scheduler: Scheduler) -> Callable[..., T]:
    def call(*args: Any, **kwargs: Any) -> T:
        scheduler.point()
        return method(*args, **kwargs)

    return call
