"""How redis-py's exceptions become ratelimit_core's, in one place."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from redis import exceptions as redis_errors

from ..errors import BackendError, BackendUnavailable

__all__ = ["translated_errors"]

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


@contextmanager
def translated_errors(operation: str) -> Iterator[None]:
    """Re-raise a Redis failure inside the block as `BackendUnavailable` or `BackendError`.

    Unreachable, reset or timed out -> `BackendUnavailable`; any other Redis error
    (WRONGTYPE, a script error, ...) -> `BackendError`. The original is chained.
    """
    try:
        yield
    except _UNREACHABLE as exc:
        raise BackendUnavailable(f"Redis did not answer {operation}: {type(exc).__name__}: {exc}") from exc
    except redis_errors.RedisError as exc:
        raise BackendError(f"Redis failed {operation}: {type(exc).__name__}: {exc}") from exc
