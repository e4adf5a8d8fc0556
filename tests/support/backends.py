"""The backend matrix: one table of the backends the suite runs on, each row carrying its pytest mark.

A test runs on a backend by taking a row of `backends()` as a parameter (the
`backend_name` fixture takes them all), or by carrying the backend's mark when it
needs that backend's server without being parametrised. ``pytest -m redis`` then
selects exactly the tests of one backend; ``-m "not (fakeredis or redis or valkey
or cluster or sentinel)"`` selects memory's and those that need no backend at all.
A plain module (not conftest) so test modules can import it.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from _pytest.mark import ParameterSet

from ratelimit_core import Backend

__all__ = [
    "ALL_BACKENDS",
    "BACKEND_MARKS",
    "IN_CI",
    "REDIS_BACKENDS",
    "SERVER_BACKENDS",
    "NewBackend",
    "backends",
    "missing_server",
]

ALL_BACKENDS = ("memory", "fakeredis", "redis", "valkey", "cluster", "sentinel")
"""Every backend, and the name of its pytest mark."""
REDIS_BACKENDS = ("fakeredis", "redis", "valkey", "cluster", "sentinel")
"""Backends that run the Redis driver (its Lua scripts)."""
SERVER_BACKENDS = ("redis", "valkey", "cluster", "sentinel")
"""Backends that are real server processes the suite starts itself."""
NewBackend = Callable[..., Backend]
"""The `new_backend` fixture: `new_backend(clock=None, prefix=None)`, another backend on the same storage."""
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

BACKEND_MARKS = {
    "memory": "runs on MemoryBackend (tox env memory)",
    "fakeredis": "runs the Lua scripts on fakeredis with lupa (tox env fakeredis)",
    "redis": "needs the redis-server the suite starts (tox env redis)",
    "valkey": "needs the valkey-server the suite starts (tox env valkey)",
    "cluster": "needs the three-master Redis Cluster the suite starts (tox env cluster)",
    "sentinel": "needs the master, replica and three sentinels the suite starts (tox env sentinel)",
}
"""Backend -> the description its mark is registered with (the run uses ``--strict-markers``)."""


def backends(*names: str) -> list[ParameterSet]:
    """The table's rows for `names` (all when none), each marked with its backend: for ``parametrize``."""
    unknown = set(names) - set(ALL_BACKENDS)
    if unknown:
        raise ValueError(f"backends(): unknown backends {sorted(unknown)}; valid: {', '.join(ALL_BACKENDS)}")
    return [pytest.param(name, marks=getattr(pytest.mark, name), id=name) for name in names or ALL_BACKENDS]


def missing_server(reason: str) -> None:
    """Skip, or under CI=true fail: there a missing server is a failure, not a skip."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing server is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)
