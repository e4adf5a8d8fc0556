"""BackendCache: memory once per process, Redis once per URL per event loop, clearable."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from ratelimit_channels import BackendCache
from ratelimit_core import Backend, MemoryBackend

from ws_app import User, client, expect_refused, expect_welcome, make_app

REDIS_URL = "redis://127.0.0.1:1/0"  # never connected to: building a client does not connect


async def in_a_new_loop(cache: BackendCache, url: str) -> Backend:
    async def get() -> Backend:
        return cache.get(url)

    return await asyncio.to_thread(asyncio.run, get())


async def test_a_memory_backend_is_built_once_per_process() -> None:
    cache = BackendCache()
    backend = cache.get("memory://")
    assert isinstance(backend, MemoryBackend)
    assert cache.get("memory://") is backend
    assert await in_a_new_loop(cache, "memory://") is backend


async def test_a_redis_backend_is_built_once_per_url_per_event_loop() -> None:
    cache = BackendCache()
    backend = cache.get(REDIS_URL)
    assert cache.get(REDIS_URL) is backend
    assert cache.get(REDIS_URL.replace("/0", "/1")) is not backend
    assert await in_a_new_loop(cache, REDIS_URL) is not backend
    await cache.aclose()


async def test_clear_forgets_every_backend() -> None:
    cache = BackendCache()
    memory, redis = cache.get("memory://"), cache.get(REDIS_URL)
    cache.clear()
    assert cache.get("memory://") is not memory
    assert cache.get(REDIS_URL) is not redis
    await cache.aclose()


async def test_the_factory_builds_each_backend() -> None:
    built: list[str] = []

    def factory(url: str) -> Backend:
        built.append(url)
        return MemoryBackend()

    cache = BackendCache(factory)
    cache.get("redis://a/0")
    cache.get("redis://a/0")
    cache.get("memory://")
    assert built == ["redis://a/0", "memory://"]


async def test_the_middleware_builds_its_backend_from_the_url_setting(
    backend: Backend, backend_url: str | None
) -> None:
    if backend_url is None:
        pytest.skip("fakeredis has no URL")
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
