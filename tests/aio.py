"""The blocking caching API, run through its asyncio twins: the same behaviour tests for both.

``AsyncAPI(tc)`` has the methods of a :class:`~django_tagcache.TagCache` (``get``, ``set``, ...);
each one awaits the ``a``-method (``aget``, ``aset``, ...) on an event loop of the calling thread
that lives as long as the adapter, so its connections are reused from call to call. A call made
while one of its own coroutines runs (a compute function that invalidates, as the race tests
do) runs on a loop of its own, in a thread of its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django_tagcache import TagCache

T = TypeVar("T")


class AsyncAPI:
    def __init__(self, tc: TagCache) -> None:
        self._tc = tc
        self._loops: dict[int, asyncio.AbstractEventLoop] = {}  # one per calling thread
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AsyncAPI({self._tc!r})"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tc, name)  # store, _alias, ...

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        with self._lock:
            loop = self._loops.get(threading.get_ident())
            if loop is None:
                loop = self._loops[threading.get_ident()] = asyncio.new_event_loop()
        if not loop.is_running():
            return loop.run_until_complete(coro)
        with ThreadPoolExecutor(1) as pool:  # called back from inside one of its coroutines
            return pool.submit(asyncio.run, coro).result()

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self._run(self._tc.aget(*args, **kwargs))

    def set(self, *args: Any, **kwargs: Any) -> bool:
        return self._run(self._tc.aset(*args, **kwargs))

    def get_or_set(self, *args: Any, **kwargs: Any) -> Any:
        return self._run(self._tc.aget_or_set(*args, **kwargs))

    def delete(self, *args: Any, **kwargs: Any) -> bool:
        return self._run(self._tc.adelete(*args, **kwargs))

    def invalidate_tags(self, *args: Any, **kwargs: Any) -> int:
        return self._run(self._tc.ainvalidate_tags(*args, **kwargs))

    def close(self) -> None:
        """Shut the loops down as ``asyncio.run()`` would: their connections are closed."""
        for loop in self._loops.values():
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
