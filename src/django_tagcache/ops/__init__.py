"""Operating the cache: the audit log, inspection and pruning of the keyspace, the Prometheus
export, deployment checks and the admin's purge views.
"""

from __future__ import annotations
