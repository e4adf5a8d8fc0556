"""The Redis (and Valkey) driver: `RedisBackend`. Needs the ``redis`` package (redis-py).

The round-trip machinery (``coalesce.Coalescer``, ``coalesce.ScriptCall``, ``pipeline``) is
internal: importable from its modules, but not part of this package's API.
"""

from .acl import acl_rule
from .backend import CLOCK_TTL_GRACE_MS, RedisBackend
from .batch import RedisBatch
from .connect import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_RETRIES, DEFAULT_SOCKET_TIMEOUT_S

__all__ = [
    "CLOCK_TTL_GRACE_MS",
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_RETRIES",
    "DEFAULT_SOCKET_TIMEOUT_S",
    "RedisBackend",
    "RedisBatch",
    "acl_rule",
]
