"""Through the middleware: every slot a connection takes is given back exactly once, whatever ends it.

Storage is `HeldCalls`: a call held at a gate still reaches the backend after the
app was cancelled, as Redis runs a command already sent. Each test ends a
connection at one exact await (admission, message gate, heartbeat, release), lets
storage run everything, and then checks that nothing is held, that each slot was
removed once, and that the user can connect again at once (limits of 1).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from ratelimit_core import Backend
from ratelimit_core.policies import ClientIdentity, Occupancy
from ratelimit_core.policies.connections import identity_slots_key, ip_slots_key, room_members_key
from support.held_calls import HeldCalls, calls_to, nth_call
from support.ws_app import User, client, expect_closed, expect_welcome, make_app, occupancy

ALICE = User(pk=1)
ALICE_ID = ClientIdentity("unknown", "1")
LIMITS: dict[str, Any] = {"conn_per_user": 1, "conn_per_ip": 1, "room_max_members": 1}
KEYS = (identity_slots_key(ALICE_ID), ip_slots_key(ALICE_ID.ip), room_members_key("r"))
NOTHING_HELD = Occupancy(identity=0, ip=0, room=0)


def removed_per_key(storage: HeldCalls) -> dict[str, int]:
    """How often a slot was removed from each set (a connection's member is a random id)."""
    per_key: Counter[str] = Counter()
    for (key, _member), count in storage.removals.items():
        per_key[key] += count
    return dict(per_key)


async def nothing_held_and_alice_reconnects(backend: Backend) -> None:
    assert await occupancy(backend, ALICE_ID, "r") == NOTHING_HELD
    socket = client(make_app(backend, **LIMITS), "/ws/rooms/r/", user=ALICE)
    await expect_welcome(socket)
    await socket.disconnect()
    assert await occupancy(backend, ALICE_ID, "r") == NOTHING_HELD


async def cancelled(socket: WebsocketCommunicator) -> None:
    """Wait for the app the server cancelled to end, as it must: with `CancelledError`."""
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(socket.future, timeout=10)


@pytest.mark.parametrize("in_flight", [0, 1, 2], ids=["identity", "ip", "room"])
async def test_a_connection_cancelled_during_admission_gives_back_the_slot_in_flight_too(
    backend: Backend, in_flight: int
) -> None:
    storage = HeldCalls(backend)
    gate = storage.hold(calls_to("set_add", KEYS[in_flight]))
    socket = client(make_app(storage, **LIMITS), "/ws/rooms/r/", user=ALICE)
    await socket.send_input({"type": "websocket.connect"})
    await asyncio.wait_for(gate.started.wait(), timeout=10)
    socket.future.cancel()
    gate.go.set()  # storage runs the add the connection gave up on
    await cancelled(socket)
    await storage.settle()
    # Every slot was asked for at once: each counts as taken (the held one too) and is removed exactly once.
    assert removed_per_key(storage) == dict.fromkeys(KEYS, 1)
    await nothing_held_and_alice_reconnects(backend)


async def test_a_connection_cancelled_at_the_message_gate_gives_back_every_slot(backend: Backend) -> None:
    storage = HeldCalls(backend)
    gate = storage.hold(calls_to("bucket_consume"))
    socket = client(make_app(storage, msg_rps=100, **LIMITS), "/ws/rooms/r/", user=ALICE)
    await expect_welcome(socket)
    await socket.send_to(text_data="hi")
    await asyncio.wait_for(gate.started.wait(), timeout=10)
    socket.future.cancel()
    await cancelled(socket)
    await storage.settle()
    assert removed_per_key(storage) == dict.fromkeys(KEYS, 1)
    await nothing_held_and_alice_reconnects(backend)


@pytest.mark.parametrize("turns", [0, 1, 2, 5, 20])
async def test_a_release_cancelled_half_way_and_again_during_clean_up_still_removes_every_slot_once(
    backend: Backend, turns: int
) -> None:
    storage = HeldCalls(backend)
    gate = storage.hold(calls_to("set_remove", KEYS[1]))
    socket = client(make_app(storage, **LIMITS), "/ws/rooms/r/", user=ALICE)
    await expect_welcome(socket)
    await socket.send_input({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(gate.started.wait(), timeout=10)  # the release on disconnect is half way
    socket.future.cancel()  # the server gives up on the app
    for _ in range(turns):  # the second cancellation lands somewhere in the clean-up
        await asyncio.sleep(0)
    socket.future.cancel()
    gate.go.set()
    await cancelled(socket)
    await storage.settle()
    assert removed_per_key(storage) == dict.fromkeys(KEYS, 1)
    await nothing_held_and_alice_reconnects(backend)


@pytest.mark.parametrize("end", ["client closes", "server cancels"])
async def test_a_heartbeat_cancelled_mid_refresh_cannot_bring_a_slot_back(backend: Backend, end: str) -> None:
    storage = HeldCalls(backend)
    refresh = storage.hold(calls_to("set_add", capacity=None))  # admission always gives a capacity
    socket = client(make_app(storage, lease_ms=60_000, heartbeat_ms=1, **LIMITS), "/ws/rooms/r/", user=ALICE)
    await expect_welcome(socket)
    await asyncio.wait_for(refresh.started.wait(), timeout=10)
    if end == "client closes":
        await socket.send_input({"type": "websocket.disconnect", "code": 1000})
        refresh.go.set()  # the refresh reaches storage: the release must come after it
        await socket.wait(10)
    else:
        socket.future.cancel()
        refresh.go.set()
        await cancelled(socket)
    await storage.settle()
    assert removed_per_key(storage) == dict.fromkeys(KEYS, 1)
    await nothing_held_and_alice_reconnects(backend)


async def client_closes(socket: WebsocketCommunicator) -> None:
    await socket.disconnect()


async def consumer_closes(socket: WebsocketCommunicator) -> None:
    await socket.send_to(text_data="close-me")
    message = await socket.receive_output()
    assert (message["type"], message["code"]) == ("websocket.close", 4321)
    await socket.send_input({"type": "websocket.disconnect", "code": 4321})  # as the server confirms a close
    await socket.wait()


async def consumer_raises(socket: WebsocketCommunicator) -> None:
    await socket.send_to(text_data="boom")
    with pytest.raises(RuntimeError, match="the consumer failed"):
        await socket.wait()


async def rate_limit_closes(socket: WebsocketCommunicator) -> None:
    await socket.send_to(text_data="a")
    assert await socket.receive_from() == "a"
    await socket.send_to(text_data="b")
    assert (await socket.receive_json_from())["code"] == "rate_limit_exceeded"
    await expect_closed(socket, 4010, "rate_limit_exceeded")


async def payload_closes(socket: WebsocketCommunicator) -> None:
    await socket.send_to(text_data="far too long")
    assert (await socket.receive_json_from())["code"] == "payload_too_large"
    await expect_closed(socket, 4009, "payload_too_large")


async def server_cancels(socket: WebsocketCommunicator) -> None:
    socket.future.cancel()
    await cancelled(socket)


ENDS: dict[str, Callable[[WebsocketCommunicator], Coroutine[Any, Any, None]]] = {
    "client closes": client_closes,
    "consumer closes": consumer_closes,
    "consumer raises": consumer_raises,
    "rate limit closes": rate_limit_closes,
    "payload too large closes": payload_closes,
    "server cancels": server_cancels,
}


@pytest.mark.parametrize("end", ENDS)
async def test_however_a_connection_ends_each_slot_is_removed_exactly_once(backend: Backend, end: str) -> None:
    storage = HeldCalls(backend)
    app = make_app(storage, msg_rps=0.001, msg_strikes=1, max_payload_bytes=10, **LIMITS)
    socket = client(app, "/ws/rooms/r/", user=ALICE)
    await expect_welcome(socket)
    await ENDS[end](socket)
    await storage.settle()
    assert removed_per_key(storage) == dict.fromkeys(KEYS, 1)
    await nothing_held_and_alice_reconnects(backend)


@pytest.mark.parametrize("seed", range(2))
async def test_cancellations_at_random_awaits_over_many_connections_leave_nothing_held(
    backend: Backend, seed: int
) -> None:
    rng = random.Random(seed)
    removals: Counter[tuple[str, str]] = Counter()
    for cycle in range(20):
        storage = HeldCalls(backend)
        # Storage calls per connection: 3 adds, 1 message, 3 removals; a point past them is never reached.
        gate = storage.hold(nth_call(rng.randrange(9)))
        socket = client(make_app(storage, msg_rps=1_000, **LIMITS), "/ws/rooms/r/", user=ALICE)

        async def connect_message_leave(socket: WebsocketCommunicator = socket) -> None:
            await expect_welcome(socket)
            await socket.send_to(text_data="hi")
            assert await socket.receive_from() == "hi"
            await socket.disconnect()

        driver = asyncio.create_task(connect_message_leave())
        started = asyncio.create_task(gate.started.wait())
        await asyncio.wait([driver, started], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if gate.started.is_set():
            driver.cancel()  # the client side is not under test: it just stops waiting
            socket.future.cancel()
            if rng.random() < 0.5:  # and again, somewhere in the clean-up
                for _ in range(rng.randrange(5)):
                    await asyncio.sleep(0)
                socket.future.cancel()
        else:
            await driver  # the whole connection ran: its own failures show here
        gate.go.set()
        await asyncio.wait([driver, socket.future], timeout=30)
        assert socket.future.done()
        assert socket.future.cancelled() or socket.future.exception() is None
        started.cancel()
        await storage.settle()
        removals.update(storage.removals)
        assert await occupancy(backend, ALICE_ID, "r") == NOTHING_HELD, f"cycle {cycle}"
    assert removals, "slots were taken and given back"
    assert max(removals.values()) == 1, "no slot was removed twice"
    await nothing_held_and_alice_reconnects(backend)
