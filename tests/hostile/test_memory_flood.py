"""A flood of distinct keys cannot grow MemoryBackend without bound, nor reset a live limit."""

from __future__ import annotations

import pytest

from ratelimit_core import BackendFull, ManualClock, MemoryBackend

FLOOD = 1_000_000
MAX_KEYS = 10_000


@pytest.mark.memory
async def test_a_million_short_lived_keys_are_reclaimed_as_they_go() -> None:
    clock = ManualClock()
    backend = MemoryBackend(clock=clock, max_keys=MAX_KEYS)
    peak = 0
    for number in range(FLOOD):
        # Each key is live for 5 s (5,000 at a time): more than the amortised sweep keeps up
        # with, so the count reaches max_keys and the sweep there must make room.
        await backend.bucket_consume(f"attacker:{number}", rate=0.2, burst=1)
        clock.advance(1)
        peak = max(peak, backend.key_count())
    assert peak == MAX_KEYS
    clock.advance(5_000)
    backend.sweep()
    assert backend.key_count() == 0


@pytest.mark.memory
async def test_when_every_key_is_live_new_keys_are_refused_and_live_limits_are_kept() -> None:
    clock = ManualClock()
    backend = MemoryBackend(clock=clock, max_keys=MAX_KEYS)
    assert (await backend.bucket_consume("victim", rate=0.001, burst=1)).allowed
    await backend.set_add("room", "member", capacity=1, lease_ms=60_000)
    for number in range(MAX_KEYS - 2):
        await backend.counter_incr(f"attacker:{number}", window_ms=60_000)
    with pytest.raises(BackendFull, match="max_keys=10000"):
        await backend.counter_incr("attacker:one-more", window_ms=60_000)
    with pytest.raises(BackendFull):
        await backend.set_add("new-room", "member")
    # Nothing live was evicted to make room: the victim's limit and the room still hold.
    assert not (await backend.bucket_consume("victim", rate=0.001, burst=1)).allowed
    assert not (await backend.set_add("room", "intruder", capacity=1, lease_ms=60_000)).added
    assert (await backend.counter_incr("attacker:0")).value == 2
    clock.advance(60_000)  # once the flood's windows end, new keys fit again
    assert (await backend.counter_incr("newcomer")).allowed
