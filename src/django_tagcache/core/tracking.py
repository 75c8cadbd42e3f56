"""The invalidation channel of the near cache: one RESP3 connection per Redis node, ``CLIENT TRACKING`` on.

Why broadcast mode (``BCAST PREFIX <entry prefix>``): Redis then reports every change of a key
under the prefix, whichever connection read it. The reads stay on the application's own pool
(RESP2 or RESP3, Redis 6.2 or later), Redis keeps no per-key table for this client (so none of
it can be evicted), and tracking covers every key from the moment ``CLIENT TRACKING`` answers:
that moment is the one clean edge the ordering rule of :mod:`django_tagcache.core.nearcache`
needs. The price is a push for every write under the prefix, read or not by this process.

A thread per channel reads the connection. Every ``heartbeat`` seconds it sends
``CLIENT TRACKINGINFO``: its reply proves the connection alive *and* still tracking (a proxy that
silently reconnected to a restarted server would answer "off"), and, since Redis answers in
order, that every push queued before it was read. :meth:`TrackingChannel.barrier` does the same on
demand, for the process that has just invalidated. Any error, a reply late by more than
``reply_timeout`` or a change of the server's ``run_id`` flushes the near cache before it may
serve again.

Each heartbeat and each barrier is preceded by ``ROLE``: a node that is no longer a primary (a
Sentinel or Cluster failover demotes it without closing its clients) answers heartbeats in order,
yet the writes of the new primary reach it late or, cut off, never. Its channel then counts as
down (L1 flushed, nothing served from it) until it is subscribed to a primary again.

Behind Sentinel that is not enough: after a failover the old master answers ``ROLE`` as a master
until Sentinel demotes it, which takes seconds and never comes if Sentinel cannot reach it, while
writes go to the new one. So the channel also asks Sentinel where the master is (``master``)
right after each heartbeat is sent, and confirms that heartbeat only if the answer names the
node it reads: another address flushes L1 and reconnects (to the new master); no answer leaves
the heartbeat unconfirmed, so L1 stops serving within ``max_lag``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import redis

from . import metrics

if TYPE_CHECKING:
    from .nearcache import NearCache

logger = logging.getLogger("django_tagcache")

_PUSH = object()  # what the push handler returns: not a reply to a command of ours


@dataclass(eq=False)
class _Sent:
    """A command in flight on the tracking connection; replies come back in the order sent."""

    kind: str  # "beat" or "barrier"
    sent: float
    done: threading.Event = field(default_factory=threading.Event)
    ok: bool = False
    #: Called (on the reader's thread) once it is answered or lost: wakes an event loop that waits.
    wake: Callable[[], object] | None = None

    def finish(self, ok: bool) -> None:
        self.ok = ok
        self.done.set()
        if self.wake is not None:
            self.wake()


class TrackingChannel:
    """Keeps ``near`` fresh from one Redis node: subscribe, read pushes, send heartbeats, reconnect."""

    def __init__(
        self,
        near: NearCache,
        connect: Callable[[], redis.Connection],
        *,
        prefixes: Sequence[str],
        channel: int = 0,
        heartbeat: float = 0.05,
        reply_timeout: float = 1.0,
        name: str = "",
        master: Callable[[], tuple[str, int]] | None = None,
    ) -> None:
        self.near = near
        self._connect = connect
        self.prefixes = list(prefixes)
        self.channel = channel
        self.heartbeat = heartbeat
        self.reply_timeout = reply_timeout
        self.name = name
        #: Sentinel: where the master is now (asked after each heartbeat is sent); None elsewhere.
        self.master = master
        # When the last answer of ``master`` naming our node was asked for (monotonic): it vouches
        # for the heartbeats sent before it, and for no later one.
        self._vouched = 0.0
        self._sentinel_silent = False  # Sentinel did not answer last time (logged once per outage)
        self.run_id: str | None = None
        self.client_id: int | None = None
        self.sessions = 0  # connections subscribed so far
        self._conn: Any = None  # the subscribed connection (redis-py's Connection), None when down
        self._lock = threading.Lock()  # sends, and the queue of commands in flight
        self._in_flight: collections.deque[_Sent] = collections.deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()
        #: Called by the reader thread after each heartbeat is sent (Redis Cluster: a topology check).
        self.on_beat: Callable[[], object] | None = None
        #: Called by the reader thread when the node says it is no longer a primary.
        self.on_demoted: Callable[[], object] | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"tagcache-tracking-{self.name}-{self.channel}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._drop_connection()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def barrier(self, timeout: float | None = None) -> bool:
        """Return once every push Redis queued before now has been applied; False (after a flush) if
        that cannot be known within ``timeout`` (default ``reply_timeout``)."""
        sent = self._send_barrier()
        if sent is not None:
            sent.done.wait(self.reply_timeout if timeout is None else timeout)
        return self._barrier_passed(sent)

    async def abarrier(self, timeout: float | None = None) -> bool:
        """:meth:`barrier` for an event loop: the reader thread wakes the loop when the reply is
        read; the loop's thread is never blocked."""
        loop = asyncio.get_running_loop()
        answered = asyncio.Event()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop was closed: nobody waits any more
                loop.call_soon_threadsafe(answered.set)

        sent = self._send_barrier(wake)
        if sent is not None:
            with contextlib.suppress(asyncio.TimeoutError):  # not answered: _barrier_passed flushes
                await asyncio.wait_for(answered.wait(), self.reply_timeout if timeout is None else timeout)
        return self._barrier_passed(sent)

    def _send_barrier(self, wake: Callable[[], object] | None = None) -> _Sent | None:
        self._send(("ROLE",), "role")  # first: a demoted node must not pass the barrier
        return self._send(("PING", "tagcache-barrier"), "barrier", wake)

    def _barrier_passed(self, sent: _Sent | None) -> bool:
        if sent is not None and sent.done.is_set() and sent.ok:
            return True
        self.near.flush()  # not known: forget everything rather than serve what a push may void
        return False

    # --- the reader thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.01
        while not self._stop.is_set():
            subscribed = self.sessions
            try:
                self._session()
            except Exception as exc:  # the reader must outlive anything a read raises
                # redis-py raises AttributeError, not ConnectionError, when another thread (stop(),
                # a failed barrier) disconnects the connection under a read in progress.
                if not self._stop.is_set():
                    logger.warning("django-tagcache: near-cache tracking channel %s lost: %s", self.name, exc)
            finally:
                self._drop_connection()
                self.near.flush(self.channel)
            if self.sessions > subscribed:
                backoff = 0.01  # that connection worked: this loss is a new one, not a retry
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, 1.0)

    def _session(self) -> None:
        # redis-py's Connection is untyped: Any, rather than an ignore on every call.
        conn: Any = self._connect()
        conn.connect()
        conn._parser.set_invalidation_push_handler(self._on_push)
        conn.send_command("CLIENT", "ID")
        self.client_id = int(conn.read_response())
        conn.send_command("INFO", "server")
        info = conn.read_response()
        run_id = _field(info, "run_id")
        if self.run_id is not None and run_id != self.run_id:
            metrics.incr("near_restarts")  # the node restarted: whatever we held is history
            logger.warning(
                "django-tagcache: Redis %s restarted (run_id changed): near cache flushed", self.name
            )
        self.run_id = run_id
        conn.send_command("ROLE")
        self._check_role(conn.read_response())
        args: list[Any] = ["CLIENT", "TRACKING", "ON", "BCAST"]
        for prefix in self.prefixes:
            args += ["PREFIX", prefix]
        conn.send_command(*args)
        if conn.read_response() not in (b"OK", "OK"):
            raise redis.ConnectionError("CLIENT TRACKING was not accepted")
        with self._lock:
            self._conn = conn
            self.sessions += 1
        # From here on every change of a key under the prefixes is pushed to us.
        self.near.tracking_on(self.channel)
        self.connected.set()
        next_beat = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_beat:
                self._send(("ROLE",), "role")  # first: a demoted node must not confirm the beat
                self._send(("CLIENT", "TRACKINGINFO"), "beat")
                next_beat = now + self.heartbeat
                if self.on_beat is not None:
                    self.on_beat()
                if self.master is not None:
                    self._check_master(conn, self.master)
            with self._lock:
                oldest = self._in_flight[0].sent if self._in_flight else None
            if oldest is not None and now - oldest > self.reply_timeout:
                raise redis.TimeoutError(f"no reply on the tracking connection for {now - oldest:.3f} s")
            if conn.can_read(timeout=max(0.0, min(next_beat - now, self.heartbeat))):
                self._on_reply(conn.read_response(push_request=True))

    def _on_reply(self, reply: Any) -> None:
        if reply is _PUSH:
            return
        with self._lock:
            if not self._in_flight:
                raise redis.ConnectionError(f"unexpected reply on the tracking connection: {reply!r}")
            sent = self._in_flight.popleft()
        if sent.kind == "role":
            self._check_role(reply)
        if sent.kind == "beat":
            flags = [_text(flag) for flag in _field(reply, "flags") or []]
            if "on" not in flags or "bcast" not in flags:
                raise redis.ConnectionError(f"tracking is off on the server (flags {flags})")
            if self.master is None or self._vouched >= sent.sent:
                self.near.confirm(self.channel, sent.sent)
        sent.finish(True)

    def _check_master(self, conn: Any, master: Callable[[], tuple[str, int]]) -> None:
        """Sentinel: vouch for the heartbeats sent so far if the master is still the node we read,
        else end the session (the caller flushes L1; the next connection goes to the new master)."""
        asked = time.monotonic()  # after the heartbeat was sent: the answer is about a later moment
        try:
            host, port = master()
        except (redis.RedisError, OSError) as exc:
            if not self._sentinel_silent:
                logger.warning(
                    "django-tagcache: Sentinel did not say where the master of %s is (%s): the near "
                    "cache serves nothing until it does",
                    self.name,
                    exc,
                )
            self._sentinel_silent = True
            return
        self._sentinel_silent = False
        if (str(host), int(port)) != (str(conn.host), int(conn.port)):
            raise redis.ConnectionError(
                f"Sentinel names {host}:{port} as the master now, not {conn.host}:{conn.port}"
            )
        self._vouched = asked

    def _check_role(self, reply: Any) -> None:
        role = _text(reply[0]) if isinstance(reply, (list, tuple)) and reply else ""
        if role != "master":
            if self.on_demoted is not None:
                self.on_demoted()
            raise redis.ConnectionError(f"the node is no longer a primary (ROLE {role or reply!r})")

    def _on_push(self, response: Sequence[Any]) -> object:
        keys = response[1] if len(response) > 1 else None
        self.near.invalidate(None if keys is None else [_text(key) for key in keys])
        return _PUSH

    def _send(self, args: Sequence[Any], kind: str, wake: Callable[[], object] | None = None) -> _Sent | None:
        with self._lock:
            conn: Any = self._conn
            if conn is None:
                return None
            sent = _Sent(kind, time.monotonic(), wake=wake)
            try:
                conn.send_packed_command(conn.pack_command(*args), check_health=False)
            except (redis.RedisError, OSError):
                return None  # the reader thread sees the broken connection and flushes
            self._in_flight.append(sent)
            return sent

    def _drop_connection(self) -> None:
        with self._lock:
            conn: Any = self._conn
            self._conn = None
            waiting = list(self._in_flight)
            self._in_flight.clear()
        self.connected.clear()
        for sent in waiting:
            sent.finish(False)  # the barrier flushes
        if conn is not None:
            conn.disconnect()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _field(reply: Any, name: str) -> Any:
    """A field of a RESP3 map reply (CLIENT TRACKINGINFO) or of INFO's parsed dict/text."""
    if isinstance(reply, dict):
        for key, value in reply.items():
            if _text(key) == name:
                return value
        return None
    if isinstance(reply, (bytes, str)):
        for line in _text(reply).splitlines():
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    return None
