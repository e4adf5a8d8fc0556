"""The backend matrix: which backends the suite runs on, and whether this is CI.

``RATELIMIT_TEST_BACKENDS`` (comma-separated; default: all) picks the backends that
backend-parametrised tests run on. A plain module (not conftest) so test modules can
import it without depending on how pytest names conftest modules.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from ratelimit_core import Backend

__all__ = ["ALL_BACKENDS", "IN_CI", "SERVER_BACKENDS", "NewBackend", "missing_server", "selected_backends"]

ALL_BACKENDS = ("memory", "fakeredis", "redis", "valkey", "cluster")
SERVER_BACKENDS = ("redis", "valkey", "cluster")
"""Backends that are real server processes the suite starts itself."""
NewBackend = Callable[..., Backend]
"""The `new_backend` fixture: `new_backend(clock=None, prefix=None)`, another backend on the same storage."""
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def selected_backends() -> tuple[str, ...]:
    raw = os.environ.get("RATELIMIT_TEST_BACKENDS", "")
    names = tuple(name.strip() for name in raw.split(",") if name.strip()) or ALL_BACKENDS
    unknown = set(names) - set(ALL_BACKENDS)
    if unknown:
        raise pytest.UsageError(
            f"RATELIMIT_TEST_BACKENDS names unknown backends {sorted(unknown)}; valid: {', '.join(ALL_BACKENDS)}"
        )
    return names


def missing_server(reason: str) -> None:
    """Skip, or under CI=true fail: there a missing server is a failure, not a skip."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing server is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)
