"""Per-message-type rates in MessagePolicy on every backend: the type's bucket, the identity's, strikes across both."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from ratelimit_core import Backend, InvalidArgument, ManualClock
from ratelimit_core.observe import Decision, DecisionHooks
from ratelimit_core.policies import (
    Allowed,
    ClientIdentity,
    CloseCode,
    Denial,
    ErrorCode,
    MessageLimits,
    MessagePolicy,
    MessageQuota,
    TypeRate,
    json_message_type,
)
from ratelimit_core.policies.message_types import MAX_TYPED_FRAME_CHARS, message_type_key
from ratelimit_core.primitives import PRIMITIVES

ALICE = ClientIdentity("1.1.1.1", "alice")
BOB = ClientIdentity("1.1.1.1", "bob")


def chat(n: int = 0) -> str:
    return json.dumps({"type": "chat", "text": f"m{n}"})


def denied(verdict: Allowed | Denial) -> Denial:
    assert isinstance(verdict, Denial), verdict
    return verdict


@pytest.mark.parametrize(
    ("text", "data", "kind"),
    [
        ('{"type": "chat"}', None, "chat"),
        ('  \n{"text": "x", "type": "typing"}', None, "typing"),
        ('{"type": 5}', None, None),
        ('{"type": null}', None, None),
        ('["chat"]', None, None),
        ('"chat"', None, None),
        ("not json", None, None),
        ('{"type": "chat"', None, None),
        ("{" * 100_000, None, None),
        ("[" * 10_000, None, None),
        ('{"a":' * 5_000 + "1" + "}" * 5_000, None, None),
        (None, b'{"type": "chat"}', None),
        ("", None, None),
    ],
)
def test_the_default_resolver_reads_a_json_objects_type_and_never_raises(
    text: str | None, data: bytes | None, kind: str | None
) -> None:
    assert json_message_type(text, data) == kind


def test_a_frame_over_the_parse_limit_has_no_type() -> None:
    padded = json.dumps({"type": "chat", "pad": "x" * MAX_TYPED_FRAME_CHARS})
    assert json_message_type(padded) is None
    exact = '{"type":"chat","p":"' + "x" * (MAX_TYPED_FRAME_CHARS - 22) + '"}'
    assert len(exact) == MAX_TYPED_FRAME_CHARS
    assert json_message_type(exact) == "chat"


def test_type_keys_cannot_collide() -> None:
    assert message_type_key(ClientIdentity("1.1.1.1", "x"), "a:user:") != message_type_key(
        ClientIdentity("1.1.1.1", "x"), "a"
    )
    assert message_type_key(ALICE, "chat") != message_type_key(BOB, "chat")


@pytest.mark.parametrize(
    ("name", "rate", "burst", "match"),
    [
        ("", 1, None, "non-empty str"),
        (5, 1, None, "non-empty str"),
        ("chat", 0, None, "chat"),
        ("chat", 1, 0, "burst of message type 'chat'"),
    ],
)
def test_a_bad_type_rate_is_refused_by_name(name: object, rate: float, burst: int | None, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        TypeRate(name, rate, burst)  # type: ignore[arg-type]


def test_each_type_is_named_once() -> None:
    with pytest.raises(InvalidArgument, match="each message type once"):
        MessageLimits(types=(TypeRate("chat", 1), TypeRate("chat", 2)))


async def test_the_burst_th_typed_frame_passes_the_next_is_refused_naming_its_type(
    backend: Backend, clock: ManualClock
) -> None:
    gate = MessagePolicy(backend, MessageLimits(types=(TypeRate("chat", 2, 3),))).gate(ALICE)
    for n in range(3):
        assert isinstance(await gate.admit(chat(n)), Allowed)
    denial = denied(await gate.admit(chat()))
    assert (denial.code, denial.retry_after_ms, denial.limit, denial.close_code) == (
        ErrorCode.RATE_LIMIT_EXCEEDED,
        500,
        "chat",
        None,
    )
    assert denial.frame()["limit"] == "chat"
    clock.advance(499)
    assert denied(await gate.admit(chat())).retry_after_ms == 1
    clock.advance(1)
    assert isinstance(await gate.admit(chat()), Allowed)


async def test_other_types_and_untyped_frames_do_not_spend_a_types_bucket(backend: Backend) -> None:
    gate = MessagePolicy(backend, MessageLimits(types=(TypeRate("chat", 0.001, 1),))).gate(ALICE)
    assert isinstance(await gate.admit(chat()), Allowed)
    for frame in ('{"type": "typing"}', "plain text", None):
        for _ in range(5):
            assert isinstance(await gate.admit(frame, None if frame else b"x"), Allowed)
    assert denied(await gate.admit(chat())).limit == "chat"
    # Another identity has its own bucket of the type.
    assert isinstance(
        await MessagePolicy(backend, MessageLimits(types=(TypeRate("chat", 0.001, 1),))).gate(BOB).admit(chat()),
        Allowed,
    )


async def test_a_typed_frame_must_pass_both_buckets_and_the_longer_wait_is_reported(
    backend: Backend, clock: ManualClock
) -> None:
    limits = MessageLimits(rate=1, burst=2, types=(TypeRate("chat", 0.5, 5),))
    gate = MessagePolicy(backend, limits).gate(ALICE)
    assert isinstance(await gate.admit(chat()), Allowed)
    assert isinstance(await gate.admit(chat()), Allowed)
    # The identity's bucket (1/s) is empty, the type's (0.5/s) is not: the identity's refusal, no limit named.
    denial = denied(await gate.admit(chat()))
    assert (denial.retry_after_ms, denial.limit) == (1000, None)
    assert "limit" not in denial.frame()
    clock.advance(1000)
    assert isinstance(await gate.admit("untyped"), Allowed)  # the identity's bucket alone


async def test_strikes_count_across_types_and_an_allowed_frame_resets_them(backend: Backend) -> None:
    limits = MessageLimits(strikes=3, types=(TypeRate("chat", 0.001, 1), TypeRate("typing", 0.001, 1)))
    gate = MessagePolicy(backend, limits).gate(ALICE)
    typing = json.dumps({"type": "typing"})
    assert isinstance(await gate.admit(chat()), Allowed)
    assert isinstance(await gate.admit(typing), Allowed)
    assert denied(await gate.admit(chat())).limit == "chat"  # strike 1
    assert isinstance(await gate.admit("untyped"), Allowed)  # resets the strikes
    assert denied(await gate.admit(typing)).limit == "typing"  # 1
    assert denied(await gate.admit(chat())).close_code is None  # 2
    closing = denied(await gate.admit(typing))  # 3
    assert (closing.close_code, closing.code, closing.limit, gate.strikes) == (
        CloseCode.RATE_LIMITED,
        ErrorCode.RATE_LIMIT_EXCEEDED,
        "typing",
        3,
    )


async def test_a_frame_a_types_bucket_refused_has_still_spent_the_identitys_token(backend: Backend) -> None:
    limits = MessageLimits(rate=0.001, burst=3, types=(TypeRate("chat", 0.001, 1),))
    gate = MessagePolicy(backend, limits).gate(ALICE)
    assert isinstance(await gate.admit(chat()), Allowed)
    assert denied(await gate.admit(chat())).limit == "chat"
    # The checks run together, each atomic on its own key: the refused frame took one of the identity's tokens.
    assert (await backend.bucket_peek("msg:" + ALICE.key, rate=0.001, burst=3)).remaining == 1


async def test_a_custom_resolver_decides_the_type_and_one_that_raises_leaves_the_frame_untyped(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    def by_prefix(text: str | None, data: bytes | None) -> str | None:
        if text == "boom":
            raise RuntimeError("resolver bug")
        return None if text is None else text.partition(":")[0]

    policy = MessagePolicy(backend, MessageLimits(types=(TypeRate("chat", 0.001, 1),)), type_resolver=by_prefix)
    gate = policy.gate(ALICE)
    assert isinstance(await gate.admit("chat:hello"), Allowed)
    assert denied(await gate.admit("chat:again")).limit == "chat"
    assert isinstance(await gate.admit("boom"), Allowed)
    assert "resolver bug" in caplog.text


async def test_the_hooks_see_the_types_decision(backend: Backend) -> None:
    seen: list[Decision] = []
    limits = MessageLimits(rate=10, types=(TypeRate("chat", 0.001, 1),))
    gate = MessagePolicy(backend, limits, hooks=DecisionHooks(seen.append)).gate(ALICE)
    await gate.admit(chat())
    await gate.admit(chat())
    assert [(d.limit, d.allowed, d.code) for d in seen] == [
        ("rate", True, None),
        ("type", True, None),
        ("rate", True, None),
        ("type", False, ErrorCode.RATE_LIMIT_EXCEEDED),
    ]


class HangingQuota:
    """`backend`, except that counter_incr (the quota) waits forever; records whether it was cancelled."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.started = asyncio.Event()
        self.cancelled = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    async def counter_incr(self, key: str, amount: int = 1, **kwargs: Any) -> Any:
        self.started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


