"""The exceptions of ratelimit_core: one small hierarchy under `RateLimitError`.

Decisions (allowed or denied) are never exceptions; these are raised only for
misconfiguration, bad arguments and storage failure.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendFull",
    "BackendMisconfigured",
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


class BackendMisconfigured(BackendError):
    """The storage answered but refuses this client: fix the configuration, waiting will not help.

    A wrong password or user (authentication), a user without the rights to run
    the driver's commands (permission), or a TLS certificate that does not verify.
    Never treated as an outage: `FallbackBackend` lets it through to the caller,
    and the policies log it at ERROR. The message names the server without its
    password and says what to fix; the original is chained as ``__cause__``.
    """
