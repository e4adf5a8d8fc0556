"""Fixtures the end-to-end tests share: a private Redis, a pool of app servers, WebSocket clients.

(Nothing imports this module; helpers to import live in `app_servers` and `ws_clients`.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from support.app_servers import AppServerPool
from support.servers import ServerProcess
from support.ws_clients import Players


@pytest.fixture
def server(server_process: Callable[[str], ServerProcess]) -> ServerProcess:
    """A private redis-server that the app processes share (and a test may kill)."""
    return server_process("redis")


@pytest.fixture
def app_pool() -> Iterator[AppServerPool]:
    """Starts example servers for the test and stops them all at its end."""
    pool = AppServerPool()
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
async def players() -> AsyncIterator[Players]:
    async with Players() as clients:
        yield clients
