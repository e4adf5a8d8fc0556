"""Two real server processes (uvicorn and daphne) share one real redis-server: the limits hold across them.

Driven by real `websockets` clients, which see the wire contract: the error frame,
then close 4008 (connections, rooms), 4009 (payload) or 4010 (strikes), and the
rate refusal with its real ``retry_after_ms`` while the socket stays open.
"""

from __future__ import annotations

import asyncio

import pytest

from ratelimit_core import backend_from_url
from ratelimit_core.policies import ClientIdentity, CloseCode, ConnectionLimits, ConnectionPolicy, ErrorCode
from support.app_servers import AppServer, AppServerPool
from support.servers import ServerProcess
from support.ws_clients import Players, eventually, next_frame, read_refusal

pytestmark = pytest.mark.redis  # real processes sharing a real Redis

LIMITS = {
    "WS_RATE_CONN_PER_USER": 2,
    "WS_RATE_CONN_PER_IP": 50,  # every client here is 127.0.0.1
    "WS_RATE_ROOM_MAX_MEMBERS": 3,
    "WS_RATE_MSG_RPS": 1,  # slow refill: no token comes back while a test sends
    "WS_RATE_MSG_BURST": 5,
    "WS_RATE_MSG_STRIKES": 3,
    "WS_MAX_PAYLOAD_BYTES": 1024,
    "WS_RATE_CONN_RETRY_MS": 5000,
    # A slow answer on a loaded machine is not an outage here (the fallback would then limit per process).
    "WS_RATE_BACKEND_TIMEOUT_MS": 2000,
}
_RELEASE_WITHIN_S = 5.0


@pytest.fixture
def processes(server: ServerProcess, app_pool: AppServerPool) -> tuple[AppServer, AppServer]:
    """The example served twice on the same Redis: by uvicorn (A) and by daphne (B)."""
    return app_pool.start("uvicorn", server.url, **LIMITS), app_pool.start("daphne", server.url, **LIMITS)


async def _user_slots(server: ServerProcess, user: str) -> int:
    async with backend_from_url(server.url) as backend:
        occupancy = await ConnectionPolicy(backend, ConnectionLimits()).occupancy(ClientIdentity("127.0.0.1", user))
    return occupancy.identity


async def test_a_users_third_socket_on_the_other_process_is_refused_with_4008(
    processes: tuple[AppServer, AppServer], players: Players, server: ServerProcess
) -> None:
    a, b = processes
    first = await players.join(a, "arena", "alice")
    await players.join(a, "lobby", "alice")
    refusal = await players.refused(b, "arena", "alice")
    assert refusal.frame["code"] == ErrorCode.CONNECTION_LIMIT_EXCEEDED
    assert refusal.frame["retry_after_ms"] == 5000
    assert refusal.close_code == CloseCode.CONNECTION_REFUSED
    await first.close()

    async def one_slot_left() -> bool:
        return await _user_slots(server, "alice") == 1

    await eventually(one_slot_left, within_s=_RELEASE_WITHIN_S)
    await players.join(b, "arena", "alice")
    assert (await players.refused(a, "arena", "alice")).close_code == CloseCode.CONNECTION_REFUSED


async def test_a_full_room_refuses_the_next_member_on_either_process_with_4008(
    processes: tuple[AppServer, AppServer], players: Players
) -> None:
    a, b = processes
    await players.join(a, "final", "p1")
    await players.join(b, "final", "p2")
    await players.join(a, "final", "p3")
    for process in (a, b):
        refusal = await players.refused(process, "final", "p4")
        assert (refusal.frame["code"], refusal.close_code) == (ErrorCode.ROOM_FULL, CloseCode.CONNECTION_REFUSED)
    await players.join(b, "semifinal", "p4")  # another room is not affected


async def test_a_frame_over_the_payload_cap_is_refused_with_4009_counting_utf8_bytes(
    processes: tuple[AppServer, AppServer], players: Players
) -> None:
    for process in processes:
        socket = await players.join(process, "payload", f"bob-{process.asgi_server}")
        await socket.send("x" * 1024)  # exactly the cap passes
        assert (await next_frame(socket))["text"] == "x" * 1024
        await socket.send("é" * 513)  # 513 characters, 1026 bytes
        refusal = await read_refusal(socket)
        assert refusal.frame["code"] == ErrorCode.PAYLOAD_TOO_LARGE
        assert refusal.frame["retry_after_ms"] is None
        assert refusal.close_code == CloseCode.PAYLOAD_TOO_LARGE


async def test_a_users_message_rate_is_shared_across_processes_and_refusals_carry_retry_after_ms(
    processes: tuple[AppServer, AppServer], players: Players
) -> None:
    a, b = processes
    on_a = await players.join(a, "chat", "carol")
    on_b = await players.join(b, "chat", "carol")
    for number in range(5):  # the burst, spent through process A
        await on_a.send(f"a{number}")
    assert [(await next_frame(on_a))["text"] for _ in range(5)] == [f"a{number}" for number in range(5)]
    await on_b.send("too soon")
    refusal = await read_refusal(on_b)
    assert refusal.frame["code"] == ErrorCode.RATE_LIMIT_EXCEEDED
    assert 0 < refusal.frame["retry_after_ms"] <= 1000  # one token per second
    assert refusal.close_code is None, "a rate refusal drops the message and keeps the socket open"
    await asyncio.sleep(refusal.frame["retry_after_ms"] / 1000)  # waiting as told, not measuring
    await on_b.send("on time")
    assert await next_frame(on_b) == {"type": "chat", "user": "carol", "text": "on time"}


async def test_the_strikes_th_refusal_in_a_row_closes_the_socket_with_4010(
    processes: tuple[AppServer, AppServer], players: Players
) -> None:
    for process in processes:
        user = f"dave-{process.asgi_server}"
        socket = await players.join(process, "strikes", user)
        for number in range(5):
            await socket.send(f"m{number}")
        assert [(await next_frame(socket))["type"] for _ in range(5)] == ["chat"] * 5
        refusals = []
        for number in range(LIMITS["WS_RATE_MSG_STRIKES"]):
            await socket.send(f"over {number}")
            refusals.append(await read_refusal(socket))
        assert [refusal.frame["code"] for refusal in refusals] == [ErrorCode.RATE_LIMIT_EXCEEDED] * 3
        assert [refusal.close_code for refusal in refusals] == [None, None, CloseCode.RATE_LIMITED]
