"""The store a Redis driver test runs against (a Redis row of the backend table), and what its fixtures hand out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import fakeredis

from ratelimit_core.redis import RedisBackend
from ratelimit_core.redis.connect import Client, client_from_url

MakeBackend = Callable[..., RedisBackend]
"""`make_backend(clock=None, prefix=<the test's>, decode_responses=False)`."""


@dataclass
class Storage:
    """One Redis-compatible store; every client it makes sees the same data."""

    name: str
    url: str | None
    fake_server: fakeredis.FakeServer | None = None
    clients: list[Client] = field(default_factory=list)
    admin_url: str | None = None
    """A URL with every right, where `url` logs in as a least-privilege user (the acl tox env)."""

    def client(self, *, decode_responses: bool = False, admin: bool = True) -> Client:
        """A new client (closed at teardown by the `storage` fixture); ``admin=False``: as the driver's user."""
        client: Client
        if self.fake_server is not None:
            client = fakeredis.FakeAsyncRedis(server=self.fake_server, decode_responses=decode_responses)
        else:
            url = self.admin_url if admin and self.admin_url is not None else self.url
            assert url is not None
            client = client_from_url(url, decode_responses=decode_responses, socket_timeout=5, socket_connect_timeout=5)
        self.clients.append(client)
        return client
