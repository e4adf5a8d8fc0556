"""ConnectionPolicy's attempt rate on every backend: a token bucket per identity that every attempt spends."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ratelimit_core import Backend, BackendUnavailable, BucketResult, InvalidArgument, ManualClock
from ratelimit_core.observe import Decision, DecisionHooks
from ratelimit_core.policies import (
    ClientIdentity,
    CloseCode,
    ConnectionLimits,
    ConnectionPolicy,
    ErrorCode,
    Occupancy,
    OnError,
)
from ratelimit_core.policies.connections import connect_bucket_key
from support.failing_storage import Failing
from support.policy_clients import ALICE, ANON, BOB, admitted, denied

OTHER_ANON = ClientIdentity("2.2.2.2")
RATE_2_BURST_3 = ConnectionLimits(per_user=10, connect_rate=2, connect_burst=3)


async def test_the_burst_th_attempt_passes_and_the_next_is_refused_with_the_bucket_wait(backend: Backend) -> None:
    policy = ConnectionPolicy(backend, RATE_2_BURST_3)
    for _ in range(3):
        admitted(await policy.admit(ALICE))
    denial = denied(await policy.admit(ALICE))
    assert (denial.code, denial.close_code, denial.retry_after_ms, denial.close_reason) == (
        ErrorCode.CONNECTION_RATE_EXCEEDED,
        CloseCode.CONNECTION_REFUSED,
        500,  # one token at 2 per second
        "connection_rate_exceeded",
    )


async def test_retry_after_ms_is_honoured_to_the_millisecond(backend: Backend, clock: ManualClock) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(connect_rate=4, connect_burst=1))
    admitted(await policy.admit(ALICE))
    assert denied(await policy.admit(ALICE)).retry_after_ms == 250
    clock.advance(249)
    assert denied(await policy.admit(ALICE)).retry_after_ms == 1
    clock.advance(1)
    admitted(await policy.admit(ALICE))


async def test_a_rate_refused_attempt_takes_no_slot(backend: Backend) -> None:
    limits = ConnectionLimits(per_user=5, per_ip=5, room_max_members=5, connect_rate=1, connect_burst=1)
    policy = ConnectionPolicy(backend, limits)
    admitted(await policy.admit(ALICE, "r"))
    assert denied(await policy.admit(ALICE, "r")).code == ErrorCode.CONNECTION_RATE_EXCEEDED
    assert await policy.occupancy(ALICE, "r") == Occupancy(identity=1, ip=1, room=1)


async def test_attempts_refused_by_a_slot_limit_still_spend_tokens(backend: Backend) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(per_user=1, connect_rate=1, connect_burst=3))
    admitted(await policy.admit(ALICE))
    assert denied(await policy.admit(ALICE)).code == ErrorCode.CONNECTION_LIMIT_EXCEEDED
    assert denied(await policy.admit(ALICE)).code == ErrorCode.CONNECTION_LIMIT_EXCEEDED
    assert denied(await policy.admit(ALICE)).code == ErrorCode.CONNECTION_RATE_EXCEEDED


async def test_a_rate_refused_attempt_spends_nothing_more(backend: Backend, clock: ManualClock) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(connect_rate=1, connect_burst=1))
    admitted(await policy.admit(ALICE))
    for _ in range(5):
        denied(await policy.admit(ALICE))
    clock.advance(1_000)
    admitted(await policy.admit(ALICE))


async def test_admitted_attempts_spend_tokens_even_once_released(backend: Backend) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(per_user=1, connect_rate=0.5, connect_burst=2))
    for _ in range(2):
        await admitted(await policy.admit(ALICE)).leases.release()
    denial = denied(await policy.admit(ALICE))
    assert (denial.code, denial.retry_after_ms) == (ErrorCode.CONNECTION_RATE_EXCEEDED, 2_000)
    assert await policy.occupancy(ALICE) == Occupancy(identity=0, ip=0)


async def test_each_identity_has_its_own_bucket(backend: Backend) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(connect_rate=1, connect_burst=1))
    admitted(await policy.admit(ALICE))
    denied(await policy.admit(ALICE))
    admitted(await policy.admit(BOB))  # same IP, another user
    admitted(await policy.admit(ANON))  # the IP itself, anonymous
    denied(await policy.admit(ANON))
    admitted(await policy.admit(OTHER_ANON))
    assert connect_bucket_key(ALICE) != connect_bucket_key(ANON)


async def test_the_default_burst_is_the_rate_rounded_up(backend: Backend) -> None:
    policy = ConnectionPolicy(backend, ConnectionLimits(connect_rate=2.5))
    assert policy.limits.connect_bucket_burst == 3
    for _ in range(3):
        admitted(await policy.admit(ALICE))
    denied(await policy.admit(ALICE))


async def test_the_rate_decision_is_reported_before_any_slot(backend: Backend) -> None:
    decisions: list[Decision] = []
    limits = ConnectionLimits(per_user=5, connect_rate=1, connect_burst=1)
    policy = ConnectionPolicy(backend, limits, hooks=DecisionHooks(decisions.append))
    admitted(await policy.admit(ALICE))
    denied(await policy.admit(ALICE))
    assert [(d.limit, d.allowed, d.code, d.identity) for d in decisions] == [
        ("connect", True, None, "user:alice"),
        ("user", True, None, "user:alice"),
        ("connect", False, ErrorCode.CONNECTION_RATE_EXCEEDED, "user:alice"),
    ]


class BucketDown:
    """Answers `bucket_consume` as a `FallbackBackend` in ``"deny"`` mode does while its primary is down."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def bucket_consume(self, key: str, **kwargs: Any) -> BucketResult:
        return BucketResult(False, 0, 1_000, 0, degraded=True, unavailable=True)


