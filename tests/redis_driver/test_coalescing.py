"""Concurrent calls share pipelined round trips, and every caller still gets exactly its own answer.

Runs on every Redis storage (fakeredis, redis, valkey, a Redis Cluster): see the
`storage` fixture. Round trips are counted by the backend's `Coalescer`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from ratelimit_core import (
    BackendError,
    BackendUnavailable,
    CounterResult,
    InvalidArgument,
    ManualClock,
    RedisBackend,
    SetResult,
)
from ratelimit_core.keys import COUNTER, storage_key
from ratelimit_core.redis.coalesce import ScriptCall
from ratelimit_core.redis.lua import script_source
from support.backends import backends
from support.lossy_proxy import LossyProxy
from support.redis_storages import MakeBackend, Storage
from support.servers import ServerProcess

Operation = Callable[[Any], Any]
"""One primitive call on a `RedisBackend` (an awaitable) or on a `RedisBatch` (a `ScriptCall`)."""

# Bounds a hang so it fails the test instead of stalling the suite; not a speed check.
_HANG_S = 10.0


def _operations(key: str) -> list[Operation]:
    """Every primitive, with limits, capacities and a bucket that runs dry along the way."""
    return [
        lambda b: b.counter_incr(key, 3, limit=5, window_ms=1_000),
        lambda b: b.counter_incr(key, 3, limit=5),
        lambda b: b.counter_decr(key),
        lambda b: b.counter_get(key),
        lambda b: b.set_add(key, "m1", capacity=2, lease_ms=500),
        lambda b: b.set_add(key, "m2", capacity=2),
        lambda b: b.set_add(key, "m3", capacity=2),
        lambda b: b.set_remove(key, "m1"),
        lambda b: b.set_size(key),
        lambda b: b.set_members(key),
        lambda b: b.bucket_consume(key, rate=0.3, burst=2, cost=2),
        lambda b: b.bucket_consume(key, rate=0.3, burst=2),
        lambda b: b.bucket_peek(key, rate=0.3, burst=2),
        lambda b: b.bucket_reset(key),
        lambda b: b.bucket_consume(key, rate=0.3, burst=2),
    ]


KEYS = [f"key-{n}" for n in range(20)]

in_flight_storages = pytest.mark.parametrize("backend_name", backends("redis", "valkey", "cluster"))
"""For tests of what happens while a round trip is in flight: fakeredis answers without ever
yielding to the event loop, so none of its round trips is ever in flight and none is shared."""


async def _sequential(backend: RedisBackend) -> dict[str, list[object]]:
    return {key: [await operation(backend) for operation in _operations(key)] for key in KEYS}


async def _warm_up(backend: RedisBackend) -> None:
    """Load every script once, so that no NOSCRIPT resend changes the round-trip counts."""
    await backend.coalescer.load_scripts()


@in_flight_storages
async def test_concurrent_callers_get_the_results_of_sequential_calls_in_fewer_round_trips(
    make_backend: MakeBackend, prefix: str
) -> None:
    clock = ManualClock(1_000_000)
    expected = await _sequential(make_backend(clock, prefix="seq:" + prefix))
    backend = make_backend(clock)
    await _warm_up(backend)
    trips_before = backend.coalescer.round_trips

    async def caller(key: str) -> list[object]:
        return [await operation(backend) for operation in _operations(key)]

    results = await asyncio.gather(*(caller(key) for key in KEYS))
    assert dict(zip(KEYS, results, strict=True)) == expected
    calls = len(KEYS) * len(_operations("k"))
    assert backend.coalescer.round_trips - trips_before <= calls // 4


async def test_one_batch_gives_the_results_of_sequential_calls_in_one_round_trip(
    make_backend: MakeBackend, prefix: str
) -> None:
    clock = ManualClock(1_000_000)
    expected = await _sequential(make_backend(clock, prefix="seq:" + prefix))
    backend = make_backend(clock)
    await _warm_up(backend)
    trips_before = backend.coalescer.round_trips
    async with backend.batch() as batch:
        calls = {key: [operation(batch) for operation in _operations(key)] for key in KEYS}
    assert backend.coalescer.round_trips - trips_before == 1
    assert {key: [call.result() for call in key_calls] for key, key_calls in calls.items()} == expected


async def test_a_lone_call_goes_on_its_own(make_backend: MakeBackend) -> None:
    backend = make_backend()
    await _warm_up(backend)
    trips, sent = backend.coalescer.round_trips, backend.coalescer.calls_sent
    assert (await backend.counter_incr("k")).value == 1
    assert (backend.coalescer.round_trips - trips, backend.coalescer.calls_sent - sent) == (1, 1)


@in_flight_storages
async def test_calls_issued_together_go_in_one_round_trip(make_backend: MakeBackend) -> None:
    backend = make_backend()
    await _warm_up(backend)
    trips, sent = backend.coalescer.round_trips, backend.coalescer.calls_sent
    results = await asyncio.gather(*(backend.counter_incr(f"k{n}", n + 1) for n in range(10)))
    assert [result.value for result in results] == list(range(1, 11))
    # Each call from its own task, all made in one turn of the loop: one pipeline.
    assert (backend.coalescer.round_trips - trips, backend.coalescer.calls_sent - sent) == (1, 10)


@in_flight_storages
async def test_calls_made_during_a_round_trip_all_go_in_the_next_one(make_backend: MakeBackend) -> None:
    backend = make_backend()
    await _warm_up(backend)
    trips, sent = backend.coalescer.round_trips, backend.coalescer.calls_sent
    first = asyncio.ensure_future(backend.counter_incr("k0", 1))
    for _ in range(100):  # until the first call's round trip is on its way
        if backend.coalescer.round_trips > trips:
            break
        await asyncio.sleep(0)
    assert backend.coalescer.round_trips == trips + 1
    results = await asyncio.gather(first, *(backend.counter_incr(f"k{n}", n + 1) for n in range(1, 10)))
    assert [result.value for result in results] == list(range(1, 11))
    # The first call went alone; the 9 made while it was in flight waited for it, then went together.
    assert (backend.coalescer.round_trips - trips, backend.coalescer.calls_sent - sent) == (2, 10)


@in_flight_storages
async def test_a_long_queue_goes_as_two_round_trips_at_once(make_backend: MakeBackend) -> None:
    backend = make_backend()
    await _warm_up(backend)
    trips, sent = backend.coalescer.round_trips, backend.coalescer.calls_sent
    first = asyncio.ensure_future(backend.counter_incr("k0", 1))
    for _ in range(100):  # until the first call's round trip is on its way
        if backend.coalescer.round_trips > trips:
            break
        await asyncio.sleep(0)
    results = await asyncio.gather(first, *(backend.counter_incr(f"k{n}", n + 1) for n in range(1, 41)))
    assert [result.value for result in results] == list(range(1, 42))
    # The first alone; the 40 made meanwhile in two halves, sent together when it ended.
    assert (backend.coalescer.round_trips - trips, backend.coalescer.calls_sent - sent) == (3, 41)


@in_flight_storages
async def test_a_queue_issued_from_idle_goes_unsplit(make_backend: MakeBackend) -> None:
    backend = make_backend()
    await _warm_up(backend)
    trips, sent = backend.coalescer.round_trips, backend.coalescer.calls_sent
    results = await asyncio.gather(*(backend.counter_incr(f"k{n}", n + 1) for n in range(41)))
    assert [result.value for result in results] == list(range(1, 42))
    assert (backend.coalescer.round_trips - trips, backend.coalescer.calls_sent - sent) == (1, 41)


@in_flight_storages
async def test_a_queue_longer_than_a_round_trip_takes_goes_as_several_at_once(
    make_backend: MakeBackend, backend_name: str
) -> None:
    backend = make_backend()
    await _warm_up(backend)
    trips, sent = backend.coalescer.round_trips, backend.coalescer.calls_sent
    bundled = backend_name != "cluster"
    calls = 4_100 if bundled else 1_100
    results = await asyncio.gather(*(backend.counter_incr(f"k{n}") for n in range(calls)))
    assert all(result.value == 1 for result in results)
    # Sent together: ceil(4100 / 4096) = 2 round trips of bundles, or on a cluster (one EVALSHA
    # per call) ceil(1100 / 512) = 3.
    trips_made = backend.coalescer.round_trips - trips
    assert (trips_made, backend.coalescer.calls_sent - sent) == ((2 if bundled else 3), calls)


async def test_a_storage_error_fails_only_the_call_that_caused_it(
    make_backend: MakeBackend, storage: Storage, prefix: str
) -> None:
    backend = make_backend()
    await storage.client().set(storage_key(prefix, COUNTER, "not-a-counter"), "a string")
    async with backend.batch() as batch:
        before = batch.counter_incr("fine")
        broken = batch.counter_incr("not-a-counter")
        after = batch.bucket_consume("fine", rate=1, burst=3)
    assert before.result() == CounterResult(True, 1, None)
    with pytest.raises(BackendError, match="WRONGTYPE") as caught:
        broken.result()
    assert not isinstance(caught.value, BackendUnavailable)
    assert after.result().remaining == 2

    outcomes = await asyncio.gather(
        backend.counter_incr("fine"), backend.counter_incr("not-a-counter"), backend.counter_get("fine"),
        return_exceptions=True,
    )  # fmt: skip
    assert outcomes[0] == CounterResult(True, 2, None)
    assert isinstance(outcomes[1], BackendError)
    assert not isinstance(outcomes[1], BackendUnavailable)
    assert outcomes[2] == 2


@pytest.mark.parametrize("tag", ["", "{same-slot}"])
async def test_noscript_reloads_the_scripts_and_resends_only_the_calls_that_got_it(
    make_backend: MakeBackend, storage: Storage, tag: str
) -> None:
    backend = make_backend()
    await _warm_up(backend)
    client = storage.client()
    await client.script_flush()
    # Only the bucket script survives. Calls sent one EVALSHA each (on a cluster, keys on different
    # slots) find it or not, each on its own; calls bundled into one (everywhere else) share the
    # bundle script's NOSCRIPT, and all of them are sent again.
    await client.script_load(script_source("bucket_consume"))
    bundled = bool(tag) or storage.name != "cluster"
    trips, sent = backend.coalescer.round_trips, backend.coalescer.calls_sent
    async with backend.batch() as batch:
        counter = batch.counter_incr(f"{tag}c")
        bucket = batch.bucket_consume(f"{tag}b", rate=1, burst=5)
        member = batch.set_add(f"{tag}s", "m")
    # Each call ran exactly once: a resent bucket_consume would have taken a second token.
    assert counter.result() == CounterResult(True, 1, None)
    assert bucket.result().remaining == 4
    assert member.result().size == 1
    resent = 3 if bundled else 2
    assert (backend.coalescer.round_trips - trips, backend.coalescer.calls_sent - sent) == (2, 3 + resent)
    assert await backend.counter_get(f"{tag}c") == 1


@in_flight_storages
async def test_a_caller_cancelled_while_it_waits_is_left_out_and_the_others_are_answered(
    make_backend: MakeBackend,
) -> None:
    backend = make_backend()
    await _warm_up(backend)
    first = asyncio.create_task(backend.counter_incr("first"))
    queued = {key: asyncio.create_task(backend.counter_incr(key)) for key in ("a", "b", "c")}
    await asyncio.sleep(0)  # each task ran to its first wait: "first" is in flight, the others queued
    queued["b"].cancel()
    assert [result.value for result in await asyncio.gather(first, queued["a"], queued["c"])] == [1, 1, 1]
    with pytest.raises(asyncio.CancelledError):
        await queued["b"]
    assert await backend.counter_get("b") == 0  # never sent
    assert (await backend.counter_incr("b")).value == 1


async def test_cancelling_the_caller_whose_round_trip_is_in_flight_does_not_strand_the_others(
    make_backend: MakeBackend,
) -> None:
    backend = make_backend()
    await _warm_up(backend)
    first = asyncio.create_task(backend.counter_incr("first"))
    queued = [asyncio.create_task(backend.counter_incr(key)) for key in ("a", "b")]
    await asyncio.sleep(0)
    # On a cluster the send is redis-py's, whose asyncio.wait_for can swallow (on Python
    # 3.11) a cancellation that lands as the write completes: cancel until the task is done.
    for _ in range(1_000):
        if first.done():
            break
        first.cancel()
        await asyncio.sleep(0)
    results = await asyncio.wait_for(asyncio.gather(*queued), _HANG_S)
    assert [result.value for result in results] == [1, 1]
    assert (await backend.counter_incr("a")).value == 2


@pytest.mark.parametrize("backend_name", backends("redis", "valkey"))
async def test_one_cancel_ends_a_caller_whose_round_trip_is_in_flight(make_backend: MakeBackend) -> None:
    # The round trip on one server writes under its own deadline, not redis-py's
    # asyncio.wait_for, which on Python 3.11 can swallow a cancellation.
    backend = make_backend()
    await _warm_up(backend)
    first = asyncio.create_task(backend.counter_incr("first"))
    await asyncio.sleep(0)  # written, waiting for the reply
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert (await backend.counter_incr("after")).value == 1


async def _abandoned_batch(backend: RedisBackend) -> None:
    """A batch whose block checks its arguments, then raises before it is sent."""
    async with backend.batch() as batch:
        pending = batch.counter_incr("k")
        with pytest.raises(InvalidArgument, match="burst"):
            batch.bucket_consume("b", rate=1, burst=0)
        with pytest.raises(asyncio.InvalidStateError):
            pending.result()
        raise RuntimeError("inside the block")


async def test_a_batch_checks_arguments_at_once_and_sends_nothing_when_its_block_raises(
    make_backend: MakeBackend,
) -> None:
    backend = make_backend()
    with pytest.raises(RuntimeError, match="inside the block"):
        await _abandoned_batch(backend)
    assert backend.coalescer.calls_sent == 0
    assert await backend.counter_get("k") == 0


async def test_a_batch_takes_no_calls_once_it_was_sent(make_backend: MakeBackend) -> None:
    backend = make_backend()
    async with backend.batch() as batch:
        pending = batch.counter_incr("k")
    assert pending.result().value == 1
    with pytest.raises(RuntimeError, match="already sent"):
        batch.counter_incr("k")


async def test_a_batch_decodes_replies_on_a_decoding_client(make_backend: MakeBackend) -> None:
    backend = make_backend(decode_responses=True)
    async with backend.batch() as batch:
        batch.set_add("s", "\ud800lone")
        batch.set_add("s", "é")
        members = batch.set_members("s")
    assert members.result() == frozenset({"\ud800lone", "é"})


@pytest.mark.redis
async def test_a_lost_connection_fails_every_call_of_the_round_trip_as_unavailable(
    server_process: Callable[[str], ServerProcess],
) -> None:
    server = server_process("redis")
    async with RedisBackend.from_url(server.url, socket_timeout=5) as backend:
        await _warm_up(backend)
        server.kill()
        async with backend.batch() as batch:
            calls: list[ScriptCall[Any]] = [
                batch.counter_incr("k"),
                batch.set_size("s"),
                batch.bucket_consume("b", rate=1, burst=1),
            ]
        for call in calls:
            with pytest.raises(BackendUnavailable):
                call.result()
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(backend.counter_incr(f"k{n}") for n in range(5)), return_exceptions=True), _HANG_S
        )
        assert all(isinstance(outcome, BackendUnavailable) for outcome in outcomes), outcomes
        server.restart()
        assert (await backend.counter_incr("k")).value == 1


@pytest.mark.redis
async def test_a_server_that_stops_answering_fails_the_round_trip_within_the_socket_timeout(
    server_process: Callable[[str], ServerProcess],
) -> None:
    server = server_process("redis")
    async with RedisBackend.from_url(server.url, socket_timeout=0.2) as backend:
        await _warm_up(backend)
        server.pause()
        try:
            outcomes = await asyncio.wait_for(
                asyncio.gather(*(backend.counter_incr(f"k{n}") for n in range(5)), return_exceptions=True), _HANG_S
            )
        finally:
            server.resume()
        assert all(isinstance(outcome, BackendUnavailable) for outcome in outcomes), outcomes
        # The timed-out connection was dropped; the next call gets a fresh one.
        assert (await backend.counter_get("fresh")) == 0


@pytest.mark.parametrize("backend_name", backends("redis", "valkey"))
async def test_a_large_batch_goes_at_once_on_a_round_trip_of_its_own(
    make_backend: MakeBackend, storage: Storage
) -> None:
    backend = make_backend()
    await _warm_up(backend)
    # The server holds every command it gets for 300 ms: each round trip sent meanwhile stays in flight.
    await storage.client().execute_command("CLIENT", "PAUSE", 300, "ALL")
    trips = backend.coalescer.round_trips
    first = asyncio.ensure_future(backend.counter_incr("first"))
    for _ in range(100):  # until the first call's round trip is on its way
        if backend.coalescer.round_trips > trips:
            break
        await asyncio.sleep(0)
    assert not first.done()
    # A heartbeat's worth of calls does not queue behind the round trip in flight: it is sent at once.
    heartbeat = asyncio.ensure_future(backend.set_add_many([(f"s{n}", "m") for n in range(300)], lease_ms=60_000))
    queued = asyncio.ensure_future(backend.counter_incr("queued"))
    for _ in range(100):
        if backend.coalescer.round_trips >= trips + 2:
            break
        await asyncio.sleep(0)
    assert backend.coalescer.round_trips == trips + 2  # the first, then the heartbeat; "queued" waits
    assert not first.done()
    results = await asyncio.wait_for(asyncio.gather(first, heartbeat, queued), _HANG_S)
    assert results[0].value == 1 and results[2].value == 1
    assert all(result.added for result in results[1])
    assert backend.coalescer.round_trips == trips + 3


@pytest.mark.parametrize("backend_name", backends("redis", "valkey"))
async def test_a_heartbeat_of_16384_slots_is_one_round_trip_and_more_go_as_several_at_once(
    make_backend: MakeBackend, storage: Storage
) -> None:
    backend = make_backend()
    await _warm_up(backend)
    for size, trips_expected in [(16_384, 1), (16_385, 2)]:
        trips, commands = backend.coalescer.round_trips, backend.coalescer.commands_sent
        members = [(f"s{n % 500}", f"m{n}") for n in range(size)]
        results = await asyncio.wait_for(backend.set_add_many(members, lease_ms=60_000), _HANG_S)
        assert all(isinstance(result, SetResult) for result in results)
        assert backend.coalescer.round_trips - trips == trips_expected
        assert backend.coalescer.commands_sent - commands == -(-size // 256)  # bundles of 256 calls
        await storage.client().flushdb()


@pytest.mark.redis
async def test_a_round_trip_that_keeps_answering_outlasts_the_socket_timeout_and_a_silent_one_does_not(
    server_process: Callable[[str], ServerProcess],
) -> None:
    """The socket timeout bounds the wait for each reply, not the whole round trip: a heartbeat's bundles
    answered at a slow pace all arrive; the same server gone silent fails the round trip."""
    server = server_process("redis")
    proxy = LossyProxy(reply_delay_s=0.15)
    port = await proxy.front(server.port)
    try:
        async with RedisBackend.from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=0.5) as backend:
            await _warm_up(backend)
            trips = backend.coalescer.round_trips
            members = [(f"s{n % 500}", f"m{n}") for n in range(16_000)]
            started = asyncio.get_running_loop().time()
            results = await asyncio.wait_for(backend.set_add_many(members, lease_ms=60_000), 60)
            took_s = asyncio.get_running_loop().time() - started
            assert all(isinstance(result, SetResult) and result.added for result in results), results[:3]
            assert backend.coalescer.round_trips - trips == 1
            # Replies came in several held chunks, so the round trip lasted longer than the socket timeout.
            assert took_s > 0.5, f"the replies came in {took_s:.2f} s: the proxy did not hold them long enough"
            server.pause()
            try:
                outcome = await asyncio.wait_for(backend.set_add_many(members[:300], lease_ms=60_000), _HANG_S)
            finally:
                server.resume()
            assert all(isinstance(result, BackendUnavailable) for result in outcome), outcome[:3]
    finally:
        await proxy.close()
