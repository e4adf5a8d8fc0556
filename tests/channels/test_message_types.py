"""WS_RATE_MSG_TYPES, WS_RATE_MSG_TYPE_RESOLVER and WS_RATE_MSG_QUOTA through the middleware on every backend,
and how those settings are validated and reported by the system checks."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.checks import CheckMessage, run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from ratelimit_channels import RateLimitMiddleware
from ratelimit_core import Backend, ManualClock
from support.ws_app import User, client, expect_closed, expect_welcome, make_app, prefix_type, router

ALICE = User(pk=1)
BOB = User(pk=2)


def chat(text: str = "hi") -> str:
    return json.dumps({"type": "chat", "text": text})


async def test_the_burst_th_chat_passes_the_next_is_refused_naming_chat_and_the_wait_is_exact(
    backend: Backend, clock: ManualClock
) -> None:
    app = make_app(backend, msg_types={"chat": {"rps": 2, "burst": 3}, "typing": {"rps": 5}})
    socket = client(app, user=ALICE)
    await expect_welcome(socket)
    for n in range(3):
        await socket.send_to(text_data=chat(f"m{n}"))
        assert json.loads(await socket.receive_from())["text"] == f"m{n}"
    await socket.send_to(text_data=chat("dropped"))
    frame = await socket.receive_json_from()
    assert {k: frame[k] for k in ("type", "code", "retry_after_ms", "limit")} == {
        "type": "error",
        "code": "rate_limit_exceeded",
        "retry_after_ms": 500,
        "limit": "chat",
    }
    # Another type, and untyped frames, are not held back by the chat bucket.
    await socket.send_to(text_data='{"type": "typing"}')
    assert await socket.receive_from() == '{"type": "typing"}'
    await socket.send_to(text_data="plain")
    assert await socket.receive_from() == "plain"
    clock.advance(499)
    await socket.send_to(text_data=chat())
    assert (await socket.receive_json_from())["retry_after_ms"] == 1
    clock.advance(1)
    await socket.send_to(text_data=chat("again"))
    assert json.loads(await socket.receive_from())["text"] == "again"
    await socket.disconnect()


async def test_a_type_bucket_is_shared_by_an_identitys_sockets_not_by_others(backend: Backend) -> None:
    app = make_app(backend, msg_types={"chat": {"rps": 0.001, "burst": 1}})
    first, second, other = client(app, user=ALICE), client(app, user=ALICE), client(app, user=BOB)
    for socket in (first, second, other):
        await expect_welcome(socket)
    await first.send_to(text_data=chat())
    assert json.loads(await first.receive_from())["type"] == "chat"
    await second.send_to(text_data=chat())
    assert (await second.receive_json_from())["limit"] == "chat"
    await other.send_to(text_data=chat())
    assert json.loads(await other.receive_from())["type"] == "chat"
    for socket in (first, second, other):
        await socket.disconnect()


async def test_strikes_count_across_types_and_the_identity_bucket_then_close_4010(backend: Backend) -> None:
    app = make_app(backend, msg_rps=0.001, msg_burst=2, msg_strikes=2, msg_types={"chat": {"rps": 0.001}})
    socket = client(app, user=ALICE)
    await expect_welcome(socket)
    await socket.send_to(text_data=chat())
    assert json.loads(await socket.receive_from())["type"] == "chat"
    await socket.send_to(text_data=chat())  # the chat bucket refuses (the identity's still had a token)
    frame = await socket.receive_json_from()
    assert (frame["code"], frame["limit"]) == ("rate_limit_exceeded", "chat")
    await socket.send_to(text_data="plain")  # the identity's bucket is empty now: the 2nd strike
    frame = await socket.receive_json_from()
    assert (frame["code"], "limit" in frame) == ("rate_limit_exceeded", False)
    await expect_closed(socket, 4010, "rate_limit_exceeded")


async def test_a_resolver_given_by_dotted_path_decides_the_type(backend: Backend) -> None:
    app = make_app(
        backend,
        msg_types={"chat": {"rps": 0.001, "burst": 1}},
        msg_type_resolver="support.ws_app.prefix_type",
    )
    socket = client(app, user=ALICE)
    await expect_welcome(socket)
    await socket.send_to(text_data="chat:one")
    assert await socket.receive_from() == "chat:one"
    await socket.send_to(text_data="chat:two")
    assert (await socket.receive_json_from())["limit"] == "chat"
    await socket.send_to(text_data=chat())  # JSON is no longer read: its type is '{"type"'
    assert json.loads(await socket.receive_from())["type"] == "chat"
    await socket.disconnect()


async def test_the_quota_drops_messages_until_the_window_resets_keeping_the_socket_open(
    backend: Backend, clock: ManualClock
) -> None:
    app = make_app(backend, msg_quota=(3, 60), msg_strikes=1)
    socket = client(app, user=ALICE)
    await expect_welcome(socket)
    for n in range(3):
        await socket.send_to(text_data=f"m{n}")
        assert await socket.receive_from() == f"m{n}"
        clock.advance(1000)
    for wait in (57_000, 1):
        await socket.send_to(text_data="over")
        frame = await socket.receive_json_from()
        assert (frame["code"], frame["retry_after_ms"]) == ("quota_exceeded", wait)
        clock.advance(wait - 1)
    clock.advance(1)
    # msg_strikes=1 would have closed the socket on a strike: a quota refusal is none.
    await socket.send_to(text_data="new window")
    assert await socket.receive_from() == "new window"
    await socket.disconnect()


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("chat", r"^msg_types \(overriding WS_RATE_MSG_TYPES\) must be a dict"),
        ({"chat": 5}, r"^msg_types \(overriding WS_RATE_MSG_TYPES\)\['chat'\] must be \{'rps'"),
        ({"chat": {"burst": 3}}, r"\['chat'\] must be \{'rps'"),
        ({"chat": {"rps": 1, "brust": 3}}, r"\['chat'\] must be \{'rps'"),
        ({"chat": {"rps": 0}}, r"\['chat'\]\['rps'\] must be a positive number"),
        ({"chat": {"rps": True}}, r"\['chat'\]\['rps'\] must be a positive number"),
        ({"chat": {"rps": 1, "burst": 0}}, r"\['chat'\]\['burst'\] must be between 1"),
        ({"": {"rps": 1}}, r"\[''\]: a message type must be a non-empty str"),
        ({5: {"rps": 1}}, r"\[5\]: a message type must be a non-empty str"),
        ({"chat": {"rps": 1e-9}}, r"\['chat'\]: message type 'chat'"),
    ],
)
def test_a_bad_msg_types_value_is_named_with_its_type(value: object, match: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=match):
        RateLimitMiddleware(router(), msg_types=value)


@pytest.mark.parametrize(
    "value", ["1000/h", (1000,), (1000, 3600, 1), (0, 3600), (1000, 0), (1000, -1), (1.5, 60), (1000, 0.0001)]
)
def test_a_bad_quota_is_named(value: object) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"^msg_quota \(overriding WS_RATE_MSG_QUOTA\)"):
        RateLimitMiddleware(router(), msg_quota=value)


@pytest.mark.parametrize("value", [5, "no.such.module.resolver"])
def test_a_bad_type_resolver_is_named(value: object) -> None:
    with pytest.raises(ImproperlyConfigured, match=r"^msg_type_resolver \(overriding WS_RATE_MSG_TYPE_RESOLVER\)"):
        RateLimitMiddleware(router(), msg_type_resolver=value)


def test_valid_values_are_accepted() -> None:
    RateLimitMiddleware(
        router(),
        msg_types={"chat": {"rps": 1, "burst": 3}, "typing": {"rps": 0.5}},
        msg_quota=[1000, 3600],
        msg_type_resolver=prefix_type,
    )


def ours(**settings: Any) -> list[CheckMessage]:
    """The messages of this app's checks (the app installed, so that its checks are registered)."""
    with override_settings(INSTALLED_APPS=["ratelimit_channels"], DEBUG=True, **settings):
        return [message for message in run_checks() if str(message.id).startswith("ratelimit_channels.")]


def test_the_system_checks_report_each_bad_type_and_the_quota() -> None:
    messages = ours(
        WS_RATE_MSG_TYPES={"chat": {"rps": 0}, "typing": {"rps": 1, "burst": -1}},
        WS_RATE_MSG_QUOTA=(0, 60),
        WS_RATE_MSG_TYPE_RESOLVER=42,
        WS_RATE_LIMITS_RESOLVER="no.such.module.tiers",
    )
    assert [(m.id, m.obj) for m in messages] == [
        ("ratelimit_channels.E001", "WS_RATE_MSG_TYPES"),
        ("ratelimit_channels.E001", "WS_RATE_MSG_TYPES"),
        ("ratelimit_channels.E001", "WS_RATE_MSG_QUOTA"),
        ("ratelimit_channels.E001", "WS_RATE_MSG_TYPE_RESOLVER"),
        ("ratelimit_channels.E001", "WS_RATE_LIMITS_RESOLVER"),
    ]
    assert "WS_RATE_MSG_TYPES['chat']['rps']" in messages[0].msg
    assert "WS_RATE_MSG_TYPES['typing']['burst']" in messages[1].msg
    assert all(m.hint for m in messages)
