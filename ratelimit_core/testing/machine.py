"""`ConformanceMachine`: one random sequence of calls, sent to every backend and the model.

Every rule makes the same call on each backend (and on the `ReferenceModel`) and
asserts that all the answers are equal; the clock rules move the one
`RewindableClock` all of them share, forwards and sometimes backwards. The invariants are laws that hold whatever the
sequence, checked on every answer, so a bug shared by the backends and the model
is still caught when it breaks one.

The machine's rules are synchronous (Hypothesis drives them); it runs the
backends' coroutines on an event loop of its own, made per example.
"""

from __future__ import annotations

import asyncio
import inspect
import reprlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from ..backend import Backend, BucketResult, CounterResult, SetResult
from ..clock import Clock
from .clock import RewindableClock
from .model import ReferenceModel
from .strategies import (
    MAX_CAPACITY,
    KeyPlan,
    clock_rewinds,
    clock_steps,
    costs,
    counter_amounts,
    durations,
    key_plans,
    limits,
    texts,
)

__all__ = ["HORIZON_MS", "BackendFactory", "ConformanceMachine"]

BackendFactory = Callable[[Clock], "Backend | Awaitable[Backend]"]
"""Makes a backend on the given clock, over storage that `Backend.clear` empties."""

HORIZON_MS = 2**50
"""The clock never moves past this, so every instant a driver computes (now plus a
window, a lease or a bucket's refill time) stays exact in a double."""

MAX_STEP_MS = 10**12

_T = TypeVar("_T")
_short = reprlib.Repr()  # keyword arguments only from Python 3.12
_short.maxstring, _short.maxother = 60, 80


@dataclass(frozen=True, slots=True)
class _Refusal:
    """A refused consume (or a peek saying it would be): waiting until `ready_at` must be exactly enough."""

    plan: KeyPlan
    cost: int
    ready_at: int


