"""Connection limits through the middleware on every backend: per user, per IP, concurrency."""

from __future__ import annotations

import asyncio

from ratelimit_core import Backend
from ratelimit_core.policies import ClientIdentity, Occupancy
from support.ws_app import User, client, expect_refused, expect_welcome, make_app, occupancy, open_socket

ALICE = User(pk=1)
BOB = User(pk=2)


async def test_the_third_socket_of_a_user_with_limit_two_gets_the_frame_and_4008(backend: Backend) -> None:
    app = make_app(backend, conn_per_user=2, conn_retry_ms=2_500)
    first, second = client(app, user=ALICE), client(app, user=ALICE)
    await expect_welcome(first)
    await expect_welcome(second)
    frame = await expect_refused(client(app, user=ALICE), "connection_limit_exceeded")
    assert frame["retry_after_ms"] == 2_500
    assert frame["message"]
    await expect_welcome(client(app, user=BOB))  # users are independent


async def test_closing_a_socket_lets_a_new_one_in_and_all_counters_return_to_zero(backend: Backend) -> None:
    app = make_app(backend, conn_per_user=2, conn_per_ip=5, room_max_members=5)
    sockets = [client(app, "/ws/rooms/r1/", user=ALICE, ip="1.1.1.1") for _ in range(2)]
    for socket in sockets:
        await expect_welcome(socket)
    identity = ClientIdentity("1.1.1.1", "1")
    assert await occupancy(backend, identity, "r1") == Occupancy(identity=2, ip=2, room=2)
    await expect_refused(client(app, "/ws/rooms/r1/", user=ALICE, ip="1.1.1.1"), "connection_limit_exceeded")
    await sockets[0].disconnect()
    replacement = client(app, "/ws/rooms/r1/", user=ALICE, ip="1.1.1.1")
    await expect_welcome(replacement)
    for socket in (sockets[1], replacement):
        await socket.disconnect()
    assert await occupancy(backend, identity, "r1") == Occupancy(identity=0, ip=0, room=0)


async def test_the_ip_limit_counts_every_socket_from_the_ip_signed_in_or_not(backend: Backend) -> None:
    app = make_app(backend, conn_per_ip=2)
    held = [client(app, user=ALICE, ip="10.1.1.1"), client(app, ip="10.1.1.1")]
    for socket in held:
        await expect_welcome(socket)
    frame = await expect_refused(client(app, user=BOB, ip="10.1.1.1"), "connection_limit_exceeded")
    assert "IP" in frame["message"]
    await expect_welcome(client(app, user=BOB, ip="10.2.2.2"))


async def test_anonymous_sockets_are_limited_per_ip_by_the_per_user_limit(backend: Backend) -> None:
    app = make_app(backend, conn_per_user=1)
    held = client(app, ip="10.1.1.1")
    await expect_welcome(held)
    await expect_refused(client(app, ip="10.1.1.1"), "connection_limit_exceeded")
    await expect_welcome(client(app, ip="10.2.2.2"))
    await expect_welcome(client(app, user=ALICE, ip="10.1.1.1"))


async def test_sockets_without_a_client_address_share_one_limited_identity(backend: Backend) -> None:
    app = make_app(backend, conn_per_ip=1)
    held = client(app)  # no scope["client"], as under the test communicator
    await expect_welcome(held)
    await expect_refused(client(app), "connection_limit_exceeded")


async def test_a_limit_of_zero_admits_nobody_and_unset_limits_admit_everybody(backend: Backend) -> None:
    await expect_refused(client(make_app(backend, conn_per_user=0), user=ALICE), "connection_limit_exceeded")
    unlimited = make_app(backend)
    held = [client(unlimited, user=ALICE) for _ in range(5)]
    for socket in held:
        await expect_welcome(socket)


async def test_a_hundred_concurrent_attempts_against_a_limit_of_ten_admit_exactly_ten(backend: Backend) -> None:
    app = make_app(backend, conn_per_user=10)
    sockets = [client(app, user=ALICE) for _ in range(100)]
    frames = await asyncio.gather(*(open_socket(socket, wait_s=10) for socket in sockets))
    assert sorted(frame.get("code", frame["type"]) for frame in frames) == (
        ["connection_limit_exceeded"] * 90 + ["welcome"] * 10
    )
    assert (await occupancy(backend, ClientIdentity("unknown", "1"))).identity == 10
    await asyncio.gather(*(socket.disconnect(timeout=10) for socket in sockets))
    assert (await occupancy(backend, ClientIdentity("unknown", "1"))).identity == 0


async def test_a_refusal_is_answered_with_http_429_where_the_server_offers_it(backend: Backend) -> None:
    app = make_app(backend, conn_per_user=0, conn_retry_ms=1_500, http_denial=True)
    socket = client(app, user=ALICE, extensions={"websocket.http.response": {}})
    await socket.send_input({"type": "websocket.connect"})
    start = await socket.receive_output()
    assert start["type"] == "websocket.http.response.start"
    assert start["status"] == 429
    assert (b"retry-after", b"2") in start["headers"]
    body = await socket.receive_output()
    assert body["type"] == "websocket.http.response.body"
    assert b'"code":"connection_limit_exceeded"' in body["body"]
    await socket.wait()


async def test_without_the_http_extension_the_refusal_falls_back_to_frame_and_close(backend: Backend) -> None:
    app = make_app(backend, conn_per_user=0, http_denial=True)
    await expect_refused(client(app, user=ALICE, extensions={}), "connection_limit_exceeded")


async def test_a_consumer_that_closes_its_socket_releases_the_slots(backend: Backend) -> None:
    app = make_app(backend, conn_per_user=1)
    socket = client(app, user=ALICE)
    await expect_welcome(socket)
    await socket.send_to(text_data="close-me")
    # The consumer's 300-byte reason is cut to the 123 bytes a close frame can carry.
    assert await socket.receive_output() == {"type": "websocket.close", "code": 4321, "reason": "x" * 123}
    await socket.disconnect(4321)  # the server confirms, and the consumer ends
    assert (await occupancy(backend, ClientIdentity("unknown", "1"))).identity == 0
    await expect_welcome(client(app, user=ALICE))
