"""The consumer loop: read a source stream with a consumer group, apply, acknowledge.

At least once: an entry is acknowledged (``XACK``) only after its invalidation succeeded in this
service's Redis. After a restart the consumer first rereads its own pending entries; entries left
pending by a consumer that died are taken over with ``XAUTOCLAIM`` once idle for ``CLAIM_IDLE``.
A bad entry (malformed, unknown version, invalid tags) goes to the dead-letter stream at once,
with the reason; an entry whose application keeps failing for another reason goes there after
``MAX_ATTEMPTS`` tries. This service's Redis being unreachable is not the entries' fault: the
batch is kept and retried, with backoff, until Redis is back or the consumer is asked to stop.

:meth:`Consumer.stop` (the command calls it on SIGTERM) lets the batch in hand finish (applied and
acknowledged, or left pending to be applied again); nothing is ever acknowledged unapplied.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..caching.api import TagCache
from ..caching.budget import redis_budget
from ..caching.exceptions import TagCacheUnavailable
from ..caching.tags import all_valid, normalize_tags
from ..conf import EventSource, EventsSettings, conf
from ..core import metrics
from ..core.events import BadEvent, Decoder, Event
from ..core.retry import RETRYABLE
from .apply import apply_events
from .streams import SourceStream

if TYPE_CHECKING:
    import redis

logger = logging.getLogger("django_tagcache.events")

#: Failures of this service's Redis: the batch waits and is retried, no entry is blamed.
UNAVAILABLE: tuple[type[BaseException], ...] = (*RETRYABLE, TagCacheUnavailable)
Entry = tuple[str, dict[Any, Any]]


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Consumer:
    """Applies the events of one source stream to the cache ``cache`` (default ``TAGCACHE['CACHE']``).

    Embed it in any worker: ``Consumer(source).run()`` until :meth:`stop`, or call
    :meth:`poll` from a loop of your own. ``client`` overrides the connection to the source.
    """

    def __init__(
        self,
        source: EventSource | str | None = None,
        *,
        name: str | None = None,
        cache: str | None = None,
        settings: EventsSettings | None = None,
        client: redis.Redis | None = None,
    ) -> None:
        self.settings = settings or _settings()
        self.source = _source(self.settings, source)
        self.name = default_name() if name is None else _consumer_name(name)
        self.cache = TagCache(cache)
        self.stream = SourceStream(self.source, self.settings, client)
        self._stop = threading.Event()
        self._own_pending = True  # after a start, or a failure: reread this consumer's own entries
        self._next_claim = 0.0
        self._next_sweep = 0.0  # when to look for dead consumers to remove (monotonic clock)
        self._backoff = 0.0
        self._ready = 0.0  # rate limit: when the next batch may start (monotonic clock)
        self._decoder = Decoder()
        self._ack_with_next_read = False  # within run(): see there
        #: Called after each batch with (entries handled); for tests and embedding code.
        self.after_batch: Callable[[int], None] | None = None

    def stop(self) -> None:
        """Ask the loop to end after the batch in hand (safe from a signal handler or another thread)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self, *, until_idle: bool = False) -> None:
        """Poll until :meth:`stop` (or, with ``until_idle``, until a poll finds nothing to do).

        Within a run each batch is acknowledged with the next read, in its round trip; the last
        one when the run ends.
        """
        self._ack_with_next_read = True
        try:
            while not self._stop.is_set():
                handled = self.poll()
                if until_idle and handled == 0:
                    return
        finally:
            self._ack_with_next_read = False
            try:
                self.stream.flush()
            except UNAVAILABLE as exc:  # left pending: applied again by whoever reads them next
                logger.warning("django-tagcache: could not acknowledge the last batch (%s)", exc)

    def poll(self) -> int:
        """One round: read (own pending, reclaimed or new entries), apply, acknowledge; entries handled."""
        try:
            entries = self._read()
        except UNAVAILABLE as exc:  # the source's Redis: nothing was taken
            self._wait_after_failure("the source stream", exc)
            return 0
        if not entries:
            return 0
        try:
            while not self._handle(entries):
                if self._stop.is_set():
                    return 0  # left pending: applied again (harmlessly) by whoever reads them next
        except UNAVAILABLE as exc:  # the source, while acknowledging or dead-lettering
            # Whatever was applied and not acknowledged is delivered again, and applied again.
            self._wait_after_failure("the source stream", exc)
            return 0
        self._backoff = 0.0
        self._limit_rate(len(entries))
        if self.after_batch is not None:
            self.after_batch(len(entries))
        return len(entries)

    # --- reading --------------------------------------------------------------------------------

    def _read(self) -> list[Entry]:
        batch = self.settings.batch
        if self._own_pending:
            entries = self.stream.read(self.name, batch, own=True)
            if entries:
                return entries
            self._own_pending = False
        now = time.monotonic()
        if now >= self._next_claim:
            self._next_claim = now + self.settings.claim_idle / 2
            claimed, trimmed = self.stream.claim(self.name, batch)
            if trimmed:
                logger.warning(
                    "django-tagcache: %d pending event(s) of %s were trimmed from the stream before "
                    "being applied (MAXLEN too small for the consumer's delay?)",
                    len(trimmed),
                    self.source.name,
                )
                self.stream.count(trimmed=len(trimmed))
            if claimed:
                return claimed
        if now >= self._next_sweep:
            self._next_sweep = now + self.settings.dead_consumer_idle / 2
            taken, removed = self.stream.remove_idle_consumers(self.name, batch)
            if removed:
                logger.warning(
                    "django-tagcache: removed consumer(s) %s of %s, idle for over %g s (their "
                    "pending events were taken over first)",
                    ", ".join(repr(name) for name in removed),
                    self.source.name,
                    self.settings.dead_consumer_idle,
                )
            if taken:  # now this consumer's own pending entries
                self._own_pending = True
                return self._read()
        block_ms = 0 if self._stop.is_set() else int(self.settings.block * 1000)
        return self.stream.read(self.name, batch, block_ms=max(1, block_ms))

    # --- applying -------------------------------------------------------------------------------

    def _handle(self, entries: list[Entry]) -> bool:
        """Apply and acknowledge ``entries``; False if this service's Redis failed (retry them)."""
        good = self._decode(entries)
        if not good:
            return True
        try:
            with redis_budget():  # one unit of work per batch
                outcome = apply_events(self.cache, [event for _id, event in good], self._mark_ttl_ms())
        except UNAVAILABLE as exc:
            self._wait_after_failure("this service's Redis", exc)
            return False
        except Exception as exc:
            logger.warning("django-tagcache: a batch of events failed (%s); applying one at a time", exc)
            return self._one_by_one(good)
        self.stream.acknowledge(
            [entry_id for entry_id, _event in good], outcome, with_next_read=self._ack_with_next_read
        )
        metrics.incr_many({"events_applied": outcome.applied, "events_duplicate": outcome.duplicates})
        return True

    def _decode(self, entries: list[Entry]) -> list[tuple[str, Event]]:
        """The valid events of ``entries``; the others are dead-lettered, each with its reason.

        Every tag of the batch is checked at once; only a batch holding a bad tag is checked event
        by event, to find which events to refuse (an event is refused whole, never in part).
        """
        good: list[tuple[str, Event]] = []
        bad: list[tuple[str, dict[Any, Any], str]] = []
        decoder = self._decoder
        for entry_id, fields in entries:
            try:
                good.append((entry_id, decoder(fields)))
            except (BadEvent, TypeError, ValueError) as exc:
                bad.append((entry_id, fields, f"bad event: {exc}"))
        if not all_valid({tag for _id, event in good for tag in event.tags}):
            checked = []
            for entry_id, event in good:
                try:
                    checked.append((entry_id, replace(event, tags=normalize_tags(list(event.tags)))))
                except (TypeError, ValueError) as exc:
                    bad.append((entry_id, dict(entries)[entry_id], f"bad event: {exc}"))
            good = checked
        for entry_id, fields, reason in bad:
            self.stream.dead_letter(self.name, entry_id, fields, reason, attempts=1)
            metrics.incr("events_dead_lettered")
        return good

    def _one_by_one(self, good: list[tuple[str, Event]]) -> bool:
        for entry_id, event in good:
            try:
                with redis_budget():
                    outcome = apply_events(self.cache, [event], self._mark_ttl_ms())
            except UNAVAILABLE as exc:
                self._wait_after_failure("this service's Redis", exc)
                return False
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                attempts = self.stream.failed(entry_id, reason)
                if attempts >= self.settings.max_attempts:
                    fields = self.stream.fields(entry_id)
                    self.stream.dead_letter(self.name, entry_id, fields, reason, attempts=attempts)
                    metrics.incr("events_dead_lettered")
                else:
                    self._own_pending = True  # stays pending: tried again on the next poll
                continue
            self.stream.acknowledge([entry_id], outcome)
            metrics.incr_many({"events_applied": outcome.applied, "events_duplicate": outcome.duplicates})
        return True

    def _mark_ttl_ms(self) -> int:
        # A forgotten mark only lets a duplicate be applied again: harmless, never stale.
        return conf.GENERATION_TTL * 1000

    # --- pacing ---------------------------------------------------------------------------------

    def _wait_after_failure(self, what: str, exc: BaseException) -> None:
        self._backoff = min(1.0, max(0.05, self._backoff * 2))
        logger.warning(
            "django-tagcache: %s is unreachable (%s); retrying in %.2f s", what, exc, self._backoff
        )
        self._own_pending = True
        self._stop.wait(self._backoff)

    def _limit_rate(self, handled: int) -> None:
        """Keep to ``RATE_LIMIT`` events a second on average (up to one second's worth in a burst)."""
        rate = self.settings.rate_limit
        if not rate:
            return
        now = time.monotonic()
        self._ready = max(self._ready, now - 1.0) + handled / rate
        if self._ready > now:
            self._stop.wait(self._ready - now)


