"""Fixtures for the Redis driver's own tests: the Redis rows of the backend table.

`backend_name` is narrowed to the backends that run the driver (fakeredis, and the
real redis-server, valkey-server and cluster of tests/conftest.py); `storage` hands
out raw clients on that store and `make_backend` Redis backends over them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import fakeredis
import pytest

from ratelimit_core.clock import Clock
from ratelimit_core.redis import RedisBackend
from support.backends import REDIS_BACKENDS, backends
from support.redis_storages import MakeBackend, Storage


@pytest.fixture(params=backends(*REDIS_BACKENDS))
def backend_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def storage(request: pytest.FixtureRequest, backend_name: str, backend_url: str | None) -> AsyncIterator[Storage]:
    made = Storage(backend_name, backend_url, fakeredis.FakeServer() if backend_url is None else None)
    if backend_name == "redis":
        made.admin_url = request.getfixturevalue("redis_admin_url")
    yield made
    for client in made.clients:
        await client.aclose()


@pytest.fixture
def prefix() -> str:
    """A prefix no other test uses, so tests can share one server."""
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
async def make_backend(storage: Storage, prefix: str) -> AsyncIterator[MakeBackend]:
    """A factory of backends over `storage`, all cleared at teardown."""
    made: list[RedisBackend] = []

    def make(clock: Clock | None = None, prefix: str = prefix, decode_responses: bool = False) -> RedisBackend:
        client = storage.client(decode_responses=decode_responses, admin=False)
        backend = RedisBackend(client, clock=clock, prefix=prefix)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.clear()
