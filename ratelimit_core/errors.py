"""The exceptions of ratelimit_core: one small hierarchy under `RateLimitError`.

Decisions (allowed or denied) are never exceptions; these are raised only for
misconfiguration, bad arguments and storage failure.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendFull",
    "BackendUnavailable",
    "InvalidArgument",
    "RateLimitError",
]


class RateLimitError(Exception):
    """Base class of every exception this package raises on purpose."""


class InvalidArgument(RateLimitError, ValueError):
    """An argument is outside its documented domain; raised before storage is touched."""


class BackendError(RateLimitError):
    """The storage answered, but not in a way the backend can use."""


class BackendUnavailable(BackendError):
    """The storage could not be reached in time (refused, reset, timed out).

    The original exception is chained as ``__cause__``.
    """


class BackendFull(BackendError):
    """The storage holds as many live keys as it may (`MemoryBackend`'s ``max_keys``).

    Existing keys keep working; only a call that would create a new key is refused.
    """
