"""The Redis (and Valkey) driver: `RedisBackend`. Needs the ``redis`` package."""

from .backend import CLOCK_TTL_GRACE_MS, RedisBackend
from .batch import RedisBatch
from .coalesce import Coalescer, ScriptCall
from .connect import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_RETRIES, DEFAULT_SOCKET_TIMEOUT_S

__all__ = [
    "CLOCK_TTL_GRACE_MS",
    "DEFAULT_CONNECT_TIMEOUT_S",
    "DEFAULT_RETRIES",
    "DEFAULT_SOCKET_TIMEOUT_S",
    "Coalescer",
    "RedisBackend",
    "RedisBatch",
    "ScriptCall",
]
