"""ratelimit_core: atomic rate-limit primitives over pluggable storage."""

from .backend import Backend, BucketResult, CounterResult, SetResult
from .clock import Clock, ManualClock, monotonic_ms
from .errors import BackendError, BackendUnavailable, InvalidArgument, RateLimitError
from .memory import MemoryBackend

__all__ = [
    "Backend",
    "BackendError",
    "BackendUnavailable",
    "BucketResult",
    "Clock",
    "CounterResult",
    "InvalidArgument",
    "ManualClock",
    "MemoryBackend",
    "RateLimitError",
    "SetResult",
    "monotonic_ms",
]
