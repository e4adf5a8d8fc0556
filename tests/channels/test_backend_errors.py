"""Storage failures through the middleware, on every backend: never an exception for the consumer or the
client; WS_RATE_ON_BACKEND_ERROR decides; a FallbackBackend keeps limiting and hands back to its primary."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from ratelimit_core import Backend, BackendError, FallbackBackend, ManualClock, MemoryBackend
from ratelimit_core.policies import ClientIdentity, Occupancy, OnError
from support.ws_app import (
    FailingBackend,
    User,
    client,
    expect_closed,
    expect_refused,
    expect_welcome,
    make_app,
    occupancy,
    router,
)

ALICE = User(pk=1)
ALICE_ID = ClientIdentity("unknown", "1")
EVERYTHING = ("set_add", "set_remove", "set_size", "bucket_consume", "ping")


@pytest.mark.parametrize("on_error", ["allow", "fallback"])
async def test_failing_open_admits_every_connection_and_forwards_every_frame(
    backend: Backend, on_error: OnError
) -> None:
    failing = FailingBackend(backend)
    failing.fail(*EVERYTHING)
    app = make_app(failing, on_backend_error=on_error, conn_per_user=1, msg_rps=1, msg_burst=1)
    sockets = [client(app, user=ALICE) for _ in range(2)]  # beyond the limit of 1
    for socket in sockets:
        assert (await expect_welcome(socket))["degraded"] is True
    for n in range(5):  # beyond the burst of 1
        await sockets[0].send_to(text_data=f"m{n}")
        assert await sockets[0].receive_from() == f"m{n}"
    for socket in sockets:
        await socket.disconnect()  # raises if the app raised


async def test_failing_closed_refuses_a_connection_with_backend_unavailable_and_close_1013(backend: Backend) -> None:
    failing = FailingBackend(backend)
    failing.fail(*EVERYTHING)
    app = make_app(failing, on_backend_error="deny", conn_per_user=1, conn_retry_ms=2_000)
    frame = await expect_refused(client(app, user=ALICE), "backend_unavailable", close_code=1013)
    assert frame["retry_after_ms"] == 2_000
    failing.heal()
    socket = client(app, user=ALICE)
    assert (await expect_welcome(socket))["degraded"] is False
    await socket.disconnect()


async def test_failing_closed_is_answered_with_http_503_where_the_server_offers_it(backend: Backend) -> None:
    failing = FailingBackend(backend)
    failing.fail(*EVERYTHING)
    app = make_app(failing, on_backend_error="deny", conn_per_user=1, conn_retry_ms=2_000, http_denial=True)
    socket = client(app, user=ALICE, extensions={"websocket.http.response": {}})
    await socket.send_input({"type": "websocket.connect"})
    start = await socket.receive_output()
    assert (start["type"], start["status"]) == ("websocket.http.response.start", 503)
    assert (b"retry-after", b"2") in start["headers"]
    body = await socket.receive_output()
    assert b'"code":"backend_unavailable"' in body["body"]
    await socket.wait()


async def test_failing_closed_drops_frames_without_closing_and_they_flow_again_when_the_storage_is_back(
    backend: Backend,
) -> None:
    log: list[Any] = []
    failing = FailingBackend(backend)
    app = make_app(failing, router(log), on_backend_error="deny", msg_rps=100, msg_burst=100, msg_strikes=2)
    socket = client(app, user=ALICE)
    await expect_welcome(socket)
    failing.fail("bucket_consume")
    for _ in range(5):  # more than the strikes: a storage failure is not the client's fault
        await socket.send_to(text_data="dropped")
        frame = await socket.receive_json_from()
        assert (frame["code"], frame["retry_after_ms"]) == ("backend_unavailable", 1_000)
    failing.heal()
    await socket.send_to(text_data="passes")
    assert await socket.receive_from() == "passes"
    await socket.disconnect()
    assert log == [("disconnect", 1000)]


async def test_a_storage_error_that_is_not_an_outage_never_crashes_the_app(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    failing = FailingBackend(backend)
    failing.fail(*EVERYTHING, error=BackendError("WRONGTYPE (test)"))
    app = make_app(failing, conn_per_user=1, msg_rps=1)
    socket = client(app, user=ALICE)
    with caplog.at_level(logging.ERROR):
        await expect_welcome(socket)
        await socket.send_to(text_data="hello")
        assert await socket.receive_from() == "hello"
        await socket.disconnect()
    assert "WRONGTYPE" in caplog.text


async def test_failed_heartbeats_and_releases_never_reach_the_consumer(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    log: list[Any] = []
    failing = FailingBackend(backend)
    app = make_app(failing, router(log), conn_per_user=1, lease_ms=1_000, heartbeat_ms=1)
    socket = client(app, user=ALICE)
    await expect_welcome(socket)
    with caplog.at_level(logging.WARNING):
        failing.fail("set_add", "set_remove")
        await asyncio.wait_for(failing.failed.wait(), timeout=5)  # a heartbeat failed
        failing.failed.clear()
        await asyncio.wait_for(failing.failed.wait(), timeout=5)  # and the next one was tried all the same
        await socket.send_to(text_data="still here")
        assert await socket.receive_from() == "still here"
        await socket.disconnect()
    assert log == [("disconnect", 1000)]
    assert "retrying at the next heartbeat" in caplog.text
    assert "expires with its lease" in caplog.text


async def test_through_an_outage_a_fallback_backend_keeps_the_limits_and_hands_back_to_the_primary(
    backend: Backend, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    primary = FailingBackend(backend)
    fallback = MemoryBackend(clock=clock)
    wrapper = FallbackBackend(primary, fallback, cooldown_ms=1_000, clock=clock)
    app = make_app(wrapper, conn_per_user=3, msg_rps=1, msg_burst=2)
    held = [client(app, user=ALICE) for _ in range(2)]
    for socket in held:
        assert (await expect_welcome(socket))["degraded"] is False

    primary.fail(*EVERYTHING)
    with caplog.at_level(logging.DEBUG, logger="ratelimit_channels"):
        third = client(app, user=ALICE)
        assert (await expect_welcome(third))["degraded"] is True  # 2 of 3 held: only 1 more
        frame = await expect_refused(client(app, user=ALICE), "connection_limit_exceeded")
    assert "without the primary backend" in caplog.text
    assert frame["message"] == "too many connections for this user (limit 3)"
    # The fallback limits messages too: the burst of 2, then a refusal.
    for text in ("a", "b"):
        await third.send_to(text_data=text)
        assert await third.receive_from() == text
    await third.send_to(text_data="c")
    assert (await third.receive_json_from())["code"] == "rate_limit_exceeded"
    await held[0].disconnect()  # released in the fallback while the primary is down

    primary.heal()
    clock.advance(1_000)  # the probe is due
    fourth = client(app, user=ALICE)
    assert (await expect_welcome(fourth))["degraded"] is False
    # Replayed: the one that left is gone, the one that came during the outage is counted.
    assert await occupancy(backend, ALICE_ID) == Occupancy(identity=3, ip=0)
    await expect_refused(client(app, user=ALICE), "connection_limit_exceeded")
    for socket in (held[1], third, fourth):
        await socket.disconnect()
    assert await occupancy(backend, ALICE_ID) == Occupancy(identity=0, ip=0)
    assert await occupancy(fallback, ALICE_ID) == Occupancy(identity=0, ip=0)


async def test_a_denying_fallback_backend_refuses_with_backend_unavailable_not_a_limit(
    backend: Backend, clock: ManualClock
) -> None:
    primary = FailingBackend(backend)
    wrapper = FallbackBackend(primary, MemoryBackend(clock=clock), on_error="deny", clock=clock)
    app = make_app(wrapper, on_backend_error="deny", conn_per_user=3, msg_rps=100, msg_strikes=1)
    socket = client(app, user=ALICE)
    await expect_welcome(socket)
    primary.fail(*EVERYTHING)
    await socket.send_to(text_data="dropped")
    assert (await socket.receive_json_from())["code"] == "backend_unavailable"
    await socket.send_to(text_data="dropped too")  # strikes=1, yet the socket stays open
    assert (await socket.receive_json_from())["code"] == "backend_unavailable"
    refused = client(app, user=ALICE)
    assert (await expect_refused(refused, "backend_unavailable", close_code=1013))["retry_after_ms"] == 5_000
    await socket.disconnect()


async def test_a_consumer_closing_during_an_outage_closes_normally(backend: Backend) -> None:
    failing = FailingBackend(backend)
    app = make_app(failing, conn_per_user=1)
    socket = client(app, user=ALICE)
    await expect_welcome(socket)
    failing.fail(*EVERYTHING)
    await socket.send_to(text_data="close-me")
    await expect_closed(socket, 4321, "x" * 123)
