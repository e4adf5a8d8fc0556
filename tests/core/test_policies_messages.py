"""MessagePolicy on every backend: payload size, the shared token bucket and strikes in a row."""

from __future__ import annotations

from typing import Any

import pytest

from ratelimit_core import Backend, BucketResult, InvalidArgument, ManualClock
from ratelimit_core.observe import Decision, DecisionHooks
from ratelimit_core.policies import (
    Allowed,
    ClientIdentity,
    CloseCode,
    Denial,
    ErrorCode,
    MessageLimits,
    MessagePolicy,
    OnError,
)
from ratelimit_core.policies.messages import payload_exceeds

ALICE = ClientIdentity("1.1.1.1", "alice")
BOB = ClientIdentity("1.1.1.1", "bob")


def denied(verdict: Allowed | Denial) -> Denial:
    assert isinstance(verdict, Denial), verdict
    return verdict


@pytest.mark.parametrize(
    ("text", "data", "limit", "exceeds"),
    [
        ("a" * 10, None, 10, False),
        ("a" * 11, None, 10, True),
        ("é" * 5, None, 10, False),  # 10 bytes
        ("é" * 5 + "a", None, 10, True),  # 11 bytes in 6 characters
        ("€" * 3, None, 9, False),
        ("😀" * 2, None, 7, True),
        (None, b"x" * 10, 10, False),
        (None, b"x" * 11, 10, True),
        ("", None, 0, False),
    ],
)
def test_payload_size_counts_text_as_utf8_bytes(
    text: str | None, data: bytes | None, limit: int, exceeds: bool
) -> None:
    assert payload_exceeds(limit, text, data) is exceeds


async def test_an_oversized_frame_is_refused_before_any_token_is_taken(backend: Backend) -> None:
    gate = MessagePolicy(backend, MessageLimits(max_payload_bytes=4, rate=1, burst=1)).gate(ALICE)
    denial = denied(await gate.admit("12345"))
    assert (denial.code, denial.close_code, denial.retry_after_ms) == (
        ErrorCode.PAYLOAD_TOO_LARGE,
        CloseCode.PAYLOAD_TOO_LARGE,
        None,
    )
    assert isinstance(await gate.admit("1234"), Allowed)


async def test_burst_passes_then_the_next_is_dropped_with_the_real_retry_after(
    backend: Backend, clock: ManualClock
) -> None:
    gate = MessagePolicy(backend, MessageLimits(rate=2, burst=3)).gate(ALICE)
    for remaining in (2, 1, 0):
        assert await gate.admit("m") == Allowed(remaining)
    denial = denied(await gate.admit("m"))
    assert (denial.code, denial.close_code, denial.retry_after_ms) == (ErrorCode.RATE_LIMIT_EXCEEDED, None, 500)
    clock.advance(499)
    denied(await gate.admit("m"))
    clock.advance(1)
    assert isinstance(await gate.admit("m"), Allowed)


async def test_all_sockets_of_an_identity_share_one_bucket_and_identities_are_independent(backend: Backend) -> None:
    policy = MessagePolicy(backend, MessageLimits(rate=1, burst=2))
    first, second, other = policy.gate(ALICE), policy.gate(ALICE), policy.gate(BOB)
    assert isinstance(await first.admit("m"), Allowed)
    assert isinstance(await second.admit("m"), Allowed)
    denied(await first.admit("m"))
    assert isinstance(await other.admit("m"), Allowed)


async def test_the_last_strike_in_a_row_closes_and_an_allowed_message_resets_the_count(
    backend: Backend, clock: ManualClock
) -> None:
    gate = MessagePolicy(backend, MessageLimits(rate=1, burst=1, strikes=3)).gate(ALICE)
    await gate.admit("m")
    assert denied(await gate.admit("m")).close_code is None
    assert denied(await gate.admit("m")).close_code is None
    assert gate.strikes == 2
    clock.advance(1_000)
    assert isinstance(await gate.admit("m"), Allowed)
    assert gate.strikes == 0
    for _ in range(2):
        assert denied(await gate.admit("m")).close_code is None
    last = denied(await gate.admit("m"))
    assert (last.code, last.close_code, last.retry_after_ms) == (
        ErrorCode.RATE_LIMIT_EXCEEDED,
        CloseCode.RATE_LIMITED,
        1_000,
    )


