"""The Redis side, with no Django in it: keys, script plans and replies, the Lua scripts, the
standalone, cluster and in-process stores, serialization, retries, the circuit breaker and
the counters they keep. Everything here takes explicit parameters; ``caching`` reads the
settings and passes them in. See docs/architecture.md.
"""

from __future__ import annotations
