"""In-memory checks per second: our primitives on `MemoryBackend` against the in-memory peers.

One caller, single key and many keys, allowed and denied path. Ours are awaited
(the API is async). Of `limits` both APIs are measured: the synchronous one (the
target's reference, the fastest) and the asyncio one, which an asyncio app such
as a Channels consumer would use. Figures are per CPU-second (see `measure`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from ratelimit_core import MemoryBackend

from .measure import Figure, cpu_clock, interleaved, rate_of
from .peers import ASYNC_MEMORY_PEERS, MEMORY_PEERS, AsyncCheck, SyncCheck, installed
from .scales import Scale

__all__ = ["OURS", "memory_figures", "ours_loop"]

Loop = Callable[[MemoryBackend, list[str], int, bool], Awaitable[None]]


async def _bucket(backend: MemoryBackend, keys: list[str], ops: int, allowed: bool) -> None:
    rate, burst = (10**9, 10**9) if allowed else (0.001, 1)
    n = len(keys)
    for i in range(ops):
        await backend.bucket_consume(keys[i % n], rate=rate, burst=burst)


async def _counter(backend: MemoryBackend, keys: list[str], ops: int, allowed: bool) -> None:
    limit = 10**15 if allowed else 1
    n = len(keys)
    for i in range(ops):
        await backend.counter_incr(keys[i % n], limit=limit, window_ms=3_600_000)


async def _set(backend: MemoryBackend, keys: list[str], ops: int, allowed: bool) -> None:
    # Allowed: a member already there refreshes its lease. Denied: a new member, set full.
    member, capacity = ("there", 10) if allowed else ("new", 1)
    n = len(keys)
    for i in range(ops):
        await backend.set_add(keys[i % n], member, capacity=capacity, lease_ms=3_600_000)


async def _drain_buckets(backend: MemoryBackend, keys: list[str]) -> None:
    for key in keys:
        await backend.bucket_consume(key, rate=0.001, burst=1)


async def _count_to_one(backend: MemoryBackend, keys: list[str]) -> None:
    for key in keys:
        await backend.counter_incr(key, limit=1, window_ms=3_600_000)


async def _fill_sets(backend: MemoryBackend, keys: list[str]) -> None:
    for key in keys:
        await backend.set_add(key, "there", capacity=1, lease_ms=3_600_000)


Prepare = Callable[[MemoryBackend, list[str]], Awaitable[None]]

OURS: dict[str, tuple[Loop, Prepare]] = {
    "bucket_consume": (_bucket, _drain_buckets),
    "counter_incr": (_counter, _count_to_one),
    "set_add": (_set, _fill_sets),
}
"""Each primitive's timed loop, and what puts every key in use first (the denied path's state)."""


async def ours_loop(primitive: tuple[Loop, Prepare], keys: list[str], ops: int, allowed: bool) -> float:
    """Checks per CPU-second of one run on a fresh backend whose keys are all in use."""
    loop, prepare = primitive
    backend = MemoryBackend()
    await prepare(backend, keys)
    start = cpu_clock()
    await loop(backend, keys, ops, allowed)
    return rate_of(ops, cpu_clock() - start)


async def _peer_loop(make: Callable[[bool], SyncCheck], keys: list[str], ops: int, allowed: bool) -> float:
    check = make(allowed)
    for key in keys:
        check(key)  # every key in use; on the denied path, used up
    n = len(keys)
    start = cpu_clock()
    for i in range(ops):
        check(keys[i % n])
    return rate_of(ops, cpu_clock() - start)


async def _async_peer_loop(make: Callable[[bool], AsyncCheck], keys: list[str], ops: int, allowed: bool) -> float:
    check = make(allowed)
    for key in keys:
        await check(key)
    n = len(keys)
    start = cpu_clock()
    for i in range(ops):
        await check(keys[i % n])
    return rate_of(ops, cpu_clock() - start)


def key_sets(scale: Scale) -> dict[str, list[str]]:
    return {"1": ["user:1"], "10k": [f"user:{i}" for i in range(scale.many_keys)]}


async def _case(scale: Scale, keys_name: str, keys: list[str], path: str) -> list[Figure]:
    """Ours and every installed peer on one set of keys and one path, run in turn."""
    allowed = path == "allowed"
    ops = scale.memory_ops
    subjects: dict[str, Callable[[], Awaitable[float]]] = {
        f"ours {name}": partial(ours_loop, primitive, keys, ops, allowed) for name, primitive in OURS.items()
    }
    for peer in MEMORY_PEERS:
        if installed(peer.module):
            subjects[peer.name] = partial(_peer_loop, peer.make, keys, ops, allowed)
    for async_peer in ASYNC_MEMORY_PEERS:
        if installed(async_peer.module):
            subjects[async_peer.name] = partial(_async_peer_loop, async_peer.make, keys, ops, allowed)
    measured = await interleaved(scale.runs, subjects)
    return [Figure("memory", name, keys_name, path, 1, value, runs=runs) for name, (value, runs) in measured.items()]


async def memory_figures(scale: Scale, notes: list[str]) -> list[Figure]:
    figures = []
    for keys_name, keys in key_sets(scale).items():
        for path in ("allowed", "denied"):
            figures += await _case(scale, keys_name, keys, path)
    for name, module in [(p.name, p.module) for p in MEMORY_PEERS] + [(p.name, p.module) for p in ASYNC_MEMORY_PEERS]:
        if not installed(module):
            notes.append(f"{name}: {module} is not installed, so it was not measured")
    return figures