async def test_fractional_rates_work(backend: Backend, clock: ManualClock) -> None:
    gate = MessagePolicy(backend, MessageLimits(rate=0.01)).gate(ALICE)
    await gate.admit("m")
    assert denied(await gate.admit("m")).retry_after_ms == 100_000


async def test_without_limits_every_message_is_allowed(backend: Backend) -> None:
    gate = MessagePolicy(backend, MessageLimits()).gate(ALICE)
    assert await gate.admit("x" * 100_000) == Allowed(None)


def test_burst_defaults_to_the_rate_rounded_up() -> None:
    assert MessageLimits(rate=2.5).bucket_burst == 3
    assert MessageLimits(rate=0.01).bucket_burst == 1


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"rate": 0}, "rate"),
        ({"rate": float("nan")}, "rate"),
        ({"rate": "5"}, "rate"),
        ({"rate": 1, "burst": 0}, "burst"),
        ({"burst": 5}, "burst"),
        ({"strikes": 0}, "strikes"),
        ({"max_payload_bytes": -1}, "max_payload_bytes"),
    ],
)
def test_bad_message_limits_are_refused_naming_the_field(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidArgument, match=named):
        MessageLimits(**kwargs)  # type: ignore[arg-type]


class PrimaryDown:
    """Answers `bucket_consume` as a `FallbackBackend` does while its primary is down: a refusal, degraded.

    `unavailable` says whether the refusal is only because the primary is down
    (``on_error="deny"``; retry when the wrapper next tries it) or the local share
    of the rate was used up (``"fallback"``).
    """

    def __init__(self, backend: Backend, *, unavailable: bool) -> None:
        self.backend = backend
        self.unavailable = unavailable

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    async def bucket_consume(self, key: str, **kwargs: Any) -> BucketResult:
        return BucketResult(False, 0, 700, 0, degraded=True, unavailable=self.unavailable)


@pytest.mark.parametrize("on_error", [None, "allow", "fallback", "deny"])
async def test_a_refusal_marked_unavailable_drops_the_message_without_a_strike_whatever_the_policy_on_error(
    backend: Backend, on_error: OnError | None
) -> None:
    decisions: list[Decision] = []
    limits = MessageLimits(rate=1, burst=1, strikes=2)
    policy = MessagePolicy(
        PrimaryDown(backend, unavailable=True), limits, on_error=on_error, hooks=DecisionHooks(decisions.append)
    )
    gate = policy.gate(ALICE)
    for _ in range(limits.strikes + 2):
        denial = denied(await gate.admit("m"))
        assert (denial.code, denial.close_code, denial.retry_after_ms, denial.degraded) == (
            ErrorCode.BACKEND_UNAVAILABLE,
            None,
            700,
            True,
        )
    assert gate.strikes == 0
    assert {(d.limit, d.allowed, d.code) for d in decisions} == {("rate", False, ErrorCode.BACKEND_UNAVAILABLE)}


async def test_a_degraded_refusal_not_marked_unavailable_is_a_strike_even_when_the_policy_denies(
    backend: Backend,
) -> None:
    # The wrapper's local share of the rate is used up: the client did send too fast.
    policy = MessagePolicy(PrimaryDown(backend, unavailable=False), MessageLimits(rate=1, strikes=2), on_error="deny")
    gate = policy.gate(ALICE)
    first = denied(await gate.admit("m"))
    assert (first.code, first.close_code, first.degraded, gate.strikes) == (
        ErrorCode.RATE_LIMIT_EXCEEDED,
        None,
        True,
        1,
    )
    last = denied(await gate.admit("m"))
    assert (last.code, last.close_code) == (ErrorCode.RATE_LIMIT_EXCEEDED, CloseCode.RATE_LIMITED)
