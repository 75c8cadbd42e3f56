"""The django-redis client class for Redis Cluster: set ``OPTIONS['CLIENT_CLASS']`` to
``"django_tagcache.cluster.RedisClusterClient"``. The code lives in
:mod:`django_tagcache.backends.cluster`.
"""

from __future__ import annotations

from .backends.cluster import ClusterUnreachable, GuardedCluster, RedisClusterClient, get_cluster

__all__ = ["ClusterUnreachable", "GuardedCluster", "RedisClusterClient", "get_cluster"]
