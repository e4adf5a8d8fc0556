"""ratelimit_core: atomic rate-limit primitives over pluggable storage."""

# The one place the version is written: setup.cfg reads it, ratelimit_channels re-exports it.
__version__ = "0.2.0"

from typing import TYPE_CHECKING

from .backend import AddsMany, Backend, BucketResult, CounterResult, SetResult, ShowsProgress
from .clock import Clock, ManualClock, monotonic_ms
from .errors import (
    BackendError,
    BackendFull,
    BackendMisconfigured,
    BackendUnavailable,
    InvalidArgument,
    RateLimitError,
)
from .fallback import FallbackBackend
from .memory import MemoryBackend

if TYPE_CHECKING:
    from .redis import RedisBackend
    from .urls import backend_from_url

__all__ = [
    "AddsMany",
    "Backend",
    "BackendError",
    "BackendFull",
    "BackendMisconfigured",
    "BackendUnavailable",
    "BucketResult",
    "Clock",
    "CounterResult",
    "FallbackBackend",
    "InvalidArgument",
    "ManualClock",
    "MemoryBackend",
    "RateLimitError",
    "RedisBackend",
    "SetResult",
    "ShowsProgress",
    "backend_from_url",
    "monotonic_ms",
]

# Imported on first use, so that `import ratelimit_core` and the memory driver need
# no third-party package (the Redis driver needs `redis`).
_LAZY = {"RedisBackend": ".redis", "backend_from_url": ".urls"}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value
