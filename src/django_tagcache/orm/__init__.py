"""The ORM integration: which models have tags, the signal handlers that turn writes into
invalidations, one batch per transaction, the SQL watcher and the outbox.
"""

from __future__ import annotations
