"""The stores the Redis driver's tests run against, and the types their fixtures hand out."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import fakeredis
import redis.asyncio

from ratelimit_core.redis import RedisBackend

STORAGES = ("fakeredis", "redis", "valkey")

MakeBackend = Callable[..., RedisBackend]
"""`make_backend(clock=None, prefix=<the test's>, decode_responses=False)`."""


def selected_storages() -> set[str]:
    """The stores named by RATELIMIT_TEST_BACKENDS (all of them when it is unset)."""
    raw = os.environ.get("RATELIMIT_TEST_BACKENDS", "")
    return {name.strip() for name in raw.split(",") if name.strip()} or set(STORAGES)


@dataclass
class Storage:
    """One Redis-compatible store; every client it makes sees the same data."""

    name: str
    url: str | None
    fake_server: fakeredis.FakeServer | None = None
    clients: list[redis.asyncio.Redis] = field(default_factory=list)

    def client(self, *, decode_responses: bool = False) -> redis.asyncio.Redis:
        """A new client (closed at teardown by the `storage` fixture)."""
        client: redis.asyncio.Redis
        if self.fake_server is not None:
            client = fakeredis.FakeAsyncRedis(server=self.fake_server, decode_responses=decode_responses)
        else:
            assert self.url is not None
            client = redis.asyncio.from_url(self.url, decode_responses=decode_responses, socket_timeout=5)
        self.clients.append(client)
        return client
