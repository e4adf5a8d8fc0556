"""Real redis-server (and valkey-server) outages under live WebSocket traffic.

The middleware runs on a ``redis://`` URL, so it builds its own `FallbackBackend`
(the default). Servers are killed (SIGKILL: gone with their data) or frozen
(SIGSTOP: connections stay open, nothing answers) while several sockets send
frames. Nothing may reach the consumer or the client as an exception, the
fallback keeps admitting and limiting, and the primary is used again once the
server is back. Real time is unavoidable here; every wait is bounded, and the
only timing assertion is an upper bound on the delay of a frame while the server
is frozen, far below how long it stays frozen.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import port_for
import pytest
from channels.testing import WebsocketCommunicator

from ratelimit_channels import BackendCache, BackendOptions
from ratelimit_core import FallbackBackend, MemoryBackend, RedisBackend
from ratelimit_core.policies import ClientIdentity, Occupancy, OnError
from support.servers import ServerProcess
from support.ws_app import (
    User,
    client,
    expect_closed,
    expect_refused,
    expect_welcome,
    make_app,
    occupancy,
    open_socket,
    router,
)

TIMEOUT_MS = 200
"""The backend timeout in these tests: above the default 50 ms, so a loaded CI machine is not an outage."""
COOLDOWN_MS = 50
OUTAGE_OPTIONS = BackendOptions(timeout_ms=TIMEOUT_MS, cooldown_ms=COOLDOWN_MS)
FRAME_BOUND_S = 1.0
"""The longest a frame may wait for its echo while the server is frozen (5x the timeout)."""
FROZEN_S = 2.0
"""How long the server stays frozen: longer than `FRAME_BOUND_S`, so a frame waiting for the server fails."""
PACE_S = 0.01
POLLS = 200
POLL_S = 0.05
ALICE = User(pk=1)
ALICE_ID = ClientIdentity("unknown", "1")


@pytest.fixture
async def cache() -> AsyncIterator[BackendCache]:
    cache = BackendCache()
    yield cache
    await cache.aclose()


@pytest.fixture
async def storage(server: ServerProcess) -> AsyncIterator[RedisBackend]:
    """A separate client on the server, to see what the primary holds (the middleware's key prefix)."""
    backend = RedisBackend.from_url(server.url, socket_timeout=5)
    yield backend
    await backend.aclose()


def outage_app(server: ServerProcess, cache: BackendCache, log: list[Any] | None = None, **overrides: Any) -> Any:
    overrides.setdefault("backend_timeout_ms", TIMEOUT_MS)
    overrides.setdefault("fallback_cooldown_ms", COOLDOWN_MS)
    return make_app(MemoryBackend(), router(log), backend=server.url, backend_cache=cache, **overrides)


def wrapper(server: ServerProcess, cache: BackendCache) -> FallbackBackend:
    backend = cache.get(server.url, OUTAGE_OPTIONS)
    assert isinstance(backend, FallbackBackend)
    return backend


class Chatter:
    """One socket sending frames until stopped, checking every echo and recording its delay."""

    def __init__(self, socket: WebsocketCommunicator, name: str) -> None:
        self.socket = socket
        self.name = name
        self.delays: list[float] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            text = f"{self.name}:{n}"
            started = time.monotonic()
            await self.socket.send_to(text_data=text)
            # Anything but the echo (an error frame, a close) or no answer in time fails the test.
            assert await self.socket.receive_from(timeout=FRAME_BOUND_S) == text
            self.delays.append(time.monotonic() - started)
            n += 1
            await asyncio.sleep(PACE_S)

    async def sent(self, count: int) -> None:
        """Wait until `count` more frames have been echoed."""
        target = len(self.delays) + count
        for _ in range(POLLS):
            if len(self.delays) >= target:
                return
            await asyncio.sleep(POLL_S)
        pytest.fail(f"{self.name} stopped getting echoes")


async def chatting(app: Any, count: int) -> tuple[list[Chatter], asyncio.Future[list[None]]]:
    chatters = []
    for n in range(count):
        socket = client(app, user=User(pk=100 + n))
        assert (await expect_welcome(socket))["degraded"] is False
        chatters.append(Chatter(socket, f"chatter{n}"))
    traffic = asyncio.gather(*(chatter.run() for chatter in chatters))
    for chatter in chatters:
        await chatter.sent(3)
    return chatters, traffic


async def stop_chatting(chatters: list[Chatter], traffic: asyncio.Future[list[None]]) -> None:
    for chatter in chatters:
        chatter.stop.set()
    await traffic  # raises what any chatter raised
    for chatter in chatters:
        await chatter.socket.disconnect()


async def until_primary_is_used(app: Any) -> None:
    """Open sockets (bounded) until one is admitted by the primary again (under "deny", refused till then)."""
    for n in range(POLLS):
        probe = client(app, user=User(pk=10_000 + n))
        frame = await open_socket(probe)
        if frame["type"] == "error":
            assert frame["code"] == "backend_unavailable", frame
            await expect_closed(probe, 1013, "backend_unavailable")
        else:
            await probe.disconnect()
            if frame["degraded"] is False:
                return
        await asyncio.sleep(POLL_S)
    pytest.fail("the primary was not used again after the server came back")


async def until_degraded(backend: FallbackBackend) -> None:
    for _ in range(POLLS):
        if backend.degraded:
            return
        await asyncio.sleep(POLL_S)
    pytest.fail("the outage was never noticed")


async def until_held(storage: RedisBackend, count: int) -> None:
    for _ in range(POLLS):
        if (await occupancy(storage, ALICE_ID)).identity == count:
            return
        await asyncio.sleep(POLL_S)
    pytest.fail(f"the primary never held {count} slots for alice: {await occupancy(storage, ALICE_ID)}")


def no_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


async def test_a_server_killed_mid_traffic_is_replaced_by_the_fallback_until_it_is_back(
    server: ServerProcess, cache: BackendCache, storage: RedisBackend, caplog: pytest.LogCaptureFixture
) -> None:
    log: list[Any] = []
    app = outage_app(server, cache, log, conn_per_user=3, msg_rps=10_000, msg_burst=10_000, heartbeat_ms=100)
    held = [client(app, user=ALICE) for _ in range(2)]
    for socket in held:
        assert (await expect_welcome(socket))["degraded"] is False
    chatters, traffic = await chatting(app, 4)

    server.kill()
    # Alice holds 2 of 3 slots through this process: the fallback lets exactly 1 more in.
    third = client(app, user=ALICE)
    assert (await expect_welcome(third))["degraded"] is True
    refused = await expect_refused(client(app, user=ALICE), "connection_limit_exceeded")
    assert refused["message"] == "too many connections for this user (limit 3)"
    newcomer = client(app, user=User(pk=2))
    assert (await expect_welcome(newcomer))["degraded"] is True
    for chatter in chatters:
        await chatter.sent(3)  # traffic flows through the outage

    await asyncio.to_thread(server.restart)  # the event loop keeps serving meanwhile
    await until_primary_is_used(app)
    for chatter in chatters:
        await chatter.sent(3)
    # The restarted server lost its data: the outage's slot was replayed, the two older ones come back
    # at their next heartbeat. Then the primary enforces the limit again.
    await until_held(storage, 3)
    refused = await expect_refused(client(app, user=ALICE), "connection_limit_exceeded")

    await stop_chatting(chatters, traffic)
    for socket in [*held, third, newcomer]:
        await socket.disconnect()
    assert await occupancy(storage, ALICE_ID) == Occupancy(identity=0, ip=0)
    assert await occupancy(wrapper(server, cache).fallback, ALICE_ID) == Occupancy(identity=0, ip=0)
    assert set(log) == {("disconnect", 1000)}
    assert no_errors(caplog) == []


async def test_a_frozen_server_delays_frames_by_about_the_timeout_and_is_used_again_after_it_thaws(
    server: ServerProcess, cache: BackendCache, storage: RedisBackend, caplog: pytest.LogCaptureFixture
) -> None:
    log: list[Any] = []
    app = outage_app(server, cache, log, conn_per_user=3, msg_rps=10_000, msg_burst=10_000)
    held = [client(app, user=ALICE) for _ in range(2)]
    for socket in held:
        assert (await expect_welcome(socket))["degraded"] is False
    chatters, traffic = await chatting(app, 4)

    server.pause()
    try:
        frozen_at = time.monotonic()
        await until_degraded(wrapper(server, cache))
        # Released while the server is frozen: in the fallback now, replayed onto the primary later.
        await held[0].disconnect()
        joined = [client(app, user=ALICE) for _ in range(2)]
        for socket in joined:
            assert (await expect_welcome(socket))["degraded"] is True
        await expect_refused(client(app, user=ALICE), "connection_limit_exceeded")
        await asyncio.sleep(max(0.0, FROZEN_S - (time.monotonic() - frozen_at)))  # keep chatting while frozen
    finally:
        server.resume()
    await until_primary_is_used(app)
    await stop_chatting(chatters, traffic)
    # Every frame got its echo within FRAME_BOUND_S (or the chatter failed); a frozen server waited on
    # without a timeout would have held some for FROZEN_S.
    assert max(delay for chatter in chatters for delay in chatter.delays) < FRAME_BOUND_S

    # The server kept its data: the released slot is gone, the two taken meanwhile are there, once each.
    assert await occupancy(storage, ALICE_ID) == Occupancy(identity=3, ip=0)
    await expect_refused(client(app, user=ALICE), "connection_limit_exceeded")
    for socket in [held[1], *joined]:
        await socket.disconnect()
    assert await occupancy(storage, ALICE_ID) == Occupancy(identity=0, ip=0)
    assert await occupancy(wrapper(server, cache).fallback, ALICE_ID) == Occupancy(identity=0, ip=0)
    again = client(app, user=ALICE)
    assert (await expect_welcome(again))["degraded"] is False
    assert await occupancy(storage, ALICE_ID) == Occupancy(identity=1, ip=0)
    await again.disconnect()
    assert set(log) == {("disconnect", 1000)}
    assert no_errors(caplog) == []


@pytest.mark.parametrize("on_error", ["fallback", "allow", "deny"])
async def test_each_outage_policy_on_a_killed_server(
    server: ServerProcess, cache: BackendCache, on_error: OnError, caplog: pytest.LogCaptureFixture
) -> None:
    app = outage_app(server, cache, on_backend_error=on_error, conn_per_user=3, msg_rps=1_000, msg_burst=2)
    held = [client(app, user=ALICE) for _ in range(2)]
    for socket in held:
        assert (await expect_welcome(socket))["degraded"] is False
    server.kill()

    if on_error == "deny":
        refused = await expect_refused(client(app, user=ALICE), "backend_unavailable", close_code=1013)
        assert refused["retry_after_ms"] == 5_000
        for n in range(3):  # beyond the burst: every frame is dropped, the socket stays open
            await held[0].send_to(text_data=f"m{n}")
            assert (await held[0].receive_json_from())["code"] == "backend_unavailable"
    else:
        extra = [client(app, user=ALICE) for _ in range(3 if on_error == "allow" else 1)]
        for socket in extra:
            assert (await expect_welcome(socket))["degraded"] is True
        if on_error == "fallback":
            await expect_refused(client(app, user=ALICE), "connection_limit_exceeded")
        texts = [f"m{n}" for n in range(3 if on_error == "allow" else 2)]  # allow: beyond the burst
        for text in texts:
            await held[0].send_to(text_data=text)
            assert await held[0].receive_from() == text
        held += extra

    await asyncio.to_thread(server.restart)
    await until_primary_is_used(app)
    await held[1].send_to(text_data="after")
    assert await held[1].receive_from() == "after"
    for socket in held:
        await socket.disconnect()
    assert no_errors(caplog) == []


@pytest.mark.redis
@pytest.mark.parametrize("on_error", ["fallback", "allow", "deny"])
async def test_without_the_fallback_a_dead_port_never_raises(
    cache: BackendCache, on_error: OnError, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://127.0.0.1:{port_for.select_random()}/0"  # nothing listens there
    app = make_app(
        MemoryBackend(),
        backend=url,
        backend_cache=cache,
        fallback=False,
        on_backend_error=on_error,
        conn_per_user=1,
        msg_rps=1,
        msg_burst=1,
    )
    assert isinstance(cache.get(url, BackendOptions(fallback=False, on_error=on_error)), RedisBackend)
    with caplog.at_level(logging.WARNING):
        if on_error == "deny":
            await expect_refused(client(app, user=ALICE), "backend_unavailable", close_code=1013)
        else:
            sockets = [client(app, user=ALICE) for _ in range(2)]  # fail open: beyond the limit of 1
            for socket in sockets:
                assert (await expect_welcome(socket))["degraded"] is True
            for n in range(3):  # beyond the burst of 1
                await sockets[0].send_to(text_data=f"m{n}")
                assert await sockets[0].receive_from() == f"m{n}"
            for socket in sockets:
                await socket.disconnect()
    assert "backend unavailable during connection admission" in caplog.text
    assert no_errors(caplog) == []


async def test_without_the_fallback_a_frozen_server_delays_each_frame_by_at_most_the_timeout(
    server: ServerProcess, cache: BackendCache, caplog: pytest.LogCaptureFixture
) -> None:
    app = outage_app(server, cache, fallback=False, on_backend_error="allow", msg_rps=10_000, msg_burst=10_000)
    chatters, traffic = await chatting(app, 2)
    server.pause()
    try:
        for chatter in chatters:
            await chatter.sent(3)  # each waited for the socket timeout, then passed
    finally:
        server.resume()
    await stop_chatting(chatters, traffic)
    assert max(delay for chatter in chatters for delay in chatter.delays) < FRAME_BOUND_S
    assert no_errors(caplog) == []
