"""Calls that share a round trip go as bundles, several to one EVALSHA, and each keeps its own outcome.

Runs on every Redis storage (fakeredis, redis, valkey, a Redis Cluster). Commands are
counted by the backend's `Coalescer` (`commands_sent`) and, on a real server, by the
server's own command statistics.
"""

from __future__ import annotations

import asyncio

import pytest

from ratelimit_core import BackendError, BackendUnavailable, SetResult
from ratelimit_core.keys import BUCKET, COUNTER, storage_key
from ratelimit_core.redis.bundle import MAX_BUNDLE
from support.redis_storages import MakeBackend, Storage


async def _evalsha_calls(storage: Storage) -> int | None:
    """EVALSHAs the server ran, by its ``INFO commandstats`` (None where there is no such count)."""
    if storage.name in ("fakeredis", "cluster"):
        return None
    stats = await storage.client().info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_calls_issued_together_go_as_one_evalsha_per_bundle(make_backend: MakeBackend, storage: Storage) -> None:
    backend = make_backend()
    await backend.coalescer.load_scripts()
    calls = 2 * MAX_BUNDLE + 88
    # Keys with one hash tag share a cluster slot, so they are bundled on a cluster too.
    before = (backend.coalescer.round_trips, backend.coalescer.calls_sent, backend.coalescer.commands_sent)
    evalshas = await _evalsha_calls(storage)
    results = await asyncio.gather(*(backend.set_add("{room}members", f"m{n}", lease_ms=60_000) for n in range(calls)))
    assert [result.size for result in results] == list(range(1, calls + 1))
    after = (backend.coalescer.round_trips, backend.coalescer.calls_sent, backend.coalescer.commands_sent)
    # A cluster's round trip carries 512 calls at most (one command each, unless bundled): two
    # round trips of 300 calls there, each as a bundle of 256 and one of 44.
    expected = (2, calls, 4) if storage.name == "cluster" else (1, calls, 3)
    assert (after[0] - before[0], after[1] - before[1], after[2] - before[2]) == expected
    if evalshas is not None:
        assert await _evalsha_calls(storage) - evalshas == 3
    assert await backend.set_size("{room}members") == calls


async def test_on_a_cluster_only_calls_on_one_slot_share_a_bundle(make_backend: MakeBackend, storage: Storage) -> None:
    backend = make_backend()
    await backend.coalescer.load_scripts()
    sent = backend.coalescer.commands_sent
    # Ten keys on (almost surely) ten slots, each asked three times.
    results = await asyncio.gather(*(backend.counter_incr(f"k{n % 10}", 1) for n in range(30)))
    assert sorted(result.value for result in results) == [1] * 10 + [2] * 10 + [3] * 10
    commands = backend.coalescer.commands_sent - sent
    assert commands == (10 if storage.name == "cluster" else 1)


async def test_a_script_that_fails_in_a_bundle_fails_only_its_own_call_as_it_would_alone(
    make_backend: MakeBackend, storage: Storage, prefix: str
) -> None:
    backend = make_backend()
    client = storage.client()
    # A bucket whose level is not a number: its script fails in Lua itself, not in a Redis command.
    await client.hset(storage_key(prefix, BUCKET, "{t}broken"), mapping={"l": "x", "u": "1", "f": str(2**50)})
    # A counter key holding a string: its script's first command fails (WRONGTYPE).
    await client.set(storage_key(prefix, COUNTER, "{t}wrong"), "a string")

    alone: list[BaseException] = []
    for call in (
        backend.bucket_consume("{t}broken", rate=1, burst=5),
        backend.counter_incr("{t}wrong"),
    ):
        with pytest.raises(BackendError) as caught:
            await call
        alone.append(caught.value)

    sent = backend.coalescer.commands_sent
    async with backend.batch() as batch:
        before = batch.set_add("{t}set", "a")
        broken = batch.bucket_consume("{t}broken", rate=1, burst=5)
        wrong = batch.counter_incr("{t}wrong")
        after = batch.set_add("{t}set", "b")
    assert backend.coalescer.commands_sent - sent == 1  # one bundle: the keys share a slot
    assert before.result() == SetResult(True, 1)
    assert after.result() == SetResult(True, 2)
    for call, error in zip((broken, wrong), alone, strict=True):
        assert call.error is not None
        assert type(call.error) is type(error) is BackendError  # a script error, not an outage
        assert not isinstance(call.error, BackendUnavailable)
    assert "WRONGTYPE" in str(wrong.error)
    assert "WRONGTYPE" in str(alone[1])