@pytest.mark.parametrize("on_error", [None, "allow", "fallback", "deny"])
async def test_a_bucket_refusal_marked_unavailable_is_backend_unavailable(
    backend: Backend, on_error: OnError | None
) -> None:
    decisions: list[Decision] = []
    limits = ConnectionLimits(per_user=5, connect_rate=1, retry_after_ms=2_500)
    policy = ConnectionPolicy(BucketDown(backend), limits, on_error=on_error, hooks=DecisionHooks(decisions.append))
    denial = denied(await policy.admit(ALICE))
    assert (denial.code, denial.close_code, denial.retry_after_ms, denial.degraded) == (
        ErrorCode.BACKEND_UNAVAILABLE,
        CloseCode.TRY_AGAIN_LATER,
        2_500,
        True,
    )
    assert [(d.limit, d.allowed, d.code) for d in decisions] == [("connect", False, ErrorCode.BACKEND_UNAVAILABLE)]
    assert await policy.occupancy(ALICE) == Occupancy(identity=0, ip=0)


async def test_a_failing_bucket_follows_on_error(backend: Backend) -> None:
    limits = ConnectionLimits(per_user=5, connect_rate=1)
    failing = Failing(backend)
    failing.fail("bucket_consume")  # as a backend without a fallback does during an outage
    with pytest.raises(BackendUnavailable):
        await ConnectionPolicy(failing, limits).admit(ALICE)
    denial = denied(await ConnectionPolicy(failing, limits, on_error="deny").admit(ALICE))
    assert (denial.code, denial.close_code) == (ErrorCode.BACKEND_UNAVAILABLE, CloseCode.TRY_AGAIN_LATER)
    allowed = admitted(await ConnectionPolicy(failing, limits, on_error="allow").admit(ALICE))
    assert (allowed.leases.slots, allowed.degraded) == ((), True)
    assert await ConnectionPolicy(backend, limits).occupancy(ALICE) == Occupancy(identity=0, ip=0)


class HeldSetAdd:
    """Delegates to a backend; `set_add` sets `started`, then waits for `go` before it runs."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.started = asyncio.Event()
        self.go = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def set_add(self, *args: Any, **kwargs: Any) -> Any:
        self.started.set()
        await self.go.wait()
        return await self.backend.set_add(*args, **kwargs)


async def test_a_cancelled_attempt_keeps_its_token_spent_and_holds_no_slot(backend: Backend) -> None:
    limits = ConnectionLimits(per_user=5, connect_rate=1, connect_burst=1)
    held = HeldSetAdd(backend)
    attempt = asyncio.create_task(ConnectionPolicy(held, limits).admit(ALICE))
    await held.started.wait()
    attempt.cancel()
    await asyncio.sleep(0)
    held.go.set()  # the clean-up waits for the add in flight, then removes its slot
    with pytest.raises(asyncio.CancelledError):
        await attempt
    policy = ConnectionPolicy(backend, limits)
    assert await policy.occupancy(ALICE) == Occupancy(identity=0, ip=0)
    assert denied(await policy.admit(ALICE)).code == ErrorCode.CONNECTION_RATE_EXCEEDED


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"connect_burst": 5}, "connect_burst=5 needs a connect_rate"),
        ({"connect_rate": 0}, "connect_rate"),
        ({"connect_rate": -1.0}, "connect_rate"),
        ({"connect_rate": float("nan")}, "connect_rate"),
        ({"connect_rate": 1, "connect_burst": 0}, "connect_burst"),
        ({"connect_rate": 0.123457, "connect_burst": 10**9}, "connect_burst"),
    ],
)
def test_bad_connect_limits_are_refused_naming_the_field(fields: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidArgument, match=named):
        ConnectionLimits(**fields)


def test_without_a_rate_there_is_no_bucket() -> None:
    assert ConnectionLimits().connect_bucket_burst is None
    assert ConnectionLimits(connect_rate=0.01).connect_bucket_burst == 1
    assert ConnectionLimits(connect_rate=3, connect_burst=7).connect_bucket_burst == 7
