"""BackendCache: memory once per process, Redis once per URL and options per event loop, clearable;
build_backend: short client timeouts and a FallbackBackend around Redis URLs."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from ratelimit_channels import BackendCache, BackendOptions, build_backend
from ratelimit_core import Backend, FallbackBackend, MemoryBackend, RedisBackend
from support.backends import backends
from support.ws_app import User, client, expect_refused, expect_welcome, make_app

REDIS_URL = "redis://127.0.0.1:1/0"  # never connected to: building a client does not connect


async def in_a_new_loop(cache: BackendCache, url: str) -> Backend:
    async def get() -> Backend:
        return cache.get(url)

    return await asyncio.to_thread(asyncio.run, get())


async def test_a_memory_backend_is_built_once_per_process_whatever_the_options() -> None:
    cache = BackendCache()
    backend = cache.get("memory://")
    assert isinstance(backend, MemoryBackend)
    assert cache.get("memory://") is backend
    assert cache.get("memory://", BackendOptions(fallback=False, timeout_ms=7)) is backend
    assert await in_a_new_loop(cache, "memory://") is backend


async def test_a_redis_backend_is_built_once_per_url_per_event_loop() -> None:
    cache = BackendCache()
    backend = cache.get(REDIS_URL)
    assert cache.get(REDIS_URL) is backend
    assert cache.get(REDIS_URL.replace("/0", "/1")) is not backend
    assert await in_a_new_loop(cache, REDIS_URL) is not backend
    await cache.aclose()


async def test_each_distinct_set_of_options_gets_its_own_redis_backend() -> None:
    cache = BackendCache()
    backend = cache.get(REDIS_URL, BackendOptions())
    assert cache.get(REDIS_URL, BackendOptions()) is backend
    others = [
        cache.get(REDIS_URL, BackendOptions(fallback=False)),
        cache.get(REDIS_URL, BackendOptions(on_error="deny")),
        cache.get(REDIS_URL, BackendOptions(timeout_ms=51)),
        cache.get(REDIS_URL, BackendOptions(processes=2)),
        cache.get(REDIS_URL, BackendOptions(cooldown_ms=999)),
    ]
    assert len({id(other) for other in [backend, *others]}) == 6
    await cache.aclose()


async def test_clear_forgets_every_backend() -> None:
    cache = BackendCache()
    memory, redis = cache.get("memory://"), cache.get(REDIS_URL)
    cache.clear()
    assert cache.get("memory://") is not memory
    assert cache.get(REDIS_URL) is not redis
    await cache.aclose()


async def test_the_factory_builds_each_backend_from_its_url_and_options() -> None:
    built: list[tuple[str, BackendOptions]] = []

    def factory(url: str, options: BackendOptions) -> Backend:
        built.append((url, options))
        return MemoryBackend()

    cache = BackendCache(factory)
    cache.get("redis://a/0")
    cache.get("redis://a/0")
    cache.get("redis://a/0", BackendOptions(processes=3))
    cache.get("memory://")
    assert built == [
        ("redis://a/0", BackendOptions()),
        ("redis://a/0", BackendOptions(processes=3)),
        ("memory://", BackendOptions()),
    ]


def test_a_redis_url_is_wrapped_in_a_fallback_backend_built_from_the_options() -> None:
    options = BackendOptions(on_error="deny", timeout_ms=80, processes=4, cooldown_ms=250)
    backend = build_backend(REDIS_URL, options)
    assert isinstance(backend, FallbackBackend)
    assert (backend.on_error, backend.processes, backend.cooldown_ms, backend.timeout_ms) == ("deny", 4, 250, 80)
    assert backend.max_cooldown_ms == 30_000
    assert isinstance(backend.primary, RedisBackend)
    assert isinstance(backend.fallback, MemoryBackend)
    client_options = backend.primary.client.connection_pool.connection_kwargs  # type: ignore[union-attr]
    # The wrapper's watchdog decides; the client's timeouts are the backstop (the warm-up allowance).
    assert (client_options["socket_timeout"], client_options["socket_connect_timeout"]) == (2.0, 2.0)


def test_a_cooldown_longer_than_the_backoff_cap_raises_the_cap() -> None:
    backend = build_backend(REDIS_URL, BackendOptions(cooldown_ms=60_000))
    assert isinstance(backend, FallbackBackend)
    assert backend.max_cooldown_ms == 60_000


def test_without_fallback_a_redis_url_is_a_bare_redis_backend_with_the_timeouts() -> None:
    backend = build_backend(REDIS_URL, BackendOptions(fallback=False, timeout_ms=20))
    assert isinstance(backend, RedisBackend)
    assert backend.client.connection_pool.connection_kwargs["socket_timeout"] == 0.02  # type: ignore[union-attr]


def test_a_memory_url_is_never_wrapped() -> None:
    assert isinstance(build_backend("memory://", BackendOptions(fallback=True)), MemoryBackend)


@pytest.mark.parametrize("backend_name", backends("memory", "redis", "valkey", "cluster"))  # fakeredis has no URL
async def test_the_middleware_builds_its_backend_from_the_url_setting(backend: Backend, backend_url: str) -> None:
    cache = BackendCache()
    app = make_app(backend, backend=backend_url, backend_cache=cache, conn_per_user=1)
    user = User(pk=uuid.uuid4().int)  # the URL's backend shares the default key prefix with other tests
    held = client(app, user=user)
    await expect_welcome(held)
    await expect_refused(client(app, user=user), "connection_limit_exceeded")
    await held.disconnect()
    again = client(app, user=user)
    await expect_welcome(again)
    await again.disconnect()
    await cache.aclose()


async def test_the_middleware_asks_the_cache_for_the_url_with_the_backend_settings() -> None:
    built: list[tuple[str, BackendOptions]] = []

    def factory(url: str, options: BackendOptions) -> Backend:
        built.append((url, options))
        return MemoryBackend()

    app = make_app(
        MemoryBackend(),
        backend=REDIS_URL,
        backend_cache=BackendCache(factory),
        on_backend_error="allow",
        fallback=False,
        backend_timeout_ms=75,
        fallback_processes=3,
        fallback_cooldown_ms=400,
    )
    await expect_welcome(client(app))
    assert built == [
        (REDIS_URL, BackendOptions(fallback=False, on_error="allow", timeout_ms=75, processes=3, cooldown_ms=400))
    ]
