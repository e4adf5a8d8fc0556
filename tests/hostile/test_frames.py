"""Hostile frames through RateLimitMiddleware: only documented outcomes, never a leak.

Hypothesis generates what a client (or a sloppy server) can put in front of the
middleware: empty, oversized, binary and invalid-UTF-8 frames, malformed and deeply
nested JSON, frames with both or neither of text and bytes, unknown message types.
A small model of the documented contract says what must happen to each one:
forwarded unchanged and in order, dropped with a ``rate_limit_exceeded`` frame, or
the socket closed with 4009 / 4010. Afterwards every slot is released.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ratelimit_channels import RateLimitMiddleware
from ratelimit_core import ManualClock, MemoryBackend
from ratelimit_core.policies import ClientIdentity, ConnectionLimits, ConnectionPolicy

LIMIT = 64
BURST = 5
STRIKES = 3
_BOUND_S = 10  # bounds a hang; never reached when the middleware works

Message = dict[str, Any]

json_text = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=20,
).map(json.dumps)
texts = st.one_of(
    st.text(max_size=LIMIT + 8),
    st.text(st.characters(min_codepoint=0x800), max_size=LIMIT // 2),  # 3-byte UTF-8 characters near the limit
    st.just(""),
    st.integers(1, 200).map(lambda depth: "[" * depth + "]" * depth),
    json_text,
    st.sampled_from(['{"type": ', "\x00", "}{", "null"]),
)
datas = st.one_of(
    st.binary(max_size=LIMIT + 8),
    st.just(b"\xff\xfe\xfd"),  # not UTF-8 at all
    st.just(b""),
)
receive_messages = st.one_of(
    texts.map(lambda text: {"type": "websocket.receive", "text": text}),
    datas.map(lambda data: {"type": "websocket.receive", "bytes": data}),
    st.builds(lambda text, data: {"type": "websocket.receive", "text": text, "bytes": data}, texts, datas),
    st.just({"type": "websocket.receive", "text": None, "bytes": None}),
)
odd_messages = st.sampled_from(
    [{"type": "websocket.unknown"}, {"type": "http.request", "body": b""}, {"type": ""}, {"x": 1}]
)
messages = st.lists(st.one_of(receive_messages, receive_messages, odd_messages), max_size=25)


@dataclass
class Inner:
    """A tolerant inner app: records what reaches it and echoes frames until told of a disconnect."""

    received: list[Message] = field(default_factory=list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            self.received.append(message)
            kind = message.get("type")
            if kind == "websocket.connect":
                await send({"type": "websocket.accept"})
            elif kind == "websocket.receive":
                await send({"type": "websocket.send", "text": "echo"})
            elif kind == "websocket.disconnect":
                return


def _size(message: Message) -> int:
    text, data = message.get("text"), message.get("bytes")
    return (0 if data is None else len(data)) + (0 if text is None else len(text.encode("utf-8", "surrogatepass")))


def expected_outcome(frames: list[Message]) -> tuple[list[Message], list[str], int | None]:
    """(what reaches the inner app, the error codes sent, the middleware's close code) per the contract."""
    forwarded, codes, tokens, strikes = [], [], BURST, 0
    for message in frames:
        if message.get("type") != "websocket.receive":
            forwarded.append(message)
            continue
        if _size(message) > LIMIT:
            return forwarded, [*codes, "payload_too_large"], 4009
        if tokens:
            tokens, strikes = tokens - 1, 0
            forwarded.append(message)
            continue
        strikes += 1
        codes.append("rate_limit_exceeded")
        if strikes >= STRIKES:
            return forwarded, codes, 4010
    return forwarded, codes, None


async def _drive(frames: list[Message]) -> tuple[Inner, list[Message], MemoryBackend]:
    backend = MemoryBackend(clock=ManualClock())  # the clock stands still: no token comes back
    inner = Inner()
    app = RateLimitMiddleware(
        inner,
        backend=backend,
        conn_per_user=3,
        conn_per_ip=3,
        room_max_members=3,
        room_resolver=lambda scope: "arena",
        max_payload_bytes=LIMIT,
        msg_rps=1,
        msg_burst=BURST,
        msg_strikes=STRIKES,
    )
    incoming = [{"type": "websocket.connect"}, *frames]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws/", "query_string": b"", "headers": [], "client": ["10.0.0.1", 1]}
    await asyncio.wait_for(app(scope, receive, send), _BOUND_S)
    return inner, sent, backend


@settings(max_examples=150)
@given(messages)
@example([{"type": "websocket.receive", "text": "é" * (LIMIT // 2 + 1)}])  # 66 bytes in 33 characters: 4009
@example([{"type": "websocket.receive", "bytes": b"x" * LIMIT}] * (BURST + STRIKES))  # burst, then strikes: 4010
@example([{"type": "websocket.receive", "text": "[" * 30 + "]" * 30, "bytes": b"y" * 5}])  # both set: 65 bytes
def test_hostile_frames_get_only_documented_outcomes_and_release_every_slot(frames: list[Message]) -> None:
    inner, sent, backend = asyncio.run(_drive(frames))
    forwarded, codes, close_code = expected_outcome(frames)

    seen_by_inner = [m for m in inner.received if m.get("type") not in ("websocket.connect", "websocket.disconnect")]
    assert seen_by_inner == forwarded, "frames that pass are forwarded unchanged and in order"
    if close_code is not None:
        assert inner.received[-1] == {"type": "websocket.disconnect", "code": close_code, "reason": codes[-1]}

    errors = [json.loads(m["text"]) for m in sent if m["type"] == "websocket.send" and m.get("text") != "echo"]
    assert [error["code"] for error in errors] == codes
    assert all(error["type"] == "error" for error in errors)
    assert all(error["retry_after_ms"] > 0 for error in errors if error["code"] == "rate_limit_exceeded")
    closes = [m for m in sent if m["type"] == "websocket.close"]
    assert [m["code"] for m in closes] == ([] if close_code is None else [close_code])
    if close_code is not None:
        assert sent[-1]["type"] == "websocket.close", "nothing is sent after the middleware's close"

    occupancy = asyncio.run(
        ConnectionPolicy(backend, ConnectionLimits()).occupancy(ClientIdentity("10.0.0.1"), "arena")
    )
    assert (occupancy.identity, occupancy.ip, occupancy.room) == (0, 0, 0), "every slot released"
