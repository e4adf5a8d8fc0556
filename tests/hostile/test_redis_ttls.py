"""Whatever clients do through the middleware, the Redis driver leaves no key without a TTL.

Hostile identities (unicode, ``:``, ``{``, ``}``, newlines, 10 KB user ids) connect,
join rooms, send frames and leave, or vanish without leaving; every key the adapter
made the driver write must then expire by itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from redis.asyncio.cluster import RedisCluster

from ratelimit_channels import RateLimitMiddleware
from ratelimit_core import Backend, RedisBackend
from support.backends import REDIS_BACKENDS, NewBackend, backends

IDENTITIES = ["alice", "ü:{x}\n", "{slot}", "a" * 10_000, "#hash", "x y\tz"]


async def _keys_without_ttl(backend: RedisBackend, client: Any) -> tuple[int, list[bytes]]:
    """(keys under the prefix, those of them without a TTL), read through `client` (one with every right)."""
    nodes: list[Any] = client.get_primaries() if isinstance(client, RedisCluster) else [None]
    missing, seen = [], 0
    for node in nodes:
        target = {} if node is None else {"target_nodes": node}
        async for key in client.scan_iter(match=f"{backend.prefix}*", count=500, **target):
            seen += 1
            if await client.pttl(key) == -1:  # -2: the key went away meanwhile
                missing.append(key)
    return seen, missing


def _app(backend: Backend) -> RateLimitMiddleware:
    async def inner(scope: Any, receive: Any, send: Any) -> None:
        while (message := await receive())["type"] != "websocket.disconnect":
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept"})

    return RateLimitMiddleware(
        inner,
        backend=backend,
        conn_per_user=2,
        conn_per_ip=50,
        room_max_members=3,
        room_resolver=lambda scope: scope["query_string"].decode("utf-8", "replace") or None,
        msg_rps=0.5,
        msg_burst=2,
        max_payload_bytes=32,
        lease_ms=5_000,
    )


# memory has no TTLs; its reclaiming is tested in tests/core/test_memory.py
@pytest.mark.parametrize("backend_name", backends(*REDIS_BACKENDS))
async def test_no_key_is_left_without_a_ttl(new_backend: NewBackend, admin_client: Callable[[Any], Any]) -> None:
    backend = new_backend()  # the server's clock: TTLs are exact
    assert isinstance(backend, RedisBackend)
    app = _app(backend)
    sockets = []
    for number, name in enumerate(IDENTITIES):
        communicator = WebsocketCommunicator(app, "/ws/", subprotocols=None)
        communicator.scope["user"] = type("User", (), {"pk": name, "is_authenticated": True})()
        communicator.scope["client"] = [f"10.0.0.{number}", 1]
        communicator.scope["query_string"] = name.encode("utf-8")[:200]
        connected, _ = await communicator.connect(5)
        assert connected
        for frame in ["ok", "x" * 40, "again", "more"]:
            await communicator.send_to(text_data=frame)
        sockets.append(communicator)
    await asyncio.sleep(0)
    for communicator in sockets[::2]:
        await communicator.disconnect()
    # The others vanish without a disconnect, as if their server process died.
    seen, missing = await _keys_without_ttl(backend, admin_client(backend))
    assert seen > 0, "the check looked at the keys the traffic left"
    assert missing == []
