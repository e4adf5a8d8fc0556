"""FallbackBackend under faults: a busy event loop, a slow first call, races with the write-back, cancellation.

The primary is a MemoryBackend behind `ControlledBackend`, which can be made to
refuse, hang or answer slowly, so every interleaving here is exact.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ratelimit_core import BackendMisconfigured, BackendUnavailable, FallbackBackend, ManualClock, MemoryBackend

COOLDOWN = 1_000
LEASE = 60_000
_POLLS = 2_000
"""Bound on polling loops (each a short sleep); none is a speed assertion."""


class ControlledBackend:
    """A MemoryBackend that refuses (``down``), freezes (``hung``: calls run when it thaws), or answers slowly."""

    def __init__(self, clock: ManualClock) -> None:
        self.store = MemoryBackend(clock=clock)
        self._thawed = asyncio.Event()
        """Set while not ``hung``: a hung call wakes only when the server thaws (or its task is cancelled), never
        on a timer of its own, so that a test sees each cancellation before the call's task runs again."""
        self.state = "up"
        self.delay_s = 0.0
        self.first_delay_s = 0.0
        self.calls = 0
        self.fail_after: int | None = None
        """Go ``down`` after this many more calls (a second outage in the middle of a write-back)."""
        self.reset_next = False

    async def restart(self) -> None:
        """The server restarts empty: the next call loses its connection, as a call in flight would."""
        await self.store.clear()
        self.reset_next = True

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        self._state = value
        if value == "hung":
            self._thawed.clear()
        else:
            self._thawed.set()

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.store, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.fail_after is not None:
                self.fail_after -= 1
                if self.fail_after < 0:
                    self.state, self.fail_after = "down", None
            if self.state == "down" or self.reset_next:
                self.reset_next = False
                raise BackendUnavailable("connection refused (test)")
            if self.state == "misconfigured":
                raise BackendMisconfigured("wrong password for 127.0.0.1:1 (test)")
            while self.state == "hung":  # a frozen server runs the call when it wakes
                await self._thawed.wait()
            delay, self.first_delay_s = self.first_delay_s or self.delay_s, 0.0
            if delay:
                await asyncio.sleep(delay)
            return await method(*args, **kwargs)

        return call


@pytest.fixture
def primary(clock: ManualClock) -> ControlledBackend:
    return ControlledBackend(clock)


@pytest.fixture
def make(primary: ControlledBackend, clock: ManualClock) -> Callable[..., FallbackBackend]:
    def build(**options: Any) -> FallbackBackend:
        options.setdefault("cooldown_ms", COOLDOWN)
        options.setdefault("max_cooldown_ms", 4 * COOLDOWN)
        return FallbackBackend(primary, MemoryBackend(clock=clock), clock=clock, **options)  # type: ignore[arg-type]

    return build


