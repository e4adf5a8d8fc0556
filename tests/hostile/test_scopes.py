"""Hostile and unusual scopes: the middleware limits them by some identity, never crashes, never leaks."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ratelimit_channels import RateLimitMiddleware
from ratelimit_core import ManualClock, MemoryBackend

Message = dict[str, Any]
_BOUND_S = 10
_MISSING = object()


@dataclass(frozen=True)
class User:
    pk: Any
    is_authenticated: bool = True


class NoPk:
    is_authenticated = True


clients = st.sampled_from(
    [_MISSING, None, [], ["10.1.2.3", 5000], ("10.1.2.3", 5000), ["::1", 1], ["2001:db8::7", 1], ["garbage", 1],
     [123, "x"], ["::ffff:10.1.2.3", 1], ["", 0], ["unix:/run/sock", None]]
)  # fmt: skip
users = st.sampled_from(
    [_MISSING, None, User(1), User("alice"), User(uuid.UUID(int=7)), User(None), User(2, is_authenticated=False),
     NoPk(), "not a user"]
)  # fmt: skip
header_values = st.one_of(
    st.binary(max_size=60),
    st.sampled_from([b"203.0.113.9", b"203.0.113.9, 10.0.0.1", b"::1, garbage", b"\xff\xfe", b",,,", b"1" * 5000]),
)
headers = st.lists(st.tuples(st.sampled_from([b"x-forwarded-for", b"X-Forwarded-For", b"host"]), header_values))
proxies = st.sampled_from([(), ("10.0.0.0/8",), ("0.0.0.0/0", "::/0")])


async def _connect_and_leave(scope: dict[str, Any], trusted: tuple[str, ...]) -> tuple[list[Message], MemoryBackend]:
    backend = MemoryBackend(clock=ManualClock())
    sent: list[Message] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        while (await receive())["type"] != "websocket.disconnect":
            await send({"type": "websocket.accept"})

    app = RateLimitMiddleware(inner, backend=backend, conn_per_user=5, conn_per_ip=5, trusted_proxies=trusted)
    incoming = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "hi"}]

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: Message) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), _BOUND_S)
    return sent, backend


@settings(max_examples=150)
@given(clients, users, headers, proxies)
def test_any_scope_is_admitted_under_some_identity_and_leaves_nothing_behind(
    client: Any, user: Any, header_list: list[tuple[bytes, bytes]], trusted: tuple[str, ...]
) -> None:
    scope: dict[str, Any] = {"type": "websocket", "path": "/ws/", "query_string": b"", "headers": header_list}
    if client is not _MISSING:
        scope["client"] = client
    if user is not _MISSING:
        scope["user"] = user
    original = dict(scope)

    sent, backend = asyncio.run(_connect_and_leave(scope, trusted))

    assert sent[0] == {"type": "websocket.accept"}, "admitted: the limits are far from reached"
    assert scope == original, "the middleware copies the scope before adding to it"
    assert backend.key_count() == 0, "every connection slot was released"
