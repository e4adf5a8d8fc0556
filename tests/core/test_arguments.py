"""Bad arguments raise `InvalidArgument` (a `ValueError`) naming the argument, on every backend."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from ratelimit_core import Backend, InvalidArgument, ManualClock, MemoryBackend

BadCall = Callable[[Any], Awaitable[object]]

BAD_CALLS: list[tuple[str, BadCall, str]] = [
    ("counter_incr key=1", lambda b: b.counter_incr(1), "key"),
    ("counter_incr key=None", lambda b: b.counter_incr(None), "key"),
    ("counter_incr key=bytes", lambda b: b.counter_incr(b"k"), "key"),
    ("counter_incr amount=0", lambda b: b.counter_incr("k", 0), "amount"),
    ("counter_incr amount=-1", lambda b: b.counter_incr("k", -1), "amount"),
    ("counter_incr amount=True", lambda b: b.counter_incr("k", True), "amount"),
    ("counter_incr amount=1.5", lambda b: b.counter_incr("k", 1.5), "amount"),
    ("counter_incr amount='1'", lambda b: b.counter_incr("k", "1"), "amount"),
    ("counter_incr amount=10**15+1", lambda b: b.counter_incr("k", 10**15 + 1), "amount"),
    ("counter_incr limit=-1", lambda b: b.counter_incr("k", limit=-1), "limit"),
    ("counter_incr limit=False", lambda b: b.counter_incr("k", limit=False), "limit"),
    ("counter_incr window_ms=0", lambda b: b.counter_incr("k", window_ms=0), "window_ms"),
    ("counter_incr window_ms=-5", lambda b: b.counter_incr("k", window_ms=-5), "window_ms"),
    ("counter_incr window_ms=1.0", lambda b: b.counter_incr("k", window_ms=1.0), "window_ms"),
    ("counter_decr amount=0", lambda b: b.counter_decr("k", 0), "amount"),
    ("counter_decr amount=-1", lambda b: b.counter_decr("k", -1), "amount"),
    ("counter_decr key=1", lambda b: b.counter_decr(1), "key"),
    ("counter_get key=None", lambda b: b.counter_get(None), "key"),
    ("set_add key=1", lambda b: b.set_add(1, "m"), "key"),
    ("set_add member=1", lambda b: b.set_add("s", 1), "member"),
    ("set_add capacity=-1", lambda b: b.set_add("s", "m", capacity=-1), "capacity"),
    ("set_add capacity=True", lambda b: b.set_add("s", "m", capacity=True), "capacity"),
    ("set_add capacity=2.0", lambda b: b.set_add("s", "m", capacity=2.0), "capacity"),
    ("set_add lease_ms=0", lambda b: b.set_add("s", "m", lease_ms=0), "lease_ms"),
    ("set_add lease_ms=-1", lambda b: b.set_add("s", "m", lease_ms=-1), "lease_ms"),
    ("set_remove member=None", lambda b: b.set_remove("s", None), "member"),
    ("set_size key=1", lambda b: b.set_size(1), "key"),
    ("set_members key=None", lambda b: b.set_members(None), "key"),
    ("bucket_consume key=1", lambda b: b.bucket_consume(1, rate=1, burst=1), "key"),
    ("bucket_consume rate=0", lambda b: b.bucket_consume("b", rate=0, burst=1), "rate"),
    ("bucket_consume rate=-1", lambda b: b.bucket_consume("b", rate=-1, burst=1), "rate"),
    ("bucket_consume rate='1'", lambda b: b.bucket_consume("b", rate="1", burst=1), "rate"),
    ("bucket_consume rate=True", lambda b: b.bucket_consume("b", rate=True, burst=1), "rate"),
    ("bucket_consume rate=None", lambda b: b.bucket_consume("b", rate=None, burst=1), "rate"),
    ("bucket_consume rate=nan", lambda b: b.bucket_consume("b", rate=float("nan"), burst=1), "rate"),
    ("bucket_consume rate>1e9", lambda b: b.bucket_consume("b", rate=2e9, burst=1), "rate"),
    ("bucket_consume burst=0", lambda b: b.bucket_consume("b", rate=1, burst=0), "burst"),
    ("bucket_consume burst=-1", lambda b: b.bucket_consume("b", rate=1, burst=-1), "burst"),
    ("bucket_consume burst=True", lambda b: b.bucket_consume("b", rate=1, burst=True), "burst"),
    ("bucket_consume burst=1.5", lambda b: b.bucket_consume("b", rate=1, burst=1.5), "burst"),
    ("bucket_consume burst>1e9", lambda b: b.bucket_consume("b", rate=1, burst=10**9 + 1), "burst"),
    ("bucket_consume cost=0", lambda b: b.bucket_consume("b", rate=1, burst=2, cost=0), "cost"),
    ("bucket_consume cost=-1", lambda b: b.bucket_consume("b", rate=1, burst=2, cost=-1), "cost"),
    ("bucket_consume cost=True", lambda b: b.bucket_consume("b", rate=1, burst=2, cost=True), "cost"),
    ("bucket_consume cost>burst", lambda b: b.bucket_consume("b", rate=1, burst=2, cost=3), "cost"),
]


@pytest.mark.parametrize(("call", "argument"), [(c, a) for _, c, a in BAD_CALLS], ids=[n for n, _, _ in BAD_CALLS])
async def test_bad_argument_raises_value_error_naming_it(backend: Backend, call: BadCall, argument: str) -> None:
    with pytest.raises(InvalidArgument, match=rf"\b{argument}\b") as raised:
        await call(backend)
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize(("call", "argument"), [(c, a) for _, c, a in BAD_CALLS], ids=[n for n, _, _ in BAD_CALLS])
async def test_bad_argument_is_refused_before_storage_is_touched(call: BadCall, argument: str) -> None:
    from ratelimit_core import RedisBackend

    # Nothing listens on port 1: touching storage would raise BackendUnavailable instead.
    async with RedisBackend.from_url("redis://127.0.0.1:1/0", clock=ManualClock()) as unreachable:
        with pytest.raises(InvalidArgument, match=rf"\b{argument}\b"):
            await call(unreachable)


async def test_a_refused_call_changes_nothing(backend: Backend) -> None:
    await backend.counter_incr("k", 2)
    with pytest.raises(InvalidArgument):
        await backend.counter_incr("k", 0)
    assert await backend.counter_get("k") == 2


@pytest.mark.parametrize("prefix", [None, 1, b"rl:"])
def test_prefix_must_be_a_str(prefix: object) -> None:
    with pytest.raises(InvalidArgument, match="prefix"):
        MemoryBackend(prefix=prefix)  # type: ignore[arg-type]


@pytest.mark.parametrize("start_ms", [-1, 1.5, True, None])
def test_manual_clock_start_must_be_a_non_negative_int(start_ms: object) -> None:
    with pytest.raises(ValueError, match="start_ms"):
        ManualClock(start_ms)  # type: ignore[arg-type]


@pytest.mark.parametrize("ms", [-1, 0.5, True])
def test_manual_clock_moves_forward_by_whole_milliseconds_only(ms: object) -> None:
    clock = ManualClock(10)
    with pytest.raises(ValueError, match=r"\bms\b"):
        clock.advance(ms)  # type: ignore[arg-type]
    assert clock() == 10
