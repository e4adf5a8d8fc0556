"""The conformance kit: every backend agrees with MemoryBackend and the reference model.

The kit is tested too: it must catch a bug even when every backend shares it, and
its invariants must catch a bug the backends share with the reference model.
"""

from __future__ import annotations

import dataclasses
import unittest
import uuid

import pytest
from hypothesis import Phase, settings
from hypothesis.stateful import run_state_machine_as_test

from ratelimit_core import Backend, BucketResult, MemoryBackend, SetResult
from ratelimit_core.clock import Clock
from ratelimit_core.testing import (
    BackendFactory,
    ConformanceMachine,
    ReferenceModel,
    conformance_test_case,
    run_conformance,
)

STEPS = 100
"""Steps per example: long enough to pile up state, and the CI profile's 200
examples still take only seconds per backend."""


def _prefix() -> str:
    return f"conf{uuid.uuid4().hex[:12]}:"


def memory_backend(clock: Clock) -> Backend:
    return MemoryBackend(clock=clock, prefix=_prefix())


def test_backend_agrees_with_memory_backend_and_reference_model(backend_factory: BackendFactory) -> None:
    profile = settings(ConformanceMachine.TestCase.settings, stateful_step_count=STEPS)
    run_conformance(memory_backend, backend_factory, settings=profile)


# -- the kit itself ---------------------------------------------------------------------


def _finding() -> settings:
    """Settings for a run that must fail: a fixed seed, so it fails the same way every
    time (a bug here takes at most a few hundred examples), and no shrinking."""
    return settings(
        ConformanceMachine.TestCase.settings,
        max_examples=2_000,
        stateful_step_count=STEPS,
        phases=[Phase.generate],
        derandomize=True,
        database=None,
    )


class RetryOneMsLate(MemoryBackend):
    async def bucket_consume(self, key: str, *, rate: float, burst: int, cost: int = 1) -> BucketResult:
        result = await super().bucket_consume(key, rate=rate, burst=burst, cost=cost)
        return result if result.allowed else dataclasses.replace(result, retry_after_ms=result.retry_after_ms + 1)


class OneOverCapacity(MemoryBackend):
    async def set_add(
        self, key: str, member: str, *, capacity: int | None = None, lease_ms: int | None = None
    ) -> SetResult:
        capacity = None if capacity is None else capacity + 1
        return await super().set_add(key, member, capacity=capacity, lease_ms=lease_ms)


class DecrForgetsWindow(MemoryBackend):
    async def counter_decr(self, key: str, amount: int = 1) -> int:
        value = await super().counter_decr(key, amount)
        if value:
            self._counters[key].expires_at = None
        return value


class LeaseOneMsLonger(MemoryBackend):
    """Like checking `now > expiry` where the contract says a lease ends at `now >= expiry`."""

    async def set_add(
        self, key: str, member: str, *, capacity: int | None = None, lease_ms: int | None = None
    ) -> SetResult:
        lease_ms = None if lease_ms is None else min(lease_ms + 1, 10**15)
        return await super().set_add(key, member, capacity=capacity, lease_ms=lease_ms)


class RefusalIgnoresStepBack(MemoryBackend):
    """The bug of a clock stepping back: a refusal (or a peek) stores nothing, so the bucket
    stays empty until the clock catches up with its last update, whatever the wait said."""

    async def bucket_consume(self, key: str, *, rate: float, burst: int, cost: int = 1) -> BucketResult:
        before = self._buckets.get(key)
        result = await super().bucket_consume(key, rate=rate, burst=burst, cost=cost)
        if not result.allowed and before is not None:
            self._buckets[key] = before
        return result

    async def bucket_peek(self, key: str, *, rate: float, burst: int, cost: int = 1) -> BucketResult:
        before = self._buckets.get(key)
        result = await super().bucket_peek(key, rate=rate, burst=burst, cost=cost)
        if before is not None:
            self._buckets[key] = before
        return result


@pytest.mark.parametrize(
    "buggy", [RetryOneMsLate, OneOverCapacity, DecrForgetsWindow, LeaseOneMsLonger, RefusalIgnoresStepBack]
)
def test_kit_catches_a_bug_that_every_backend_shares(buggy: type[MemoryBackend]) -> None:
    def make(clock: Clock) -> Backend:
        return buggy(clock=clock)

    with pytest.raises(AssertionError, match="the answers differ"):
        run_conformance(make, make, settings=_finding())


class OneOverCapacityModel(ReferenceModel):
    def set_add(self, key: str, member: str, *, capacity: int | None = None, lease_ms: int | None = None) -> SetResult:
        capacity = None if capacity is None else capacity + 1
        return super().set_add(key, member, capacity=capacity, lease_ms=lease_ms)


