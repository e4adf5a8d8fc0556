"""Shadow mode on every backend: every decision computed and reported, nothing refused, dropped or closed.

A connection over a limit is admitted holding its slots (taken without a capacity,
so the counts are those of the real traffic) and carries the would-be denial; a
frame over a limit is delivered and carries its would-be denial.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from ratelimit_core import Backend, BackendUnavailable, InvalidArgument, ManualClock
from ratelimit_core.observe import Decision, DecisionHooks
from ratelimit_core.policies import (
    Admitted,
    Allowed,
    ClientIdentity,
    CloseCode,
    ConnectionLimits,
    ConnectionPolicy,
    Denial,
    ErrorCode,
    MessageLimits,
    MessagePolicy,
    MessageQuota,
    Occupancy,
    TypeRate,
)
from ratelimit_core.policies.connections import identity_slots_key, ip_slots_key, room_members_key
from support.failing_storage import LostReply
from support.held_calls import HeldCalls, calls_to
from support.policy_clients import ALICE, admitted, allowed

ALICE_KEYS = (identity_slots_key(ALICE), ip_slots_key(ALICE.ip), room_members_key("r"))


def shadowed_code(verdict: Admitted | Allowed) -> ErrorCode | None:
    return None if verdict.shadowed is None else verdict.shadowed.code


# -- connections ----------------------------------------------------------------------------------------


async def test_the_n_plus_first_connection_over_a_per_user_limit_is_admitted_and_reported(backend: Backend) -> None:
    seen: list[Decision] = []
    policy = ConnectionPolicy(backend, ConnectionLimits(per_user=3), hooks=DecisionHooks(seen.append), shadow=True)
    held = [admitted(await policy.admit(ALICE)) for _ in range(3)]
    assert [verdict.shadowed for verdict in held] == [None, None, None]
    over = admitted(await policy.admit(ALICE))
    assert over.shadowed is not None
    assert (over.shadowed.code, over.shadowed.close_code, over.shadowed.retry_after_ms) == (
        ErrorCode.CONNECTION_LIMIT_EXCEEDED,
        CloseCode.CONNECTION_REFUSED,
        5_000,
    )
    assert "limit 3" in over.shadowed.message
    assert seen == [Decision("user", True, None, ALICE.key, shadow=True)] * 3 + [
        Decision("user", False, ErrorCode.CONNECTION_LIMIT_EXCEEDED, ALICE.key, shadow=True)
    ]
    # The storage holds what the real traffic holds: N+1 slots, all released at close.
    assert (await policy.occupancy(ALICE)).identity == 4
    for verdict in (*held, over):
        await verdict.leases.release()
    assert (await policy.occupancy(ALICE)).identity == 0


async def test_the_reports_stay_true_as_shadow_traffic_grows_and_shrinks(backend: Backend) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(per_user=1), shadow=True)
    first, second, third = [admitted(await policy.admit(ALICE)) for _ in range(3)]
    assert [shadowed_code(v) for v in (first, second, third)] == [None, *[ErrorCode.CONNECTION_LIMIT_EXCEEDED] * 2]
    await first.leases.release()
    await second.leases.release()
    # One live socket (the third): the next is over the limit of 1, as it would be without shadow mode.
    assert shadowed_code(admitted(await policy.admit(ALICE))) == ErrorCode.CONNECTION_LIMIT_EXCEEDED
    await third.leases.release()


async def test_every_limit_is_reported_and_the_first_refusal_in_order_is_the_shadowed_one(backend: Backend) -> None:
    seen: list[Decision] = []
    limits = ConnectionLimits(per_user=0, per_ip=0, room_max_members=0, connect_rate=1, connect_burst=1)
    policy = ConnectionPolicy(backend, limits, hooks=DecisionHooks(seen.append), shadow=True)
    first = admitted(await policy.admit(ALICE, "r"))
    assert shadowed_code(first) == ErrorCode.CONNECTION_LIMIT_EXCEEDED  # the user's limit decides before the IP's
    second = admitted(await policy.admit(ALICE, "r"))
    assert second.shadowed is not None
    assert (second.shadowed.code, second.shadowed.retry_after_ms) == (ErrorCode.CONNECTION_RATE_EXCEEDED, 1_000)
    assert [(d.limit, d.allowed, d.code) for d in seen[4:]] == [
        ("connect", False, ErrorCode.CONNECTION_RATE_EXCEEDED),
        ("user", False, ErrorCode.CONNECTION_LIMIT_EXCEEDED),
        ("ip", False, ErrorCode.CONNECTION_LIMIT_EXCEEDED),
        ("room", False, ErrorCode.ROOM_FULL),
    ]
    assert all(decision.shadow for decision in seen)
    assert await policy.occupancy(ALICE, "r") == Occupancy(identity=2, ip=2, room=2)
    for verdict in (first, second):
        await verdict.leases.release()
    assert await policy.occupancy(ALICE, "r") == Occupancy(identity=0, ip=0, room=0)


async def test_an_empty_attempts_bucket_is_reported_with_its_exact_wait_and_admits(
    backend: Backend, clock: ManualClock
) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(connect_rate=4, connect_burst=2), shadow=True)
    verdicts = [admitted(await policy.admit(ALICE)) for _ in range(3)]
    assert [shadowed_code(v) for v in verdicts] == [None, None, ErrorCode.CONNECTION_RATE_EXCEEDED]
    assert verdicts[2].shadowed is not None
    assert verdicts[2].shadowed.retry_after_ms == 250
    clock.advance(250)  # the refused attempt took no token: one is back after exactly the wait
    assert admitted(await policy.admit(ALICE)).shadowed is None


async def test_a_room_over_capacity_is_reported_as_room_full(backend: Backend) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(room_max_members=1), shadow=True)
    first = admitted(await policy.admit(ALICE, "r"))
    second = admitted(await policy.admit(ClientIdentity("2.2.2.2", "bob"), "r"))
    assert (first.shadowed, shadowed_code(second)) == (None, ErrorCode.ROOM_FULL)
    await first.leases.release()
    await second.leases.release()


async def test_a_storage_failure_under_deny_admits_holding_nothing_and_reports_backend_unavailable(
    backend: Backend,
) -> None:
    limits = ConnectionLimits(per_user=1, per_ip=1, room_max_members=1)
    policy = ConnectionPolicy(LostReply(backend), limits, on_error="deny", shadow=True)
    verdict = admitted(await policy.admit(ALICE, "r"))
    assert verdict.shadowed is not None
    assert (verdict.shadowed.code, verdict.degraded, verdict.leases.slots) == (ErrorCode.BACKEND_UNAVAILABLE, True, ())
    assert await policy.occupancy(ALICE, "r") == Occupancy(identity=0, ip=0, room=0)


async def test_a_cancelled_shadow_attempt_still_holds_nothing(backend: Backend) -> None:
    storage = HeldCalls(backend)
    gate = storage.hold(calls_to("set_add", "room:"))
    policy = ConnectionPolicy(storage, ConnectionLimits(per_user=0, per_ip=0, room_max_members=0), shadow=True)
    task = asyncio.create_task(policy.admit(ALICE, "r", connection_id="c1"))
    await asyncio.wait_for(gate.started.wait(), timeout=10)
    task.cancel()
    gate.go.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=10)
    await storage.settle()
    assert await policy.occupancy(ALICE, "r") == Occupancy(identity=0, ip=0, room=0)
    assert storage.removals == {(key, "c1"): 1 for key in ALICE_KEYS}


def test_shadow_must_be_a_bool(backend: Backend) -> None:
    with pytest.raises(InvalidArgument, match=r"shadow must be True or False, got 'yes'"):
        ConnectionPolicy(backend, ConnectionLimits(), shadow="yes")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match=r"shadow must be True or False, got 1"):
        MessagePolicy(backend, MessageLimits(), shadow=1)  # type: ignore[arg-type]


# -- messages -------------------------------------------------------------------------------------------


async def test_frames_over_the_rate_are_delivered_and_reported_with_the_exact_wait(
    backend: Backend, clock: ManualClock
) -> None:
    seen: list[Decision] = []
    policy = MessagePolicy(backend, MessageLimits(rate=2, burst=3), hooks=DecisionHooks(seen.append), shadow=True)
    gate = policy.gate(ALICE)
    verdicts = [allowed(await gate.admit("hi")) for _ in range(4)]
    assert [v.remaining for v in verdicts] == [2, 1, 0, 0]
    assert [shadowed_code(v) for v in verdicts] == [None, None, None, ErrorCode.RATE_LIMIT_EXCEEDED]
    over = verdicts[3].shadowed
    assert over is not None
    assert (over.retry_after_ms, over.close_code) == (500, None)
    assert [(d.limit, d.allowed, d.shadow) for d in seen] == [("rate", True, True)] * 3 + [("rate", False, True)]
    clock.advance(500)  # the delivered-over-limit frame took no token: one is back after exactly the wait
    assert allowed(await gate.admit("hi")).shadowed is None


async def test_strikes_that_would_close_are_reported_and_the_count_starts_again(backend: Backend) -> None:
    policy = MessagePolicy(backend, MessageLimits(rate=0.001, burst=1, strikes=2), shadow=True)
    gate = policy.gate(ALICE)
    assert allowed(await gate.admit("a")).shadowed is None
    closes = []
    for _ in range(5):
        shadowed = allowed(await gate.admit("a")).shadowed
        assert shadowed is not None
        assert shadowed.code == ErrorCode.RATE_LIMIT_EXCEEDED
        closes.append(shadowed.close_code)
    assert closes == [None, CloseCode.RATE_LIMITED, None, CloseCode.RATE_LIMITED, None]
    assert gate.strikes == 1


async def test_a_frame_too_large_is_delivered_still_counted_and_reported_as_payload_too_large(
    backend: Backend,
) -> None:
    seen: list[Decision] = []
    limits = MessageLimits(max_payload_bytes=4, rate=1, burst=2)
    gate = MessagePolicy(backend, limits, hooks=DecisionHooks(seen.append), shadow=True).gate(ALICE)
    verdict = allowed(await gate.admit("too long"))
    assert verdict.shadowed is not None
    assert (verdict.shadowed.code, verdict.shadowed.close_code) == (
        ErrorCode.PAYLOAD_TOO_LARGE,
        CloseCode.PAYLOAD_TOO_LARGE,
    )
    assert verdict.remaining == 1  # delivered, so it spent a token like any delivered frame
    assert [(d.limit, d.allowed, d.shadow) for d in seen] == [("payload", False, True), ("rate", True, True)]


async def test_a_typed_frame_and_the_quota_are_reported_and_delivered(backend: Backend, clock: ManualClock) -> None:
    limits = MessageLimits(types=(TypeRate("chat", 1, 1),), quota=MessageQuota(2, 10_000))
    gate = MessagePolicy(backend, limits, shadow=True).gate(ALICE)
    chat = json.dumps({"type": "chat"})
    first, second, third = [allowed(await gate.admit(chat)) for _ in range(3)]
    assert first.shadowed is None
    assert second.shadowed is not None
    assert (second.shadowed.code, second.shadowed.limit) == (ErrorCode.RATE_LIMIT_EXCEEDED, "chat")
    assert third.shadowed is not None
    assert (third.shadowed.code, third.shadowed.retry_after_ms) == (ErrorCode.QUOTA_EXCEEDED, 10_000)


async def test_a_storage_failure_under_deny_delivers_and_reports_backend_unavailable(backend: Backend) -> None:
    class Broken:
        def __getattr__(self, name: str) -> object:
            return getattr(backend, name)

        async def bucket_consume(self, key: str, **kwargs: object) -> object:
            raise BackendUnavailable("Redis did not answer (test)")

    gate = MessagePolicy(Broken(), MessageLimits(rate=1), on_error="deny", shadow=True).gate(ALICE)  # type: ignore[arg-type]
    verdict = allowed(await gate.admit("hi"))
    assert (shadowed_code(verdict), verdict.degraded) == (ErrorCode.BACKEND_UNAVAILABLE, True)


async def test_without_shadow_the_same_frames_are_refused(backend: Backend) -> None:
    gate = MessagePolicy(backend, MessageLimits(rate=0.001, burst=1, strikes=1)).gate(ALICE)
    assert isinstance(await gate.admit("a"), Allowed)
    refused = await gate.admit("a")
    assert isinstance(refused, Denial)
    assert refused.close_code == CloseCode.RATE_LIMITED
