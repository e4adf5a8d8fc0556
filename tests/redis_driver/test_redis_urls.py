"""backend_from_url: one scheme table, clear errors, and client defaults that never hang."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from functools import partial
from typing import Any

import pytest
import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection

from ratelimit_core import InvalidArgument, ManualClock, MemoryBackend, RedisBackend, backend_from_url
from ratelimit_core.redis import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_RETRIES, DEFAULT_SOCKET_TIMEOUT_S


def _redis(url: str, **options: Any) -> RedisBackend:
    backend = backend_from_url(url, **options)
    assert isinstance(backend, RedisBackend)
    return backend


async def test_memory_url_builds_a_memory_backend() -> None:
    clock = ManualClock(5)
    backend = backend_from_url("memory://", clock=clock, prefix="p:")
    assert isinstance(backend, MemoryBackend)
    assert (backend.clock, backend.prefix) == (clock, "p:")


@pytest.mark.parametrize("url", ["memory://host", "memory:///path", "memory://?x=1"])
def test_memory_url_with_anything_after_the_scheme_is_refused(url: str) -> None:
    with pytest.raises(InvalidArgument, match="memory://"):
        backend_from_url(url)


@pytest.mark.redis
async def test_redis_url_builds_a_working_backend_that_owns_its_client(request: pytest.FixtureRequest) -> None:
    redis_url: str = request.getfixturevalue("redis_url")
    clock = ManualClock(1_000)
    async with _redis(redis_url, clock=clock, prefix="url-test:") as backend:
        await backend.ping()
        assert (await backend.counter_incr("k")).value == 1
        await backend.clear()
        assert backend.clock is clock
        assert backend.prefix == "url-test:"


def test_client_defaults_are_short_timeouts_and_one_retry() -> None:
    kwargs = _redis("redis://127.0.0.1:6379/2").client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == DEFAULT_SOCKET_TIMEOUT_S == 0.5
    assert kwargs["socket_connect_timeout"] == DEFAULT_CONNECT_TIMEOUT_S == 0.5
    assert kwargs["retry"].get_retries() == DEFAULT_RETRIES == 1
    assert kwargs["db"] == 2


def test_query_string_and_options_override_the_defaults() -> None:
    from_query = _redis("redis://127.0.0.1/0?socket_timeout=2.5", socket_connect_timeout=3)
    kwargs = from_query.client.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (2.5, 3)


def test_rediss_and_unix_urls_pick_their_connection_class() -> None:
    tls = _redis("rediss://127.0.0.1:6380/0").client.connection_pool
    assert tls.connection_class is SSLConnection
    unix = _redis("unix:///tmp/redis.sock?db=3").client.connection_pool
    assert unix.connection_class is UnixDomainSocketConnection
    assert (unix.connection_kwargs["path"], unix.connection_kwargs["db"]) == ("/tmp/redis.sock", 3)


@pytest.mark.parametrize("url", ["mysql://host/db", "redis+unknown://h", "localhost:6379", "", "REDIS:/host"])
def test_unknown_scheme_lists_the_valid_ones(url: str) -> None:
    with pytest.raises(InvalidArgument, match="memory://, redis://, rediss://, unix://"):
        backend_from_url(url)


def test_malformed_redis_url_is_invalid_without_echoing_the_password() -> None:
    with pytest.raises(InvalidArgument) as caught:
        backend_from_url("redis://:hunter2@127.0.0.1:notaport/0")
    assert "hunter2" not in str(caught.value)


def test_non_string_url_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="url must be a str"):
        backend_from_url(b"memory://")  # type: ignore[arg-type]


def test_core_imports_and_memory_urls_work_without_redis_installed() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["redis"] = None  # as if the package were not installed
        import ratelimit_core
        assert type(ratelimit_core.backend_from_url("memory://")).__name__ == "MemoryBackend"
        try:
            ratelimit_core.backend_from_url("redis://127.0.0.1")
        except ratelimit_core.InvalidArgument as exc:
            assert "'redis' package" in str(exc), exc
        else:
            raise AssertionError("redis:// worked without redis")
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.stdout.strip() == "ok", done.stderr


def test_a_url_given_in_place_of_a_client_points_to_from_url_without_echoing_it() -> None:
    with pytest.raises(InvalidArgument, match=r"RedisBackend\.from_url") as caught:
        RedisBackend("redis://:s3cret@127.0.0.1:6379/0")  # type: ignore[arg-type]
    assert "s3cret" not in str(caught.value)


async def test_a_client_passed_in_is_closed_by_the_backend_only_when_asked() -> None:
    kept, handed_over = redis.asyncio.Redis(), redis.asyncio.Redis()
    closed: list[redis.asyncio.Redis] = []

    async def record_close(client: redis.asyncio.Redis) -> None:
        closed.append(client)

    for client in (kept, handed_over):
        client.aclose = partial(record_close, client)  # type: ignore[method-assign]
    async with RedisBackend(kept), RedisBackend(handed_over, close_client=True):
        pass
    assert closed == [handed_over]


def test_a_single_connection_client_is_refused() -> None:
    # Such a client sends a command again after a lost reply, and serialises every round trip.
    with pytest.raises(InvalidArgument, match="single_connection_client"):
        backend_from_url("redis://127.0.0.1:6379/0", single_connection_client=True)


def test_a_cluster_client_never_sends_a_command_again_itself() -> None:
    # redis-py's cluster client would send a command (or a whole pipeline) again after a lost
    # reply; the coalescer sends again only what may run twice.
    client = _redis("redis+cluster://127.0.0.1:7000,127.0.0.1:7001").client
    assert isinstance(client, RedisCluster)
    assert client.retry.get_retries() == 0
