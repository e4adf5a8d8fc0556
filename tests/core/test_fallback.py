"""FallbackBackend: the breaker, the three outage policies, mirroring and replay.

The primary here is a MemoryBackend behind a switch, so outages are exact and the
breaker runs on a ManualClock; tests/core/test_fallback_servers.py plays the same
against real server processes.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ratelimit_core import (
    BackendError,
    BackendUnavailable,
    FallbackBackend,
    InvalidArgument,
    ManualClock,
    MemoryBackend,
)

COOLDOWN = 1_000


class SwitchedBackend:
    """A MemoryBackend whose storage can be made unreachable, or hang, or fail oddly."""

    def __init__(self, clock: ManualClock) -> None:
        self.store = MemoryBackend(clock=clock)
        self.state = "up"  # "up" | "down" | "hung" | "broken"
        self.calls = 0

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.store, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.state == "down":
                raise BackendUnavailable("connection refused (test)")
            if self.state == "hung":
                await asyncio.Event().wait()
            if self.state == "broken":
                raise BackendError("WRONGTYPE (test)")
            return await method(*args, **kwargs)

        return call


@pytest.fixture
def primary(clock: ManualClock) -> SwitchedBackend:
    return SwitchedBackend(clock)


@pytest.fixture
def transitions() -> list[bool]:
    return []


@pytest.fixture
def make(primary: SwitchedBackend, clock: ManualClock, transitions: list[bool]) -> Callable[..., FallbackBackend]:
    def build(**options: Any) -> FallbackBackend:
        options.setdefault("cooldown_ms", COOLDOWN)
        options.setdefault("max_cooldown_ms", 4 * COOLDOWN)
        return FallbackBackend(
            primary,  # type: ignore[arg-type]
            MemoryBackend(clock=clock),
            clock=clock,
            on_transition=transitions.append,
            **options,
        )

    return build


async def test_calls_go_to_the_primary_while_it_answers(make: Callable[..., FallbackBackend], primary: Any) -> None:
    backend = make()
    result = await backend.set_add("room", "a", capacity=2)
    assert result.added and not result.degraded
    assert await primary.store.set_members("room") == {"a"}
    assert not backend.degraded


async def test_an_outage_is_answered_by_the_fallback_and_marked_degraded(
    make: Callable[..., FallbackBackend], primary: SwitchedBackend, transitions: list[bool]
) -> None:
    backend = make()
    primary.state = "down"
    result = await backend.bucket_consume("b", rate=1, burst=2)
    assert result.allowed and result.degraded and result.remaining == 1
    assert backend.degraded
    assert transitions == [False]


async def test_the_fallback_counts_what_this_process_held_before_the_outage(
    make: Callable[..., FallbackBackend], primary: SwitchedBackend
) -> None:
    backend = make()
    for member in ("s1", "s2"):
        assert (await backend.set_add("user:7", member, capacity=3, lease_ms=60_000)).added
    primary.state = "down"
    assert (await backend.set_add("user:7", "s3", capacity=3, lease_ms=60_000)).added
    refused = await backend.set_add("user:7", "s4", capacity=3, lease_ms=60_000)
    assert not refused.added and refused.degraded and refused.size == 3


async def test_processes_divides_limits_while_degraded(
    make: Callable[..., FallbackBackend], primary: SwitchedBackend
) -> None:
    backend = make(processes=2)
    primary.state = "down"
    admitted = [(await backend.set_add("room", f"m{i}", capacity=5)).added for i in range(5)]
    assert admitted == [True, True, True, False, False]  # ceil(5 / 2) == 3
    counts = [(await backend.counter_incr("c", limit=4)).allowed for _ in range(3)]
    assert counts == [True, True, False]
    bucket = [(await backend.bucket_consume("b", rate=10, burst=4)).allowed for _ in range(3)]
    assert bucket == [True, True, False]


async def test_the_primary_is_not_called_again_before_the_cooldown(
    make: Callable[..., FallbackBackend], primary: SwitchedBackend, clock: ManualClock
) -> None:
    backend = make()
    primary.state = "down"
    await backend.counter_incr("c")
    calls = primary.calls
    for _ in range(10):
        await backend.counter_incr("c")
        clock.advance(COOLDOWN // 20)
    assert primary.calls == calls


async def test_failed_probes_back_off_up_to_the_maximum(
    make: Callable[..., FallbackBackend], primary: SwitchedBackend, clock: ManualClock
) -> None:
    backend = make()
    primary.state = "down"
    await backend.counter_get("c")
    probe_times = []
    for _ in range(200):  # 200 steps of 100 ms: 20 s, bounded
        clock.advance(100)
        before = primary.calls
        await backend.counter_get("c")
        if primary.calls > before:
            probe_times.append(clock())
    gaps = [b - a for a, b in itertools.pairwise(probe_times)]
    assert gaps[:3] == [2 * COOLDOWN, 4 * COOLDOWN, 4 * COOLDOWN]


async def test_the_primary_is_used_again_after_a_successful_probe(
    make: Callable[..., FallbackBackend],
    primary: SwitchedBackend,
    clock: ManualClock,
    transitions: list[bool],
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = make()
    caplog.set_level(logging.INFO, logger="ratelimit_core.fallback")
    primary.state = "down"
    for _ in range(5):
        assert (await backend.counter_incr("c")).degraded
    primary.state = "up"
    clock.advance(COOLDOWN)
    result = await backend.counter_incr("c")
    assert not result.degraded and not backend.degraded
    assert transitions == [False, True]
    levels = [record.levelname for record in caplog.records]
    assert levels == ["WARNING", "INFO"], "each transition is logged once, not once per call"


async def test_replay_writes_outage_holdings_back_once_and_never_negative(
    make: Callable[..., FallbackBackend], primary: SwitchedBackend, clock: ManualClock
) -> None:
    backend = make()
    await backend.set_add("room", "held-before", lease_ms=60_000)
    await backend.counter_incr("conns", 1)
    primary.state = "down"
    await backend.set_add("room", "joined-during", lease_ms=60_000)
    await backend.set_add("room", "joined-and-left", lease_ms=60_000)
    await backend.set_remove("room", "joined-and-left")
    await backend.set_remove("room", "held-before")
    await backend.counter_decr("conns", 1)
    await backend.counter_decr("conns", 1)  # more releases than holdings: must floor at 0
    await backend.counter_incr("other", 3, window_ms=60_000)
    primary.state = "up"
    clock.advance(COOLDOWN)
    await backend.ping()
    assert not backend.degraded
    assert await primary.store.set_members("room") == {"joined-during"}
    assert await primary.store.counter_get("conns") == 0
    assert await primary.store.counter_get("other") == 3
    # A second recovery cycle must not replay the same changes again.
    primary.state = "down"
    await backend.counter_get("other")
    primary.state = "up"
    clock.advance(COOLDOWN)
    await backend.ping()
    assert await primary.store.counter_get("other") == 3
    assert await primary.store.set_size("room") == 1


async def test_recovery_gives_an_emptied_primary_back_everything_this_process_holds(
    make: Callable[..., FallbackBackend], primary: SwitchedBackend, clock: ManualClock
) -> None:
    backend = make()
    await backend.set_add("room", "before", lease_ms=60_000)
    await backend.set_add("room", "short", lease_ms=500)
    primary.state = "down"
    await primary.store.clear()  # the server restarts empty
    await backend.set_add("room", "during", lease_ms=60_000)
    primary.state = "up"
    clock.advance(COOLDOWN)  # "short" has expired meanwhile: it is not brought back
    await backend.ping()
    assert await primary.store.set_members("room") == {"before", "during"}


async def test_an_add_refused_while_degraded_is_taken_back_if_the_server_ran_it_late(
    make: Callable[..., FallbackBackend], primary: SwitchedBackend, clock: ManualClock
) -> None:
    backend = make()
    await backend.set_add("room", "holder", capacity=2, lease_ms=60_000)
    await backend.set_add("room", "other", capacity=2, lease_ms=60_000)
    primary.state = "down"
    # Sent to the primary, no answer; the fallback refuses it (this process holds 2 of 2).
    refused = await backend.set_add("room", "late", capacity=2, lease_ms=60_000)
    assert not refused.added and refused.degraded
    await primary.store.set_add("room", "late", lease_ms=60_000)  # a frozen server ran it on waking
    primary.state = "up"
    clock.advance(COOLDOWN)
    await backend.ping()
    assert await primary.store.set_members("room") == {"holder", "other"}


async def test_an_add_never_sent_to_the_primary_and_removed_during_the_outage_leaves_nothing(
    make: Callable[..., FallbackBackend], primary: SwitchedBackend, clock: ManualClock
) -> None:
    backend = make()
    primary.state = "down"
    await backend.counter_get("trip")  # opens the breaker: what follows is never sent to the primary
    for cycle in range(1_000):
        assert (await backend.set_add("room", f"m{cycle}", lease_ms=60_000)).added
        await backend.set_remove("room", f"m{cycle}")
    assert backend.journalled == 0, "churn during an outage must not grow the journal"
    assert backend.held == 0


async def test_changes_made_during_a_failed_replay_are_kept_for_the_next_one(
    make: Callable[..., FallbackBackend], primary: SwitchedBackend, clock: ManualClock
) -> None:
    backend = make()
    primary.state = "down"
    await backend.set_add("room", "a", lease_ms=60_000)
    clock.advance(COOLDOWN)
    await backend.set_add("room", "b", lease_ms=60_000)  # the probe fails, "a" stays journalled
    primary.state = "up"
    clock.advance(4 * COOLDOWN)
    await backend.ping()
    assert await primary.store.set_members("room") == {"a", "b"}


async def test_a_hung_primary_times_out_into_the_fallback(
    make: Callable[..., FallbackBackend], primary: SwitchedBackend
) -> None:
    backend = make(timeout_ms=20)
    primary.state = "hung"
    # wait_for only bounds a failure; the timeout under test is 20 ms.
    result = await asyncio.wait_for(backend.bucket_consume("b", rate=1, burst=1), 10)
    assert result.allowed and result.degraded


async def test_on_error_allow_fails_open_and_still_records_holdings(
    make: Callable[..., FallbackBackend], primary: SwitchedBackend, clock: ManualClock
) -> None:
    backend = make(on_error="allow")
    primary.state = "down"
    assert all([(await backend.set_add("room", f"m{i}", capacity=1)).added for i in range(3)])
    assert all([(await backend.bucket_consume("b", rate=1, burst=1)).allowed for _ in range(3)])
    assert (await backend.counter_incr("c", limit=0)).allowed
    primary.state = "up"
    clock.advance(COOLDOWN)
    await backend.ping()
    assert await primary.store.set_size("room") == 3


async def test_on_error_deny_fails_closed_with_a_retry_hint(
    make: Callable[..., FallbackBackend], primary: SwitchedBackend
) -> None:
    backend = make(on_error="deny")
    primary.state = "down"
    assert not (await backend.set_add("room", "m")).added
    assert not (await backend.counter_incr("c")).allowed
    refused = await backend.bucket_consume("b", rate=1, burst=1)
    assert not refused.allowed and refused.degraded
    assert 0 < refused.retry_after_ms <= COOLDOWN


@pytest.mark.parametrize("on_error", ["fallback", "allow", "deny"])
async def test_bad_arguments_raise_in_every_mode(
    make: Callable[..., FallbackBackend], primary: SwitchedBackend, on_error: str
) -> None:
    backend = make(on_error=on_error)
    primary.state = "down"
    with pytest.raises(InvalidArgument, match="burst"):
        await backend.bucket_consume("b", rate=1, burst=0)
    with pytest.raises(InvalidArgument, match="amount"):
        await backend.counter_incr("c", -1)
    with pytest.raises(InvalidArgument, match="capacity"):
        await backend.set_add("s", "m", capacity=-1)


async def test_other_backend_errors_are_not_mistaken_for_an_outage(
    make: Callable[..., FallbackBackend], primary: SwitchedBackend
) -> None:
    backend = make()
    primary.state = "broken"
    with pytest.raises(BackendError, match="WRONGTYPE"):
        await backend.counter_incr("c")
    assert not backend.degraded


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"on_error": "ignore"}, "on_error"),
        ({"processes": 0}, "processes"),
        ({"cooldown_ms": 0}, "cooldown_ms"),
        ({"cooldown_ms": 10, "max_cooldown_ms": 5}, "max_cooldown_ms"),
        ({"timeout_ms": -1}, "timeout_ms"),
    ],
)
def test_bad_options_are_refused_by_name(options: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        FallbackBackend(MemoryBackend(), **options)
