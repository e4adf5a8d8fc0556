"""Failures surface as BackendUnavailable, quickly, and bad arguments never reach the network."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from ratelimit_core import BackendUnavailable, InvalidArgument, RedisBackend
from support.servers import ServerProcess

# Bounds a hang so it fails the test instead of stalling the suite; not a speed check.
_HANG_S = 10.0

Call = Callable[[RedisBackend], Awaitable[Any]]
CALLS: dict[str, Call] = {
    "ping": lambda b: b.ping(),
    "counter_incr": lambda b: b.counter_incr("k", limit=5, window_ms=10),
    "counter_decr": lambda b: b.counter_decr("k"),
    "counter_get": lambda b: b.counter_get("k"),
    "set_add": lambda b: b.set_add("s", "m", capacity=2, lease_ms=10),
    "set_remove": lambda b: b.set_remove("s", "m"),
    "set_size": lambda b: b.set_size("s"),
    "set_members": lambda b: b.set_members("s"),
    "bucket_consume": lambda b: b.bucket_consume("b", rate=1, burst=1),
    "clear": lambda b: b.clear(),
}


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize("name", sorted(CALLS))
async def test_every_call_to_a_dead_port_raises_backend_unavailable(name: str) -> None:
    async with RedisBackend.from_url(f"redis://127.0.0.1:{_closed_port()}/0") as backend:
        with pytest.raises(BackendUnavailable) as caught:
            await asyncio.wait_for(CALLS[name](backend), _HANG_S)
    assert isinstance(caught.value.__cause__, (RedisConnectionError, OSError))


async def test_bad_arguments_are_refused_before_any_network_call() -> None:
    async with RedisBackend.from_url(f"redis://127.0.0.1:{_closed_port()}/0") as backend:
        with pytest.raises(InvalidArgument, match="amount"):
            await backend.counter_incr("k", 0)
        with pytest.raises(InvalidArgument, match="burst"):
            await backend.bucket_consume("k", rate=1, burst=0)
        with pytest.raises(InvalidArgument, match="member"):
            await backend.set_add("k", 5)  # type: ignore[arg-type]


async def test_a_clock_returning_nonsense_is_refused() -> None:
    async with RedisBackend.from_url(f"redis://127.0.0.1:{_closed_port()}/0", clock=lambda: 1.5) as backend:  # type: ignore[arg-type,return-value]
        with pytest.raises(InvalidArgument, match="clock"):
            await backend.counter_get("k")


def test_a_client_that_is_not_redis_asyncio_is_refused() -> None:
    with pytest.raises(InvalidArgument, match=r"redis\.asyncio"):
        RedisBackend(object())  # type: ignore[arg-type]


@pytest.mark.redis
async def test_a_server_that_stopped_raises_backend_unavailable(
    server_process: Callable[[str], ServerProcess],
) -> None:
    server = server_process("redis")  # only this test uses it, so it may stop it
    url = server.url
    async with RedisBackend.from_url(url) as backend:
        assert (await backend.counter_incr("k")).value == 1
        server.stop()
        for name in ("counter_incr", "set_members", "ping"):
            with pytest.raises(BackendUnavailable):
                await asyncio.wait_for(CALLS[name](backend), _HANG_S)


async def test_a_cluster_whose_seed_nodes_are_all_down_raises_backend_unavailable() -> None:
    # redis-py raises its RedisClusterException (not a RedisError) when no seed node answers.
    async with RedisBackend.from_url(
        f"redis+cluster://127.0.0.1:{_closed_port()},127.0.0.1:{_closed_port()}"
    ) as backend:
        with pytest.raises(BackendUnavailable, match=r"cluster 127\.0\.0\.1:"):
            await asyncio.wait_for(backend.counter_incr("k"), _HANG_S)