@pytest.mark.parametrize("how", ["cancel", "timeout"])
async def test_a_cancelled_or_timed_out_frame_leaves_no_check_running(backend: Backend, how: str) -> None:
    hanging = HangingQuota(backend)
    limits = MessageLimits(rate=0.001, burst=5, types=(TypeRate("chat", 0.001, 5),), quota=MessageQuota(10, 60_000))
    gate = MessagePolicy(hanging, limits).gate(ALICE)  # type: ignore[arg-type]
    tasks_before = asyncio.all_tasks()
    if how == "cancel":
        admit = asyncio.ensure_future(gate.admit(chat()))
        await asyncio.wait_for(hanging.started.wait(), 5)
        admit.cancel()
        with pytest.raises(asyncio.CancelledError):
            await admit
    else:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(gate.admit(chat()), 0.05)
    # The hung check was cancelled with the frame, and no check of the gate is left running (the driver's own
    # tasks, e.g. a Redis round trip reading its reply, end by themselves).
    assert hanging.cancelled
    for _ in range(100):  # bounded: a cancelled task ends at its next turn
        checks = {task for task in asyncio.all_tasks() - tasks_before if task.get_coro().__name__ in PRIMITIVES}  # type: ignore[union-attr]
        if not checks:
            break
        await asyncio.sleep(0)
    assert checks == set()
    # Each bucket counted the frame at most once (on Redis a call cancelled in flight may or may not have run).
    for key in ("msg:" + ALICE.key, message_type_key(ALICE, "chat")):
        assert (await backend.bucket_peek(key, rate=0.001, burst=5)).remaining in (4, 5)