async def recovered(backend: FallbackBackend, clock: ManualClock) -> None:
    """Let a probe be due and drive calls until the primary is in use again (bounded).

    A probe may fail once more (a connection lost in a restart): then the next one is made due.
    """
    for _ in range(5):
        clock.advance(4 * COOLDOWN)
        for _ in range(_POLLS // 5):
            await backend.ping()
            if not backend.degraded:
                return
            await asyncio.sleep(0.001)
    pytest.fail("the primary was not used again")


async def members(primary: ControlledBackend, key: str) -> frozenset[str]:
    return await primary.store.set_members(key)


# -- what is not an outage ------------------------------------------------------------


async def test_a_stalled_event_loop_is_not_taken_for_an_outage(
    make: Callable[..., FallbackBackend], primary: ControlledBackend
) -> None:
    backend = make(timeout_ms=50)
    primary.delay_s = 0.01
    await backend.ping()  # warm
    for attempt in range(5):
        call = asyncio.ensure_future(backend.set_add("user:1", f"s{attempt}", capacity=1, lease_ms=LEASE))
        await asyncio.sleep(0)  # the call is in flight
        time.sleep(0.2)  # noqa: ASYNC251 (the loop stalls for four timeouts; the primary answered in 10 ms)
        result = await call
        assert not result.degraded and not backend.degraded
        assert result.added == (attempt == 0)


async def test_on_a_busy_loop_concurrent_admissions_stop_exactly_at_the_capacity(
    make: Callable[..., FallbackBackend], primary: ControlledBackend
) -> None:
    backend = make(timeout_ms=50)
    primary.delay_s = 0.005
    await backend.ping()
    stop = asyncio.Event()

    async def busy() -> None:
        while not stop.is_set():
            time.sleep(0.03)  # noqa: ASYNC251 (other work holding the loop, over and over)
            await asyncio.sleep(0)

    load = asyncio.ensure_future(busy())
    try:
        results = await asyncio.gather(
            *(backend.set_add("user:1", f"s{i}", capacity=10, lease_ms=LEASE) for i in range(300))
        )
    finally:
        stop.set()
        await load
    assert sum(result.added for result in results) == 10
    assert not any(result.degraded for result in results)
    assert not backend.degraded


async def test_a_slow_first_call_is_given_the_warmup_allowance(
    make: Callable[..., FallbackBackend], primary: ControlledBackend
) -> None:
    backend = make(timeout_ms=50, warmup_ms=2_000)
    primary.first_delay_s = 0.4  # connection set-up, cluster discovery, script loading
    result = await backend.set_add("room", "a", lease_ms=LEASE)
    assert result.added and not result.degraded and not backend.degraded


async def test_a_silent_primary_is_still_detected(
    make: Callable[..., FallbackBackend], primary: ControlledBackend
) -> None:
    backend = make(timeout_ms=50)
    await backend.ping()
    primary.state = "hung"
    # wait_for only bounds a failure of the watchdog; the allowance under test is 50 ms.
    result = await asyncio.wait_for(backend.set_add("room", "a", capacity=1, lease_ms=LEASE), 10)
    assert result.added and result.degraded and backend.degraded


async def test_a_primary_silent_from_the_start_is_detected_after_the_warmup(
    make: Callable[..., FallbackBackend], primary: ControlledBackend
) -> None:
    backend = make(timeout_ms=50, warmup_ms=200)
    primary.state = "hung"
    result = await asyncio.wait_for(backend.bucket_consume("b", rate=1, burst=1), 10)
    assert result.allowed and result.degraded


async def test_the_outage_warning_says_why(
    make: Callable[..., FallbackBackend], primary: ControlledBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ratelimit_core.fallback")
    backend = make(timeout_ms=50)
    await backend.ping()
    primary.state = "hung"
    await asyncio.wait_for(backend.counter_get("c"), 10)
    (record,) = [record for record in caplog.records if record.levelname == "WARNING"]
    assert "no answer within 50 ms" in record.getMessage()


async def test_silence_is_counted_from_the_call_that_waits_not_from_an_earlier_tick(
    make: Callable[..., FallbackBackend], primary: ControlledBackend
) -> None:
    """A call made while the watchdog's tick from an earlier call is still due must get its whole
    allowance (the tick is reused, not the time before the call)."""
    backend = make(timeout_ms=200)
    for _ in range(3):
        await backend.ping()  # answered; the watchdog's tick stays due for up to 50 ms
    await asyncio.sleep(0.02)
    primary.state = "hung"
    started = time.monotonic()
    result = await asyncio.wait_for(backend.set_add("room", "a", capacity=1, lease_ms=LEASE), 10)
    assert result.degraded
    assert time.monotonic() - started >= 0.2 * 0.99


async def test_an_idle_watchdog_stops_ticking() -> None:
    from ratelimit_core.fallback.watchdog import Watchdog

    watchdog = Watchdog(timeout_ms=20, warmup_ms=20)
    watchdog.done(watchdog.watch(), answered=True)
    loop = asyncio.get_running_loop()
    for _ in range(_POLLS):
        if not any(getattr(handle, "_callback", None) == watchdog._tick for handle in loop._scheduled):  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.001)
    else:
        pytest.fail("the watchdog still ticks with no call waiting")


async def test_a_call_the_watchdog_ended_leaves_no_cancellation_pending_in_the_caller(
    make: Callable[..., FallbackBackend], primary: ControlledBackend
) -> None:
    backend = make(timeout_ms=50)
    await backend.ping()
    primary.state = "hung"
    async with asyncio.timeout(10):  # bounds a failure of the watchdog; nested deadlines must not mix
        result = await backend.set_add("room", "a", capacity=1, lease_ms=LEASE)
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        await asyncio.sleep(0)  # a cancellation left pending would be raised here
    assert result.added and result.degraded and backend.degraded


async def test_a_caller_cancelled_while_its_call_hangs_is_cancelled_and_no_outage_is_declared(
    make: Callable[..., FallbackBackend], primary: ControlledBackend
) -> None:
    backend = make(timeout_ms=10_000)
    await backend.ping()
    primary.state = "hung"
    call = asyncio.create_task(backend.set_add("room", "a", capacity=1, lease_ms=LEASE))
    await asyncio.sleep(0.05)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert not backend.degraded


async def test_a_caller_cancelled_as_the_watchdog_gives_up_is_cancelled_not_answered_locally(
    make: Callable[..., FallbackBackend], primary: ControlledBackend
) -> None:
    """The watchdog cancels the waiting call's task; a cancellation from elsewhere in the same turn
    must still reach the caller (as with nested ``asyncio.timeout``s), never turn into a local answer."""
    backend = make(timeout_ms=50)
    await backend.ping()
    primary.state = "hung"
    call = asyncio.create_task(backend.set_add("room", "a", capacity=1, lease_ms=LEASE))
    for _ in range(1_000_000):  # bounded; the watchdog gives up after about 50 ms
        if call.cancelling() or call.done():
            break
        await asyncio.sleep(0)
    assert not call.done(), "the watchdog's cancellation is seen before the call's task runs again"
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call


async def test_a_misconfigured_primary_is_reported_not_mistaken_for_an_outage(
    make: Callable[..., FallbackBackend], primary: ControlledBackend
) -> None:
    backend = make()
    primary.state = "misconfigured"
    with pytest.raises(BackendMisconfigured, match="wrong password"):
        await backend.set_add("room", "a", capacity=1)
    assert not backend.degraded


# -- the write-back -----------------------------------------------------------------------


async def test_changes_made_while_the_write_back_runs_reach_the_primary(
    make: Callable[..., FallbackBackend], primary: ControlledBackend, clock: ManualClock
) -> None:
    backend = make(timeout_ms=None)
    held = {f"m{i}" for i in range(200)}
    for member in sorted(held):
        await backend.set_add("room", member, lease_ms=LEASE)
    primary.state = "down"
    await backend.counter_get("trip")
    await primary.store.clear()  # the server restarts empty
    primary.state, primary.delay_s = "up", 0.2  # a write-back that takes a while
    clock.advance(4 * COOLDOWN)
    probe = asyncio.ensure_future(backend.ping())
    await asyncio.sleep(0.01)
    assert backend.degraded, "the write-back is still running"
    for member in sorted(held)[:50]:  # connections that end meanwhile
        await backend.set_remove("room", member)
        held.discard(member)
    for i in range(20):  # and connections that start meanwhile
        assert (await backend.set_add("room", f"new{i}", capacity=10_000, lease_ms=LEASE)).added
        held.add(f"new{i}")
    await probe
    primary.delay_s = 0.0
    await recovered(backend, clock)
    assert await members(primary, "room") == held
    assert backend.journalled == 0


async def test_cancelling_the_call_that_started_the_recovery_loses_nothing(
    make: Callable[..., FallbackBackend], primary: ControlledBackend, clock: ManualClock
) -> None:
    backend = make(timeout_ms=None)
    await backend.set_add("room", "before", lease_ms=LEASE)
    await backend.set_add("room", "leaving", lease_ms=LEASE)
    primary.state = "down"
    await backend.set_add("room", "during", lease_ms=LEASE)
    await backend.set_remove("room", "leaving")
    await backend.counter_incr("c", 3)
    primary.state, primary.delay_s = "up", 0.001
    clock.advance(4 * COOLDOWN)
    caller = asyncio.ensure_future(backend.ping())
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await recovered(backend, clock)
    assert await members(primary, "room") == {"before", "during"}
    assert await primary.store.counter_get("c") == 3


async def test_a_write_back_cut_short_by_a_second_outage_is_finished_by_the_next_recovery(
    make: Callable[..., FallbackBackend], primary: ControlledBackend, clock: ManualClock
) -> None:
    backend = make(timeout_ms=None)
    for i in range(100):
        await backend.set_add("room", f"m{i}", lease_ms=LEASE)
    primary.state = "down"
    for i in range(50):
        await backend.set_remove("room", f"m{i}")
    await backend.set_add("room", "during", lease_ms=LEASE)
    primary.state, primary.fail_after = "up", 30  # down again in the middle of the write-back
    clock.advance(4 * COOLDOWN)
    await backend.ping()
    assert backend.degraded
    primary.state = "up"
    await recovered(backend, clock)
    assert await members(primary, "room") == {f"m{i}" for i in range(50, 100)} | {"during"}


async def test_closing_the_backend_during_a_write_back_keeps_the_rest_journalled(
    make: Callable[..., FallbackBackend], primary: ControlledBackend, clock: ManualClock
) -> None:
    backend = make(timeout_ms=None)
    primary.state = "down"
    for i in range(20):
        await backend.set_add("room", f"m{i}", lease_ms=LEASE)
    primary.state, primary.delay_s = "up", 0.01
    clock.advance(4 * COOLDOWN)
    probe = asyncio.ensure_future(backend.ping())
    await asyncio.sleep(0.001)
    await backend.aclose()
    await probe
    assert backend.degraded and backend.journalled == 20


# -- memory ------------------------------------------------------------------------------


async def test_held_members_are_bounded_by_the_live_ones_while_healthy(
    make: Callable[..., FallbackBackend], clock: ManualClock
) -> None:
    backend = make()
    for i in range(1_000):
        await backend.set_add("room", f"m{i}", lease_ms=500)  # connections that died without a release
    clock.advance(1_000)
    await backend.set_add("room", "live", lease_ms=500)
    assert backend.held == 1


async def test_outage_memory_is_bounded_by_the_slots_not_by_churn(
    make: Callable[..., FallbackBackend], primary: ControlledBackend
) -> None:
    backend = make()
    for i in range(10):
        await backend.set_add("room", f"held{i}", lease_ms=LEASE)
    primary.state = "down"
    await backend.counter_get("trip")
    for cycle in range(5_000):
        await backend.set_add("room", f"c{cycle}", lease_ms=LEASE)
        await backend.set_remove("room", f"c{cycle}")
    await backend.set_remove("room", "held0")
    assert backend.journalled == 1  # the removal of a member the primary holds
    assert backend.held == 9


# -- any interleaving ------------------------------------------------------------------------


class Interleaving:
    """One seeded run of connections coming and going while the primary misbehaves.

    Holds what the run owns: the connections' tasks, the members they hold, and what a task
    raised. A connection cancelled mid-call cleans up as the policies do.
    """

    def __init__(self, backend: FallbackBackend, primary: ControlledBackend, clock: ManualClock, seed: int) -> None:
        self.backend = backend
        self.primary = primary
        self.clock = clock
        self.rng = random.Random(seed)
        self.live: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.errors: list[BaseException] = []

    async def step(self, number: int) -> None:
        """One random action, then a short random pause (often `sleep(0)`: one turn of the event loop)."""
        act = self._pick(self.rng.random())
        await act(number)
        await asyncio.sleep(self.rng.choice([0, 0, 0.001, 0.005]))

    async def all_ended(self) -> None:
        """Wait, boundedly, until every task ended."""
        for _ in range(_POLLS):
            if not self.tasks:
                break
            await asyncio.sleep(0.005)

    def _pick(self, draw: float) -> Callable[[int], Awaitable[None]]:
        """The first action whose band reaches past `draw` and that can be taken now (else it falls through)."""
        bands = (
            (0.35, True, self._connect_new),
            (0.6, bool(self.live), self._disconnect_one),
            (0.7, bool(self.tasks), self._cancel_one),
            (0.8, True, self._change_primary),
            (0.83, True, self._restart_primary),
            (1.0, True, self._advance_clock),
        )
        return next(act for bound, possible, act in bands if draw < bound and possible)

    # -- actions -----------------------------------------------------------------------------

    async def _connect_new(self, number: int) -> None:
        self._spawn(self._connect(f"m{number}"))

    async def _disconnect_one(self, _number: int) -> None:
        self._spawn(self._disconnect(self.rng.choice(sorted(self.live))))

    async def _cancel_one(self, _number: int) -> None:
        self.rng.choice(list(self.tasks)).cancel()

    async def _change_primary(self, _number: int) -> None:
        self.primary.state = self.rng.choice(["up", "up", "down", "hung"])
        self.primary.delay_s = self.rng.choice([0.0, 0.001, 0.005])

    async def _restart_primary(self, _number: int) -> None:
        await self.primary.restart()

    async def _advance_clock(self, _number: int) -> None:
        self.clock.advance(self.rng.randrange(0, 2 * COOLDOWN))

    # -- connections -------------------------------------------------------------------------

    async def _connect(self, member: str) -> None:
        try:  # the lease outlives the test
            result = await self.backend.set_add("room", member, capacity=1_000, lease_ms=10 * LEASE)
        except asyncio.CancelledError:
            await asyncio.shield(self.backend.set_remove("room", member))  # the in-flight add counts as taken
            raise
        if result.added:
            self.live.add(member)

    async def _disconnect(self, member: str) -> None:
        self.live.discard(member)
        await asyncio.shield(self.backend.set_remove("room", member))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, done: asyncio.Task[None]) -> None:
        self.tasks.discard(done)
        if not done.cancelled() and done.exception() is not None:
            self.errors.append(done.exception())  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(12))
async def test_any_interleaving_of_outages_cancellations_and_releases_ends_exact(
    make: Callable[..., FallbackBackend], primary: ControlledBackend, clock: ManualClock, seed: int
) -> None:
    """Connections come and go (some cancelled mid-call, cleaning up as the policies do) while the
    primary refuses, hangs, answers slowly, restarts empty and recovers; only documented results and
    exceptions are seen, and after the last recovery the primary holds exactly the live members."""
    run = Interleaving(make(timeout_ms=20, warmup_ms=40), primary, clock, seed)
    for step in range(300):
        await run.step(step)
    primary.state, primary.delay_s = "up", 0.0
    await run.all_ended()
    assert not run.tasks, "every call ended (the watchdog bounds the hung ones)"
    assert run.errors == []
    await recovered(run.backend, clock)
    held = await members(primary, "room")
    assert held == run.live, f"seed {seed}: missing on the primary {run.live - held}, extra {held - run.live}"