def _consumer_name(name: str) -> str:
    # Redis takes any bytes; a name is also printed in logs, dead letters and XINFO: one word.
    # str.isprintable() refuses every whitespace but the space, and every control character.
    if not (1 <= len(name) <= 200 and name.isprintable() and " " not in name):
        raise ValueError(f"A consumer name must be 1-200 printable characters without spaces, not {name!r}.")
    return name


def _settings() -> EventsSettings:
    settings = conf.EVENTS
    if settings is None:
        raise ValueError("TAGCACHE['EVENTS'] is not set: there is nothing to consume.")
    return settings


def _source(settings: EventsSettings, source: EventSource | str | None) -> EventSource:
    if isinstance(source, EventSource):
        return source
    if source is None:
        if len(settings.sources) != 1:
            raise ValueError(
                "Name the source to consume: TAGCACHE['EVENTS']['SOURCES'] has "
                f"{len(settings.sources)} ({', '.join(sorted(settings.sources)) or 'none'})."
            )
        return next(iter(settings.sources.values()))
    try:
        return settings.sources[source]
    except KeyError:
        known = ", ".join(sorted(settings.sources)) or "none"
        raise ValueError(
            f"Unknown event source {source!r}; TAGCACHE['EVENTS']['SOURCES'] has: {known}."
        ) from None
