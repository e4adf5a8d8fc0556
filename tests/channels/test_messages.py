"""Message limits through the middleware on every backend: payload size, rate, strikes."""

from __future__ import annotations

from typing import Any

from ratelimit_core import Backend, ManualClock
from support.ws_app import SyncEcho, User, client, expect_closed, expect_welcome, make_app, router

ALICE = User(pk=1)
BOB = User(pk=2)


async def test_a_frame_of_exactly_the_limit_passes_and_one_byte_more_closes_4009(backend: Backend) -> None:
    log: list[Any] = []
    app = make_app(backend, router(log), max_payload_bytes=10)
    socket = client(app)
    await expect_welcome(socket)
    await socket.send_to(text_data="a" * 10)
    assert await socket.receive_from() == "a" * 10
    await socket.send_to(text_data="a" * 11)
    frame = await socket.receive_json_from()
    assert (frame["code"], frame["retry_after_ms"]) == ("payload_too_large", None)
    await expect_closed(socket, 4009, "payload_too_large")
    # The consumer learnt of the close the normal way, and what it sent afterwards was dropped.
    assert log == [("disconnect", 4009)]
    assert socket.output_queue.empty()


async def test_text_is_counted_in_utf8_bytes_and_binary_frames_in_bytes(backend: Backend) -> None:
    app = make_app(backend, max_payload_bytes=10)
    socket = client(app)
    await expect_welcome(socket)
    await socket.send_to(text_data="é" * 5)  # 5 characters, 10 bytes
    assert await socket.receive_from() == "é" * 5
    await socket.send_to(bytes_data=b"\x00" * 10)
    assert await socket.receive_from() == b"\x00" * 10
    await socket.send_to(text_data="é" * 5 + "a")  # 6 characters, 11 bytes
    assert (await socket.receive_json_from())["code"] == "payload_too_large"
    await expect_closed(socket, 4009, "payload_too_large")

    other = client(app)
    await expect_welcome(other)
    await other.send_to(bytes_data=b"\x00" * 11)
    assert (await other.receive_json_from())["code"] == "payload_too_large"
    await expect_closed(other, 4009, "payload_too_large")


async def test_a_burst_passes_the_next_is_refused_and_passes_after_retry_after(
    backend: Backend, clock: ManualClock
) -> None:
    app = make_app(backend, msg_rps=2, msg_burst=3)
    socket = client(app, user=ALICE)
    await expect_welcome(socket)
    for n in range(3):
        await socket.send_to(text_data=f"m{n}")
        assert await socket.receive_from() == f"m{n}"
    await socket.send_to(text_data="dropped")
    frame = await socket.receive_json_from()
    assert (frame["type"], frame["code"], frame["retry_after_ms"]) == ("error", "rate_limit_exceeded", 500)
    clock.advance(frame["retry_after_ms"])
    await socket.send_to(text_data="later")
    assert await socket.receive_from() == "later"  # "dropped" never reached the consumer
    await socket.disconnect()


async def test_frames_that_pass_are_forwarded_unchanged_and_in_order(backend: Backend) -> None:
    app = make_app(backend, msg_rps=1000, msg_burst=100, max_payload_bytes=1000)
    socket = client(app)
    await expect_welcome(socket)
    sent: list[str | bytes] = [f"{n}:ü" if n % 2 else bytes([n, 0, 255]) for n in range(1, 50)]
    for payload in sent:
        if isinstance(payload, str):
            await socket.send_to(text_data=payload)
        else:
            await socket.send_to(bytes_data=payload)
    assert [await socket.receive_from() for _ in sent] == sent
    await socket.disconnect()


async def test_users_have_independent_buckets_shared_by_all_their_sockets(backend: Backend) -> None:
    app = make_app(backend, msg_rps=1, msg_burst=2)
    alice_1, alice_2, bob = client(app, user=ALICE), client(app, user=ALICE), client(app, user=BOB)
    for socket in (alice_1, alice_2, bob):
        await expect_welcome(socket)
    for socket in (alice_1, alice_2):
        await socket.send_to(text_data="hi")
        assert await socket.receive_from() == "hi"
    await alice_1.send_to(text_data="hi")
    assert (await alice_1.receive_json_from())["code"] == "rate_limit_exceeded"
    await alice_2.send_to(text_data="hi")
    assert (await alice_2.receive_json_from())["code"] == "rate_limit_exceeded"
    await bob.send_to(text_data="hi")
    assert await bob.receive_from() == "hi"
    for socket in (alice_1, alice_2, bob):
        await socket.disconnect()


async def test_anonymous_clients_are_limited_per_ip(backend: Backend) -> None:
    app = make_app(backend, msg_rps=1, msg_burst=1)
    same_ip = [client(app, ip="10.0.0.1"), client(app, ip="10.0.0.1")]
    elsewhere = client(app, ip="10.0.0.2")
    for socket in (*same_ip, elsewhere):
        await expect_welcome(socket)
    await same_ip[0].send_to(text_data="hi")
    assert await same_ip[0].receive_from() == "hi"
    await same_ip[1].send_to(text_data="hi")
    assert (await same_ip[1].receive_json_from())["code"] == "rate_limit_exceeded"
    await elsewhere.send_to(text_data="hi")
    assert await elsewhere.receive_from() == "hi"
    for socket in (*same_ip, elsewhere):
        await socket.disconnect()


async def test_the_last_strike_in_a_row_sends_the_frame_and_closes_4010(backend: Backend, clock: ManualClock) -> None:
    log: list[Any] = []
    app = make_app(backend, router(log), msg_rps=1, msg_burst=1, msg_strikes=3)
    socket = client(app, user=ALICE)
    await expect_welcome(socket)
    await socket.send_to(text_data="ok")
    assert await socket.receive_from() == "ok"
    for _ in range(2):
        await socket.send_to(text_data="too fast")
        assert (await socket.receive_json_from())["code"] == "rate_limit_exceeded"
    clock.advance(1_000)  # an allowed message resets the strikes
    await socket.send_to(text_data="ok")
    assert await socket.receive_from() == "ok"
    for _ in range(2):
        await socket.send_to(text_data="too fast")
        assert (await socket.receive_json_from())["code"] == "rate_limit_exceeded"
    await socket.send_to(text_data="too fast")
    frame = await socket.receive_json_from()
    assert (frame["code"], frame["retry_after_ms"]) == ("rate_limit_exceeded", 1_000)
    await expect_closed(socket, 4010, "rate_limit_exceeded")
    assert log == [("disconnect", 4010)]
    assert socket.output_queue.empty()


async def test_a_synchronous_consumer_is_limited_and_told_of_the_close_the_same_way(backend: Backend) -> None:
    log: list[Any] = []
    app = make_app(backend, SyncEcho.as_asgi(log=log), max_payload_bytes=4)
    socket = client(app)
    await expect_welcome(socket)
    await socket.send_to(text_data="1234")
    assert await socket.receive_from() == "1234"
    await socket.send_to(text_data="12345")
    assert (await socket.receive_json_from())["code"] == "payload_too_large"
    await expect_closed(socket, 4009, "payload_too_large")
    assert log == [("disconnect", 4009)]
    assert socket.output_queue.empty()
