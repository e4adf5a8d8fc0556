"""Message quotas in MessagePolicy on every backend: the count, the window reset, no strikes, with the rates."""

from __future__ import annotations

import json

import pytest

from ratelimit_core import Backend, InvalidArgument, ManualClock
from ratelimit_core.observe import Decision, DecisionHooks
from ratelimit_core.policies import (
    Allowed,
    ClientIdentity,
    Denial,
    ErrorCode,
    MessageLimits,
    MessagePolicy,
    MessageQuota,
    TypeRate,
)
from ratelimit_core.policies.quotas import quota_key

ALICE = ClientIdentity("1.1.1.1", "alice")
BOB = ClientIdentity("1.1.1.1", "bob")


def denied(verdict: Allowed | Denial) -> Denial:
    assert isinstance(verdict, Denial), verdict
    return verdict


@pytest.mark.parametrize(("count", "window_ms"), [(0, 1000), (5, 0), (True, 1000), (5, 1.5)])
def test_a_bad_quota_is_refused_by_name(count: object, window_ms: object) -> None:
    with pytest.raises(InvalidArgument, match="quota"):
        MessageQuota(count, window_ms)  # type: ignore[arg-type]


async def test_the_count_th_message_passes_the_next_is_dropped_until_the_window_resets(
    backend: Backend, clock: ManualClock
) -> None:
    gate = MessagePolicy(backend, MessageLimits(quota=MessageQuota(3, 60_000), strikes=1)).gate(ALICE)
    assert isinstance(await gate.admit("first"), Allowed)
    clock.advance(10_000)
    for _ in range(2):
        assert isinstance(await gate.admit("m"), Allowed)
    denial = denied(await gate.admit("over"))
    # The window started with the first message: 50 s left. Dropped, the socket stays open, no strike
    # (strikes=1 would have closed it).
    assert (denial.code, denial.retry_after_ms, denial.close_code, denial.limit) == (
        ErrorCode.QUOTA_EXCEEDED,
        50_000,
        None,
        None,
    )
    assert gate.strikes == 0
    clock.advance(49_999)
    assert denied(await gate.admit("over")).retry_after_ms == 1
    clock.advance(1)
    for _ in range(3):
        assert isinstance(await gate.admit("new window"), Allowed)
    assert denied(await gate.admit("over")).retry_after_ms == 60_000
    assert await backend.counter_get(quota_key(ALICE)) == 3


async def test_identities_have_their_own_quota_shared_by_their_sockets(backend: Backend) -> None:
    policy = MessagePolicy(backend, MessageLimits(quota=MessageQuota(2, 60_000)))
    first, second = policy.gate(ALICE), policy.gate(ALICE)
    assert isinstance(await first.admit("a"), Allowed)
    assert isinstance(await second.admit("b"), Allowed)
    assert denied(await first.admit("c")).code == ErrorCode.QUOTA_EXCEEDED
    assert isinstance(await policy.gate(BOB).admit("d"), Allowed)


async def test_with_rates_one_frame_is_counted_by_every_check_and_the_quota_refusal_wins(
    backend: Backend, clock: ManualClock
) -> None:
    limits = MessageLimits(rate=1, burst=1, quota=MessageQuota(2, 60_000), types=(TypeRate("chat", 1, 1),))
    gate = MessagePolicy(backend, limits).gate(ALICE)
    chat = json.dumps({"type": "chat"})
    assert isinstance(await gate.admit(chat), Allowed)
    # Refused by both buckets: still counted by the quota (the checks run together, see messages).
    denial = denied(await gate.admit(chat))
    assert (denial.code, denial.retry_after_ms) == (ErrorCode.RATE_LIMIT_EXCEEDED, 1000)
    assert await backend.counter_get(quota_key(ALICE)) == 2
    clock.advance(1000)
    # Over the quota: reported as such (not a strike), though the buckets passed and spent their tokens.
    denial = denied(await gate.admit(chat))
    assert (denial.code, denial.retry_after_ms) == (ErrorCode.QUOTA_EXCEEDED, 59_000)
    assert gate.strikes == 1  # the earlier bucket refusal; the quota's is none
    bucket = await backend.bucket_peek("msg:" + ALICE.key, rate=1, burst=1)
    assert bucket.remaining == 0


async def test_the_hooks_see_the_quota_decision(backend: Backend) -> None:
    seen: list[Decision] = []
    gate = MessagePolicy(backend, MessageLimits(quota=MessageQuota(1, 1000)), hooks=DecisionHooks(seen.append)).gate(
        ALICE
    )
    await gate.admit("a")
    await gate.admit("b")
    assert [(d.limit, d.allowed, d.code) for d in seen] == [
        ("quota", True, None),
        ("quota", False, ErrorCode.QUOTA_EXCEEDED),
    ]
