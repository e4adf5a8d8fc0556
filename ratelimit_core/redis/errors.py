"""How redis-py's exceptions become ratelimit_core's, in one place."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from redis import exceptions as redis_errors

from ..errors import BackendError, BackendUnavailable

__all__ = ["REDIS_FAILURES", "translated", "translated_errors"]

# asyncio.TimeoutError is the builtin TimeoutError (an OSError) from 3.11 on; it is
# listed so the intent survives reading. redis-py raises its own ConnectionError and
# TimeoutError, but a socket failure can also surface raw from the transport.
# On a cluster, a node that is down or a slot that is moving is an outage too.
_UNREACHABLE = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    OSError,
    asyncio.TimeoutError,
    redis_errors.ClusterDownError,
    redis_errors.MasterDownError,
    redis_errors.TryAgainError,
)

REDIS_FAILURES = (*_UNREACHABLE, redis_errors.RedisError)
"""Everything `translated` turns into a `BackendError`; anything else is a bug and propagates."""


def translated(exc: BaseException, operation: str) -> BackendError:
    """The `BackendUnavailable` or `BackendError` for a Redis failure, with `exc` as its cause.

    Unreachable, reset or timed out -> `BackendUnavailable`; any other Redis error
    (WRONGTYPE, a script error, ...) -> `BackendError`. Each call makes a new
    exception, so one failure shared by many callers gives each its own.
    """
    error: BackendError
    if isinstance(exc, _UNREACHABLE):
        error = BackendUnavailable(f"Redis did not answer {operation}: {type(exc).__name__}: {exc}")
    else:
        error = BackendError(f"Redis failed {operation}: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


@contextmanager
def translated_errors(operation: str) -> Iterator[None]:
    """Re-raise a Redis failure inside the block as `translated` says (the original is chained)."""
    try:
        yield
    except REDIS_FAILURES as exc:
        raise translated(exc, operation) from exc
