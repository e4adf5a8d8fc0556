"""What the policies decide when the storage fails: raise, allow or deny (``on_error``), on every backend."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ratelimit_core import (
    Backend,
    BackendError,
    BackendMisconfigured,
    BackendUnavailable,
    FallbackBackend,
    InvalidArgument,
    ManualClock,
)
from ratelimit_core.failure_modes import check_on_error
from ratelimit_core.policies import (
    Admitted,
    Allowed,
    CloseCode,
    ConnectionLimits,
    ConnectionPolicy,
    Denial,
    ErrorCode,
    MessageLimits,
    MessagePolicy,
    Occupancy,
    OnError,
)
from ratelimit_core.policies.failures import DEFAULT_UNAVAILABLE_RETRY_MS
from support.failing_storage import Failing
from support.policy_clients import ALICE

LIMITS = ConnectionLimits(per_user=2, per_ip=5, room_max_members=5, retry_after_ms=2_500)
RATE = MessageLimits(rate=1, burst=1, strikes=2)
POLICY_LOGGER = "ratelimit_core.policies.failures"


def occupancy(backend: Backend) -> Any:
    return ConnectionPolicy(backend, LIMITS).occupancy(ALICE, "r")


async def test_without_on_error_a_failure_raises_and_gives_back_what_was_taken(backend: Backend) -> None:
    failing = Failing(backend)
    failing.fail("set_add", "conn:addr:")  # the identity slot is taken first, then the IP fails
    with pytest.raises(BackendUnavailable):
        await ConnectionPolicy(failing, LIMITS).admit(ALICE, "r")
    assert await occupancy(backend) == Occupancy(identity=0, ip=0, room=0)


@pytest.mark.parametrize("on_error", ["allow", "fallback"])
async def test_fail_open_admits_a_connection_holding_no_slots(
    backend: Backend, on_error: OnError, caplog: pytest.LogCaptureFixture
) -> None:
    failing = Failing(backend)
    failing.fail("set_add", "room:")
    with caplog.at_level(logging.WARNING, logger=POLICY_LOGGER):
        verdict = await ConnectionPolicy(failing, LIMITS, on_error=on_error).admit(ALICE, "r")
    assert isinstance(verdict, Admitted)
    assert verdict.degraded
    assert verdict.leases.slots == ()
    assert await occupancy(backend) == Occupancy(identity=0, ip=0, room=0)
    assert [record.levelno for record in caplog.records] == [logging.WARNING]
    assert "allowed" in caplog.text


async def test_fail_closed_refuses_with_backend_unavailable_and_close_1013(backend: Backend) -> None:
    failing = Failing(backend)
    failing.fail("set_add", "room:")
    verdict = await ConnectionPolicy(failing, LIMITS, on_error="deny").admit(ALICE, "r")
    assert isinstance(verdict, Denial)
    assert (verdict.code, verdict.close_code, verdict.retry_after_ms, verdict.degraded) == (
        ErrorCode.BACKEND_UNAVAILABLE,
        CloseCode.TRY_AGAIN_LATER,
        2_500,
        True,
    )
    assert await occupancy(backend) == Occupancy(identity=0, ip=0, room=0)


async def test_a_failure_that_is_not_an_outage_is_logged_with_its_traceback_and_decided_alike(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    failing = Failing(backend)
    failing.fail("set_add", "", BackendError("WRONGTYPE (test)"))
    with caplog.at_level(logging.WARNING, logger=POLICY_LOGGER):
        verdict = await ConnectionPolicy(failing, LIMITS, on_error="deny").admit(ALICE)
    assert isinstance(verdict, Denial)
    assert verdict.code == ErrorCode.BACKEND_UNAVAILABLE
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert "WRONGTYPE" in caplog.text


async def test_a_misconfigured_storage_behind_the_default_stack_is_an_error_not_an_outage(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    failing = Failing(backend)
    failing.fail("set_add", "", BackendMisconfigured("127.0.0.1:6379 refused the password (test): fix the URL"))
    wrapper = FallbackBackend(failing)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        verdict = await ConnectionPolicy(wrapper, LIMITS, on_error="fallback").admit(ALICE)
    assert not wrapper.degraded, "limits must not silently become per process"
    assert isinstance(verdict, Admitted) and verdict.degraded and verdict.leases.slots == ()
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert "refused the password" in caplog.text


async def test_without_on_error_a_message_failure_raises(backend: Backend) -> None:
    failing = Failing(backend)
    failing.fail("bucket_consume")
    with pytest.raises(BackendUnavailable):
        await MessagePolicy(failing, RATE).gate(ALICE).admit("hi")


@pytest.mark.parametrize("on_error", ["allow", "fallback"])
async def test_fail_open_lets_every_message_pass(backend: Backend, on_error: OnError) -> None:
    failing = Failing(backend)
    failing.fail("bucket_consume")
    gate = MessagePolicy(failing, RATE, on_error=on_error).gate(ALICE)
    for _ in range(5):  # far beyond the burst of 1
        assert await gate.admit("hi") == Allowed(None, degraded=True)


async def test_fail_closed_drops_messages_keeps_the_socket_open_and_counts_no_strike(backend: Backend) -> None:
    failing = Failing(backend)
    failing.fail("bucket_consume")
    gate = MessagePolicy(failing, RATE, on_error="deny").gate(ALICE)
    for _ in range(RATE.strikes + 3):
        verdict = await gate.admit("hi")
        assert isinstance(verdict, Denial)
        assert (verdict.code, verdict.close_code, verdict.retry_after_ms) == (
            ErrorCode.BACKEND_UNAVAILABLE,
            None,
            DEFAULT_UNAVAILABLE_RETRY_MS,
        )
    assert gate.strikes == 0
    failing.heal()
    assert isinstance(await gate.admit("hi"), Allowed)


async def test_an_outage_is_logged_once_per_gate_until_the_storage_answers_again(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    failing = Failing(backend)
    gate = MessagePolicy(failing, MessageLimits(rate=100, burst=100), on_error="allow").gate(ALICE)
    with caplog.at_level(logging.WARNING, logger=POLICY_LOGGER):
        failing.fail("bucket_consume")
        for _ in range(3):
            await gate.admit("hi")
        failing.heal()
        await gate.admit("hi")
        failing.fail("bucket_consume")
        await gate.admit("hi")
    assert len(caplog.records) == 2


class Down:
    """A primary that is never reachable."""

    def __getattr__(self, name: str) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            raise BackendUnavailable("connection refused (test)")

        return call


async def test_a_denying_fallback_backend_refusal_is_reported_as_backend_unavailable(clock: ManualClock) -> None:
    backend = FallbackBackend(Down(), on_error="deny", cooldown_ms=700, clock=clock)
    verdict = await ConnectionPolicy(backend, LIMITS, on_error="deny").admit(ALICE, "r")
    assert isinstance(verdict, Denial)
    assert (verdict.code, verdict.close_code, verdict.degraded) == (
        ErrorCode.BACKEND_UNAVAILABLE,
        CloseCode.TRY_AGAIN_LATER,
        True,
    )
    gate = MessagePolicy(backend, RATE, on_error="deny").gate(ALICE)
    for _ in range(RATE.strikes + 1):
        message = await gate.admit("hi")
        assert isinstance(message, Denial)
        # retry_after_ms is the time until the wrapper tries its primary again.
        assert (message.code, message.close_code, message.retry_after_ms) == (ErrorCode.BACKEND_UNAVAILABLE, None, 700)
    assert gate.strikes == 0


async def test_a_falling_back_backend_refusal_is_the_limit_the_client_reached(clock: ManualClock) -> None:
    backend = FallbackBackend(Down(), clock=clock)
    policy = ConnectionPolicy(backend, LIMITS, on_error="fallback")
    for _ in range(2):
        admitted = await policy.admit(ALICE)
        assert isinstance(admitted, Admitted)
        assert admitted.degraded
    refused = await policy.admit(ALICE)
    assert isinstance(refused, Denial)
    assert (refused.code, refused.degraded) == (ErrorCode.CONNECTION_LIMIT_EXCEEDED, True)
    gate = MessagePolicy(backend, RATE, on_error="fallback").gate(ALICE)
    assert isinstance(await gate.admit("hi"), Allowed)
    limited = await gate.admit("hi")
    assert isinstance(limited, Denial)
    assert (limited.code, gate.strikes) == (ErrorCode.RATE_LIMIT_EXCEEDED, 1)


@pytest.mark.parametrize("bad", ["ignore", "", 1, "DENY"])
def test_an_unknown_on_error_is_refused_naming_it(bad: object) -> None:
    with pytest.raises(InvalidArgument, match="on_error"):
        check_on_error(bad)
    with pytest.raises(InvalidArgument, match="on_error"):
        ConnectionPolicy(Down(), LIMITS, on_error=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="on_error"):
        MessagePolicy(Down(), RATE, on_error=bad)  # type: ignore[arg-type]