class RefusalIgnoresStepBackModel(ReferenceModel):
    """`RefusalIgnoresStepBack` as a model: only an allowed consume moves the update time."""

    def _updated(self, key: str) -> int | None:
        bucket = self._buckets.get(key)
        return None if bucket is None else bucket.updated_ms

    def _restore(self, key: str, updated: int | None) -> None:
        if updated is not None:
            self._buckets[key].updated_ms = updated

    def bucket_consume(self, key: str, *, rate: float, burst: int, cost: int = 1) -> BucketResult:
        updated = self._updated(key)
        result = super().bucket_consume(key, rate=rate, burst=burst, cost=cost)
        if not result.allowed:
            self._restore(key, updated)
        return result

    def bucket_peek(self, key: str, *, rate: float, burst: int, cost: int = 1) -> BucketResult:
        updated = self._updated(key)
        result = super().bucket_peek(key, rate=rate, burst=burst, cost=cost)
        self._restore(key, updated)
        return result


def test_waiting_out_a_refusal_catches_a_step_back_bug_the_backends_share_with_the_model() -> None:
    """The finding of the issue: both drivers and the model agreed, and the wait was still a lie."""

    class SharedBug(ConformanceMachine):
        backend_factories = (lambda clock: RefusalIgnoresStepBack(clock=clock),)
        reference_model = RefusalIgnoresStepBackModel

    with pytest.raises(AssertionError) as failure:
        run_state_machine_as_test(SharedBug, settings=_finding())
    assert any(entry.name == "_wait_out" for entry in failure.traceback)


def test_invariants_catch_a_bug_the_backends_share_with_the_model() -> None:
    class SharedBug(ConformanceMachine):
        backend_factories = (lambda clock: OneOverCapacity(clock=clock),)
        reference_model = OneOverCapacityModel

    with pytest.raises(AssertionError) as failure:
        run_state_machine_as_test(SharedBug, settings=_finding())
    assert any(entry.name == "sets_stay_within_capacity" for entry in failure.traceback)


def _run_case(case: type[unittest.TestCase]) -> unittest.TestResult:
    result = unittest.TestResult()
    case("runTest").run(result)
    return result


def test_conformance_test_case_is_a_unittest_case_that_passes_for_a_conforming_backend() -> None:
    async def make(clock: Clock) -> Backend:  # an awaitable factory is awaited
        return MemoryBackend(clock=clock)

    case = conformance_test_case(make, memory_backend, settings=settings(max_examples=10, database=None))
    assert issubclass(case, unittest.TestCase)
    result = _run_case(case)
    assert result.wasSuccessful(), result.failures + result.errors
    assert result.testsRun == 1


def test_conformance_test_case_fails_for_a_backend_that_disagrees() -> None:
    case = conformance_test_case(lambda clock: RetryOneMsLate(clock=clock), settings=_finding())
    result = _run_case(case)
    assert len(result.failures) == 1
    assert "the answers differ" in result.failures[0][1]


class CleanupRecorded(MemoryBackend):
    def __init__(self, clock: Clock) -> None:
        super().__init__(clock=clock)
        self.events: list[str] = []

    async def clear(self) -> None:
        self.events.append("clear")
        await super().clear()

    async def aclose(self) -> None:
        self.events.append("aclose")
        await super().aclose()


def test_every_backend_is_cleared_before_and_after_its_example_then_closed() -> None:
    made: list[CleanupRecorded] = []

    def make(clock: Clock) -> Backend:
        made.append(CleanupRecorded(clock))
        return made[-1]

    run_conformance(make, settings=settings(max_examples=5, database=None))
    assert made
    assert all(backend.events == ["clear", "clear", "aclose"] for backend in made), [b.events for b in made]


def test_a_failing_example_still_closes_its_backends() -> None:
    made: list[CleanupRecorded] = []

    def make(clock: Clock) -> Backend:
        made.append(CleanupRecorded(clock))
        return made[-1]

    with pytest.raises(AssertionError):
        run_conformance(make, lambda clock: RetryOneMsLate(clock=clock), settings=_finding())
    assert made
    assert all(backend.events[-1] == "aclose" for backend in made)


@pytest.mark.parametrize(
    ("factories", "error", "message"),
    [
        ((), ValueError, "factories: give at least one"),
        (("memory://",), TypeError, "factories: a backend factory must be callable"),
    ],
)
def test_run_conformance_refuses_factories_it_cannot_use(
    factories: tuple[object, ...], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        run_conformance(*factories)  # type: ignore[arg-type]