class ConformanceMachine(RuleBasedStateMachine):
    """Drives `backend_factories` (set by a subclass) and `reference_model` in lockstep."""

    backend_factories: ClassVar[tuple[BackendFactory, ...]] = ()
    reference_model: ClassVar[type[ReferenceModel]] = ReferenceModel
    """What every answer is compared with (a subclass may swap in a variant)."""

    keys = Bundle[KeyPlan]("keys")
    members = Bundle[str]("members")

    def __init__(self) -> None:
        super().__init__()
        self.clock = RewindableClock()
        self.model = self.reference_model(self.clock)
        self.backends: list[Backend] = []
        self._loop = asyncio.new_event_loop()
        self._plans: list[KeyPlan] = []
        self._refusals: dict[str, _Refusal] = {}
        """The latest refusal of each bucket key, while no consume has passed since."""
        self._rewind_floor = 0
        """The clock never steps back before this: the latest instant passed at which
        state expired by itself (drivers collect expired state lazily, so behind that
        instant one would still find it and another not)."""
        self._counter_answers: list[int] = []
        self._set_answers: list[tuple[KeyPlan, int]] = []
        self._bucket_answers: list[tuple[KeyPlan, BucketResult]] = []
        try:
            for factory in self.backend_factories:
                self.backends.append(self._await_backend(factory(self.clock)))
            for backend in self.backends:
                # A clean start even if an earlier run could not clean up after itself.
                self._await(backend.clear())
        except BaseException:
            self.teardown()
            raise

    def _await(self, awaitable: Awaitable[_T]) -> _T:
        return self._loop.run_until_complete(awaitable)

    def _await_backend(self, made: Backend | Awaitable[Backend]) -> Backend:
        if inspect.isawaitable(made):
            return self._await(made)
        return made

    def teardown(self) -> None:
        errors: list[Exception] = []
        for backend in self.backends:
            for cleanup in (backend.clear, backend.aclose):
                try:
                    self._await(cleanup())
                except Exception as exc:
                    errors.append(exc)
        self._await(self._loop.shutdown_asyncgens())
        self._loop.close()
        if errors:
            raise errors[0]

    # -- the one call every rule makes ----------------------------------------------

    def _agree(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        """Call `operation` on the model and on every backend; all answers must be equal."""
        expected = getattr(self.model, operation)(*args, **kwargs)
        answers = [self._await(getattr(backend, operation)(*args, **kwargs)) for backend in self.backends]
        if any(answer != expected for answer in answers):
            call = ", ".join([*map(_short.repr, args), *(f"{k}={_short.repr(v)}" for k, v in kwargs.items())])
            lines = [f"{operation}({call}) at t={self.clock()} ms: the answers differ", f"  reference: {expected!r}"]
            lines += [f"  {backend!r}: {answer!r}" for backend, answer in zip(self.backends, answers, strict=True)]
            raise AssertionError("\n".join(lines))
        return expected

    # -- set-up ---------------------------------------------------------------------

    @initialize(target=keys, plans=st.lists(key_plans(), min_size=1, max_size=4, unique_by=lambda p: p.text))
    def choose_keys(self, plans: list[KeyPlan]) -> MultipleResults[KeyPlan]:
        """The keys of this example, each with its own capacity and bucket."""
        self._plans = plans
        return multiple(*plans)

    @initialize(target=members, chosen=st.lists(texts(), min_size=1, max_size=5, unique=True))
    def choose_members(self, chosen: list[str]) -> MultipleResults[str]:
        """The set members of this example."""
        return multiple(*chosen)

    @initialize(start=st.sampled_from((0, 1, 10**12, 10**15)))
    def start_clock(self, start: int) -> None:
        """Start the clock at 0, 1 or far from 0 (``10**12`` or ``10**15`` ms)."""
        self._advance(start)

    # -- counters -------------------------------------------------------------------

    @rule(key=keys, amount=counter_amounts(), limit=limits(), window_ms=durations())
    def counter_incr(self, key: KeyPlan, amount: int, limit: int | None, window_ms: int | None) -> None:
        """`Backend.counter_incr`, with or without a limit and a window, on the model and every backend."""
        result: CounterResult = self._agree("counter_incr", key.text, amount, limit=limit, window_ms=window_ms)
        self._counter_answers.append(result.value)

    @rule(key=keys, amount=st.one_of(st.integers(1, 4), st.just(10**15)))
    def counter_decr(self, key: KeyPlan, amount: int) -> None:
        """`Backend.counter_decr`, also by more than the counter holds."""
        self._counter_answers.append(self._agree("counter_decr", key.text, amount))

    @rule(key=keys)
    def counter_get(self, key: KeyPlan) -> None:
        """`Backend.counter_get`."""
        self._counter_answers.append(self._agree("counter_get", key.text))

    # -- bounded sets with leases --------------------------------------------------------

    @rule(key=keys, member=members, lease_ms=durations())
    def set_add(self, key: KeyPlan, member: str, lease_ms: int | None) -> None:
        """`Backend.set_add` at the key's capacity, with or without a lease."""
        result: SetResult = self._agree("set_add", key.text, member, capacity=key.capacity, lease_ms=lease_ms)
        self._set_answers.append((key, result.size))

    @rule(key=keys, member=members, lease_ms=durations(), data=st.data())
    def set_add_below_capacity(self, key: KeyPlan, member: str, lease_ms: int | None, data: st.DataObject) -> None:
        """A lower capacity than the key's own: a member already there is accepted even so."""
        capacity = data.draw(st.integers(0, MAX_CAPACITY if key.capacity is None else key.capacity), label="capacity")
        result: SetResult = self._agree("set_add", key.text, member, capacity=capacity, lease_ms=lease_ms)
        self._set_answers.append((key, result.size))

    @rule(key=keys, member=members)
    def set_remove(self, key: KeyPlan, member: str) -> None:
        """`Backend.set_remove`, of a member present or not."""
        self._set_answers.append((key, self._agree("set_remove", key.text, member)))

    @rule(key=keys)
    def set_size(self, key: KeyPlan) -> None:
        """`Backend.set_size`."""
        self._set_answers.append((key, self._agree("set_size", key.text)))

    @rule(key=keys)
    def set_members(self, key: KeyPlan) -> None:
        """`Backend.set_members`."""
        self._set_answers.append((key, len(self._agree("set_members", key.text))))

    # -- token buckets ----------------------------------------------------------------

    def _peek(self, key: KeyPlan, cost: int) -> BucketResult:
        bucket = key.bucket
        result: BucketResult = self._agree("bucket_peek", key.text, rate=bucket.rate, burst=bucket.burst, cost=cost)
        self._bucket_answers.append((key, result))
        if not result.allowed:
            # A peek's wait is a promise about bucket_consume too.
            self._refusals[key.text] = _Refusal(key, cost, self.clock() + result.retry_after_ms)
        return result

    def _consume(self, key: KeyPlan, cost: int) -> BucketResult:
        bucket = key.bucket
        result: BucketResult = self._agree("bucket_consume", key.text, rate=bucket.rate, burst=bucket.burst, cost=cost)
        self._bucket_answers.append((key, result))
        if result.allowed:
            self._refusals.pop(key.text, None)
        else:
            self._refusals[key.text] = _Refusal(key, cost, self.clock() + result.retry_after_ms)
        return result

    @rule(key=keys, data=st.data())
    def bucket_consume(self, key: KeyPlan, data: st.DataObject) -> None:
        """`Backend.bucket_consume` of a cost from 1 to the burst."""
        self._consume(key, data.draw(costs(key.bucket.burst), label="cost"))

    @rule(key=keys, data=st.data())
    def bucket_peek(self, key: KeyPlan, data: st.DataObject) -> None:
        """`Backend.bucket_peek` of a cost from 1 to the burst."""
        self._peek(key, data.draw(costs(key.bucket.burst), label="cost"))

    @rule(key=keys, data=st.data())
    def peek_agrees_with_consume(self, key: KeyPlan, data: st.DataObject) -> None:
        """At one instant, `bucket_peek` answers what `bucket_consume` then does (a refusal exactly)."""
        cost = data.draw(costs(key.bucket.burst), label="cost")
        peeked = self._peek(key, cost)
        consumed = self._consume(key, cost)
        assert peeked.allowed == consumed.allowed, (peeked, consumed)
        if consumed.allowed:
            assert consumed.remaining == peeked.remaining - cost, (peeked, consumed)
            assert consumed.reset_after_ms >= peeked.reset_after_ms, (peeked, consumed)
        else:
            assert consumed == peeked, (peeked, consumed)

    @rule(key=keys)
    def bucket_reset(self, key: KeyPlan) -> None:
        """`Backend.bucket_reset`."""
        self._agree("bucket_reset", key.text)
        self._refusals.pop(key.text, None)

    def _pending_refusals(self) -> list[_Refusal]:
        now = self.clock()
        return [refusal for refusal in self._refusals.values() if now < refusal.ready_at <= HORIZON_MS]

    @precondition(lambda self: bool(self._pending_refusals()))
    @rule(pick=st.integers(0, 7))
    def wait_out_refusal(self, pick: int) -> None:
        """`retry_after_ms` is the exact wait on the clock it was given on: one millisecond
        less is still refused (and a peek then asks for exactly 1 ms more), that much passes."""
        pending = self._pending_refusals()
        self._wait_out(pending[pick % len(pending)])

    def _wait_out(self, refusal: _Refusal) -> None:
        self._advance(refusal.ready_at - 1 - self.clock())
        early = self._peek(refusal.plan, refusal.cost)
        assert not early.allowed and early.retry_after_ms == 1, f"1 ms before retry_after_ms ended: {early}"
        assert self._consume(refusal.plan, refusal.cost) == early
        self._advance(1)
        ready = self._consume(refusal.plan, refusal.cost)
        assert ready.allowed, f"still refused when retry_after_ms ended: {ready}"

    # -- time ---------------------------------------------------------------------------

    def _advance(self, ms: int) -> None:
        """Move the clock forward, raising the rewind floor past every expiry instant passed."""
        target = self.clock() + ms
        passed = [instant for instant in self.model.deadlines() if instant <= target]
        if passed:
            self._rewind_floor = max(self._rewind_floor, passed[-1])
        self.clock.advance(ms)

    @precondition(lambda self: self.clock() + MAX_STEP_MS <= HORIZON_MS)
    @rule(ms=clock_steps(MAX_STEP_MS))
    def advance_clock(self, ms: int) -> None:
        """Move the clock forward: zero steps, small ones and large jumps."""
        self._advance(ms)

    def _rewind(self, ms: int) -> None:
        # Waits reported before the step were promises on the clock as it was: forgotten.
        self.clock.rewind(min(ms, self.clock() - self._rewind_floor))
        self._refusals.clear()

    @precondition(lambda self: self.clock() > self._rewind_floor)
    @rule(ms=clock_rewinds())
    def rewind_clock(self, ms: int) -> None:
        """The clock steps backwards (an NTP step; a failover to a server whose clock is behind)."""
        self._rewind(ms)

    @precondition(lambda self: self.clock() > self._rewind_floor)
    @rule(key=keys, ms=clock_rewinds(), data=st.data())
    def refusal_after_step_back_is_honoured(self, key: KeyPlan, ms: int, data: st.DataObject) -> None:
        """The clock steps back behind a bucket's last update; a refusal's wait still holds exactly."""
        self._rewind(ms)
        refused = self._consume(key, data.draw(costs(key.bucket.burst), label="cost"))
        if not refused.allowed:  # a result, not a precondition: only a refusal has a wait to honour
            self._wait_out(self._refusals[key.text])

    def _deadlines(self) -> list[int]:
        return [instant for instant in self.model.deadlines() if instant <= HORIZON_MS]

    @precondition(lambda self: bool(self._deadlines()))
    @rule(pick=st.integers(0, 7), offset=st.sampled_from((-1, 0, 1)))
    def advance_to_deadline(self, pick: int, offset: int) -> None:
        """Land next to an instant where state changes by itself: expiry is where drivers differ."""
        deadlines = self._deadlines()
        self._advance(deadlines[pick % len(deadlines)] + offset - self.clock())

    # -- laws that hold whatever the sequence ----------------------------------------------

    @invariant()
    def counters_are_never_negative(self) -> None:
        """Every counter value answered since the last check, and every live one in the model."""
        answers, self._counter_answers = self._counter_answers, []
        assert all(value >= 0 for value in answers), answers
        # A counter brought to 0 is removed, so a live one is positive.
        assert all(value > 0 for value in self.model.counter_values())

    @invariant()
    def sets_stay_within_capacity(self) -> None:
        """A set never holds more than its key's capacity (lower ones only refuse new members)."""
        answers, self._set_answers = self._set_answers, []
        assert all(p.capacity is None or size <= p.capacity for p, size in answers), answers
        sizes = self.model.set_sizes()
        assert all(p.capacity is None or sizes.get(p.text, 0) <= p.capacity for p in self._plans), sizes

    @invariant()
    def buckets_stay_within_burst(self) -> None:
        """Remaining never exceeds the burst, and a wait is asked for exactly when refused."""
        answers, self._bucket_answers = self._bucket_answers, []
        for plan, result in answers:
            assert 0 <= result.remaining <= plan.bucket.burst, (plan, result)
            assert (result.retry_after_ms == 0) == result.allowed, (plan, result)
            assert result.reset_after_ms >= 0, (plan, result)
